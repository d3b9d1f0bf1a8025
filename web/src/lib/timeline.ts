// Time travel: a run's checkpoints (the events a fork may start after: each step's start and
// end, human requests and answers, state writes and edits), the state as it was at one of
// them (folded from the events up to that seq), and the `set` of a fork request built from
// what the user changed in it.
import type { EventRecord } from '../api/types';

export type CheckpointKind = 'start' | 'done' | 'failed' | 'cancelled' | 'asked' | 'answered' | 'state' | 'edit' | 'paused' | 'resumed' | 'end';

export interface Checkpoint {
  seq: number;
  at: number;
  kind: CheckpointKind;
  /** The step, the state key or the edited path the event is about ('' for the run). */
  subject: string;
  /** One line saying what happened. */
  label: string;
}

type Ev = EventRecord & Record<string, unknown>;

/** `steps.ID.output`, `state.KEY` or `inputs.NAME`: the path of an edit target, as `set` names it. */
export function pathOf(target: unknown): string {
  const t = target as { kind?: string; step?: string; key?: string; name?: string } | undefined;
  if (t?.kind === 'step_output') return `steps.${t.step}.output`;
  if (t?.kind === 'state') return `state.${t.key}`;
  if (t?.kind === 'input') return `inputs.${t.name}`;
  return '?';
}

/** The checkpoints of a run, in log order. */
export function checkpointsOf(events: EventRecord[]): Checkpoint[] {
  const out: Checkpoint[] = [];
  for (const e of events as Ev[]) {
    const step = typeof e.step === 'string' ? e.step : '';
    const add = (kind: CheckpointKind, subject: string, label: string) => out.push({ seq: e.seq, at: e.at_ms, kind, subject, label });
    switch (e.type) {
      case 'step_started':
        add('start', step, Number(e.attempt) > 1 ? `started (attempt ${e.attempt})` : 'started');
        break;
      case 'step_succeeded':
        add('done', step, 'finished');
        break;
      case 'step_failed':
        add('failed', step, e.retry_in_ms != null ? 'failed, will retry' : 'failed');
        break;
      case 'step_cancelled':
        add('cancelled', step, 'cancelled');
        break;
      case 'human_requested':
        add('asked', step, 'asked a person');
        break;
      case 'human_responded':
        add('answered', step, `${e.approved === false ? 'rejected' : 'answered'}${typeof e.by === 'string' && e.by ? ` by ${e.by}` : ''}`);
        break;
      case 'state_set':
        add('state', `state.${String(e.key)}`, 'state written');
        break;
      case 'state_edited':
        add('edit', pathOf(e.target), `edited${typeof e.by === 'string' && e.by ? ` by ${e.by}` : ''}`);
        break;
      case 'paused':
        add('paused', '', 'paused');
        break;
      case 'resumed':
        add('resumed', '', 'resumed');
        break;
      case 'run_succeeded':
      case 'run_failed':
      case 'run_cancelled':
        add('end', '', e.type.replace('run_', 'run '));
        break;
    }
  }
  return out;
}

export interface StepAt {
  status: 'running' | 'waiting' | 'done' | 'failed' | 'cancelled';
  /** Set once the step has finished (or its output was edited). */
  output?: unknown;
  hasOutput: boolean;
}

/** The run's state as it was once the event `seq` was applied. */
export interface StateAt {
  seq: number;
  at?: number;
  inputs: Record<string, unknown>;
  /** Steps reached by then, in the order they were first reached. */
  steps: Record<string, StepAt>;
  state: Record<string, unknown>;
  /** Agent name -> the model it called in the run (from the log's `agents_resolved`). */
  models: Record<string, string>;
}

const asRecord = (v: unknown): Record<string, unknown> => (v && typeof v === 'object' && !Array.isArray(v) ? { ...(v as Record<string, unknown>) } : {});

/** Folds the events with a seq at or below `seq` (every event when absent). */
export function stateAt(events: EventRecord[], seq = Infinity): StateAt {
  const s: StateAt = { seq: 0, inputs: {}, steps: {}, state: {}, models: {} };
  const step = (id: string): StepAt => (s.steps[id] ??= { status: 'running', hasOutput: false });
  for (const e of events as Ev[]) {
    if (e.seq > seq) break;
    s.seq = e.seq;
    s.at = e.at_ms;
    const id = typeof e.step === 'string' ? e.step : '';
    switch (e.type) {
      case 'run_created':
        s.inputs = asRecord(e.inputs);
        break;
      case 'agents_resolved':
        for (const [name, pinned] of Object.entries(asRecord(e.agents))) {
          const model = (pinned as { spec?: { model?: unknown } }).spec?.model;
          if (typeof model === 'string') s.models[name] = model;
        }
        break;
      case 'step_started':
        step(id).status = 'running';
        break;
      case 'human_requested':
        step(id).status = 'waiting';
        break;
      case 'human_responded':
        step(id).status = 'running';
        break;
      case 'step_succeeded':
        Object.assign(step(id), { status: 'done', output: e.output, hasOutput: true });
        break;
      case 'step_failed':
        step(id).status = e.retry_in_ms != null ? 'running' : 'failed';
        break;
      case 'step_cancelled':
        step(id).status = 'cancelled';
        break;
      case 'state_set':
        s.state[String(e.key)] = e.value;
        break;
      case 'state_edited': {
        const t = e.target as { kind?: string; step?: string; key?: string; name?: string };
        if (t.kind === 'step_output' && t.step) Object.assign(step(t.step), { output: e.value, hasOutput: true });
        else if (t.kind === 'state' && t.key) s.state[t.key] = e.value;
        else if (t.kind === 'input' && t.name) s.inputs[t.name] = e.value;
        break;
      }
    }
  }
  return s;
}

/** Agent name -> model, as the run's workflow declares its agents (the graph's `header.agents`). */
export function declaredModels(header: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const agents = (header as { agents?: Record<string, unknown> } | undefined)?.agents ?? {};
  for (const [name, spec] of Object.entries(agents)) {
    const model = (spec as { model?: unknown } | null)?.model;
    if (typeof model === 'string') out[name] = model;
  }
  return out;
}

/** A value the fork dialog offers to edit: its `set` path and its value at the checkpoint. */
export interface Editable {
  path: string;
  value: unknown;
}

/** What a fork from this state may change: finished steps' outputs, the state's keys, the inputs. */
export function editablesOf(s: StateAt): Editable[] {
  const out: Editable[] = [];
  for (const [id, st] of Object.entries(s.steps)) if (st.hasOutput) out.push({ path: `steps.${id}.output`, value: st.output });
  for (const [k, v] of Object.entries(s.state)) out.push({ path: `state.${k}`, value: v });
  for (const [k, v] of Object.entries(s.inputs)) out.push({ path: `inputs.${k}`, value: v });
  return out;
}

/** A value as the fork dialog shows it for editing: JSON, indented. */
export const editText = (v: unknown): string => JSON.stringify(v === undefined ? null : v, null, 2);

export type Parsed = { ok: true; value: unknown } | { ok: false; error: string };

/** The text of an edited value as JSON, or what is wrong with it and where. */
export function parseEdit(text: string): Parsed {
  if (!text.trim()) return { ok: false, error: 'empty: write a JSON value (a string needs quotes: "text")' };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (e) {
    const msg = (e as Error).message;
    const at = /position (\d+)/.exec(msg);
    if (at) {
      const pos = Number(at[1]);
      const before = text.slice(0, pos);
      const line = before.split('\n').length;
      const col = pos - before.lastIndexOf('\n');
      return { ok: false, error: `not JSON at line ${line}, column ${col}: ${msg.replace(/\s*\(line \d+ column \d+\)$/, '')}` };
    }
    return { ok: false, error: `not JSON: ${msg}` };
  }
}

/**
 * The `set` of a fork request: the values whose text changed (and parses), by path; or the
 * first path whose text is not JSON.
 */
export function forkSet(originals: Editable[], texts: Record<string, string>): { set: Record<string, unknown> } | { path: string; error: string } {
  const set: Record<string, unknown> = {};
  for (const { path, value } of originals) {
    const text = texts[path];
    if (text === undefined || text === editText(value)) continue;
    const p = parseEdit(text);
    if (!p.ok) return { path, error: p.error };
    if (JSON.stringify(p.value) !== JSON.stringify(value)) set[path] = p.value;
  }
  return { set };
}

/** The `models` of a fork request: the agents whose model the user changed. */
export function forkModels(current: Record<string, string>, chosen: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [agent, model] of Object.entries(chosen)) {
    const m = model.trim();
    if (m && m !== current[agent]) out[agent] = m;
  }
  return out;
}

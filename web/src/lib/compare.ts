// Two runs side by side: each step of either run (in the order the runs reached them, the
// first run's order first), with both runs' status, output, tokens, cost, duration and model,
// and the runs' totals. The output differences themselves are computed later, per step and on
// demand (lib/diff.ts), so opening two runs with big outputs costs only this.
import type { EventRecord, RunDetail, StepDetail } from '../api/types';
import { sameValue } from './outputDiff';

export interface RunSide {
  detail: RunDetail;
  /** Step -> the models its agent called (from the log's prompts and replies), in order. */
  models: Record<string, string[]>;
  /**
   * Step -> its output as edited (`state_edited`: a fork's `set`, the debugger's edit): what
   * the steps after it saw. The step's record keeps the output it produced.
   */
  edits: Record<string, unknown>;
}

/** A run as the compare page shows it: its detail, and what its log says beyond it. */
export function sideOf(detail: RunDetail, events: EventRecord[]): RunSide {
  const edits: Record<string, unknown> = {};
  for (const e of events as (EventRecord & Record<string, unknown>)[]) {
    const t = e.target as { kind?: string; step?: string } | undefined;
    if (e.type === 'state_edited' && t?.kind === 'step_output' && t.step) edits[t.step] = e.value;
  }
  return { detail, models: modelsByStep(events), edits };
}

export interface StepPair {
  step: string;
  a?: StepDetail;
  b?: StepDetail;
  modelsA: string[];
  modelsB: string[];
  /** Each side's output as the next steps saw it (the edited value where it was edited). */
  outA?: unknown;
  outB?: unknown;
  editedA: boolean;
  editedB: boolean;
  /** Only one run has the step. */
  only?: 'a' | 'b';
  /** Both ran it and their outputs are the same value. */
  sameOutput: boolean;
}

export interface Totals {
  status: string;
  tokens: number;
  cost?: number;
  /** From creation to the last update of a finished run; absent while it runs. */
  durationMs?: number;
  steps: number;
}

/** Step -> models called, from `step_progress` events (`prompt` and `model_reply` carry the model). */
export function modelsByStep(events: EventRecord[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const e of events as (EventRecord & Record<string, unknown>)[]) {
    if (e.type !== 'step_progress' || typeof e.step !== 'string') continue;
    const model = (e.progress as { model?: unknown } | undefined)?.model;
    if (typeof model !== 'string') continue;
    const list = (out[e.step] ??= []);
    if (!list.includes(model)) list.push(model);
  }
  return out;
}

const FINISHED = ['succeeded', 'failed', 'cancelled', 'budget_exceeded'];

export function totalsOf(d: RunDetail): Totals {
  const finished = FINISHED.includes(d.run.status);
  return {
    status: d.run.status,
    tokens: d.tokens,
    cost: d.usage.cost_usd ?? undefined,
    durationMs: finished ? d.run.updated_at_ms - d.run.created_at_ms : undefined,
    steps: d.steps.length,
  };
}

/** Every step of either run, paired. */
export function pairSteps(a: RunSide, b: RunSide): StepPair[] {
  const byA = new Map(a.detail.steps.map((s) => [s.step, s]));
  const byB = new Map(b.detail.steps.map((s) => [s.step, s]));
  // The first run's order, with the second run's own steps placed after the step they follow
  // there (every step before them in the second run is placed by then, so that is the one just
  // before). Linear: two runs of thousands of steps each pair at once.
  const after = new Map<string | null, string>();
  const bOrder = b.detail.steps.map((s) => s.step);
  bOrder.forEach((step, i) => {
    if (!byA.has(step)) after.set(i > 0 ? bOrder[i - 1] : null, step);
  });
  const order: string[] = [];
  const seen = new Set<string>();
  const place = (step: string | null) => {
    for (let s = step; s !== null && !seen.has(s); s = after.get(s) ?? null) {
      seen.add(s);
      order.push(s);
    }
  };
  place(after.get(null) ?? null);
  for (const s of a.detail.steps) place(s.step);
  return order.map((step) => {
    const sa = byA.get(step);
    const sb = byB.get(step);
    const editedA = step in a.edits;
    const editedB = step in b.edits;
    const outA = editedA ? a.edits[step] : sa?.output;
    const outB = editedB ? b.edits[step] : sb?.output;
    return {
      step,
      a: sa,
      b: sb,
      modelsA: a.models[step] ?? [],
      modelsB: b.models[step] ?? [],
      outA,
      outB,
      editedA,
      editedB,
      only: sa && !sb ? 'a' : sb && !sa ? 'b' : undefined,
      sameOutput: !!sa && !!sb && sameValue(outA ?? null, outB ?? null),
    };
  });
}

/**
 * A run id short enough to read and long enough to tell runs apart: ids are UUIDv7, whose
 * first digits are the time, so two runs started together share their first 8.
 */
export { shortId } from './preview';

/** A change from a to b as shown: `+12`, `−3`, `=`. */
export function delta(a: number | undefined, b: number | undefined, digits = 0): string {
  if (a === undefined || b === undefined) return '';
  const d = b - a;
  if (Math.abs(d) < 10 ** -digits / 2) return '=';
  return `${d > 0 ? '+' : '−'}${Math.abs(d).toFixed(digits)}`;
}

// What each node of a run's graph is doing, folded from the run's events in seq order (the
// same fold for the first page of events and for each live one), and counts for the dashboard.
import type { EventRecord, RunListItem } from '../api/types';

export type NodeStatus = 'pending' | 'running' | 'waiting' | 'done' | 'failed' | 'skipped' | 'cancelled';

export interface NodeState {
  status: NodeStatus;
  attempts: number;
  startedAt?: number;
  endedAt?: number;
  durationMs?: number;
  tokens: number;
  output?: unknown;
  error?: { kind: string; message: string };
}

export interface RunView {
  /** The last seq folded in (the stream resumes after it). */
  seq: number;
  status: string;
  nodes: Record<string, NodeState>;
}

export const emptyRun = (): RunView => ({ seq: 0, status: 'pending', nodes: {} });

const ENDED: Record<string, string> = {
  run_succeeded: 'succeeded',
  run_failed: 'failed',
  run_cancelled: 'cancelled',
};

function node(v: RunView, id: string): NodeState {
  return v.nodes[id] ?? { status: 'pending', attempts: 0, tokens: 0 };
}

function tokensOf(usage: unknown): number {
  const u = usage as { prompt_tokens?: number; completion_tokens?: number } | undefined;
  return (u?.prompt_tokens ?? 0) + (u?.completion_tokens ?? 0);
}

/** The view after one more event; events at or below the view's seq are ignored (replays). */
export function applyEvent(v: RunView, e: EventRecord): RunView {
  if (e.seq <= v.seq) return v;
  const ev = e as EventRecord & Record<string, unknown>;
  const step = typeof ev.step === 'string' ? ev.step : undefined;
  const next: RunView = { ...v, seq: e.seq };
  const set = (id: string, patch: Partial<NodeState>) => {
    next.nodes = { ...next.nodes, [id]: { ...node(v, id), ...patch } };
  };
  switch (ev.type) {
    case 'run_started':
    case 'resumed':
      next.status = 'running';
      break;
    case 'paused':
      next.status = 'paused';
      break;
    case 'step_started':
      if (step) {
        const prev = node(v, step);
        set(step, { status: 'running', attempts: prev.attempts + 1, startedAt: prev.startedAt ?? e.at_ms, endedAt: undefined, error: undefined });
      }
      break;
    case 'human_requested':
      if (step) set(step, { status: 'waiting' });
      next.status = 'waiting';
      break;
    case 'human_responded':
      if (step) set(step, { status: 'running' });
      next.status = 'running';
      break;
    case 'step_succeeded':
      if (step)
        set(step, {
          status: 'done',
          endedAt: e.at_ms,
          durationMs: ev.duration_ms as number,
          tokens: node(v, step).tokens + tokensOf(ev.usage),
          output: ev.output,
          error: undefined,
        });
      break;
    case 'step_failed':
      if (step)
        set(step, {
          // A failure the workflow recovers from (retry, on_error) is not the step's end.
          status: ev.retry_in_ms != null ? 'running' : 'failed',
          endedAt: e.at_ms,
          durationMs: ev.duration_ms as number,
          tokens: node(v, step).tokens + tokensOf(ev.usage),
          error: ev.error as NodeState['error'],
        });
      break;
    case 'step_cancelled':
      if (step) set(step, { status: 'cancelled', endedAt: e.at_ms });
      break;
    default:
      if (ENDED[ev.type]) next.status = ENDED[ev.type];
  }
  return next;
}

export function foldEvents(v: RunView, events: EventRecord[]): RunView {
  return events.reduce(applyEvent, v);
}

export const isFinished = (status: string) => ['succeeded', 'failed', 'cancelled'].includes(status);

/** A node's status as drawn: a node never reached in a finished run was skipped. */
export function statusOf(v: RunView, id: string): NodeStatus {
  const s = v.nodes[id]?.status ?? 'pending';
  if (s === 'pending' && isFinished(v.status)) return 'skipped';
  if (s === 'running' && isFinished(v.status)) return v.status === 'cancelled' ? 'cancelled' : 'failed';
  return s;
}

export const IN_FLIGHT = ['pending', 'running', 'waiting', 'paused', 'interrupted'];

/** Runs per status, in a fixed order (statuses with no run left out). */
export function countByStatus(runs: RunListItem[]): [string, number][] {
  const order = ['running', 'waiting', 'paused', 'pending', 'interrupted', 'succeeded', 'failed', 'cancelled'];
  const counts = new Map<string, number>();
  for (const r of runs) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
  return order.filter((s) => counts.has(s)).map((s) => [s, counts.get(s) ?? 0]);
}

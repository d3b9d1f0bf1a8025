// The dashboard's data: `GET /api/v1/stats` turned into what the charts draw (every value with
// the label printed next to it), and the fold of live events into each agent's state across
// the running runs.
import type { EventRecord, Graph } from '../api/types';
import type { components } from '../api/schema';
import { shortId } from './preview';

export type Stats = components['schemas']['Stats'];

/** One bar: its label, its value, the text printed on it, and a colour class. */
export interface Bar {
  label: string;
  value: number;
  text: string;
  tone?: string;
}

/** A series of stacked bars (one per time slice). */
export interface StackedColumn {
  label: string;
  parts: { key: string; value: number }[];
  total: number;
}

/** The order statuses are listed and stacked in. */
export const STATUS_ORDER = ['running', 'pending', 'waiting', 'paused', 'succeeded', 'failed', 'cancelled', 'budget_exceeded'];

const statusRank = (s: string) => {
  const i = STATUS_ORDER.indexOf(s);
  return i < 0 ? STATUS_ORDER.length : i;
};

export function fmtMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

export function fmtCount(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1_000_000) return `${(n / 1000).toFixed(n < 10_000 ? 1 : 0)}k`;
  return `${(n / 1_000_000).toFixed(1)}M`;
}

export function fmtUsd(n: number): string {
  if (n === 0) return '$0';
  if (n < 1) return `$${Number(n.toPrecision(3))}`;
  return `$${n.toFixed(2)}`;
}

export function fmtPct(r: number): string {
  return `${Math.round(r * 1000) / 10}%`;
}

/** Runs by status, in the usual order, zero counts left out. */
export function statusBars(s: Stats): Bar[] {
  return Object.entries(s.by_status)
    .filter(([, n]) => n > 0)
    .sort(([a], [b]) => statusRank(a) - statusRank(b) || a.localeCompare(b))
    .map(([status, n]) => ({ label: status, value: n, text: String(n), tone: `s-${status}` }));
}

/** The clock time of a slice's start: `14:05` for an hour's window, `14:00` for a day's. */
export function sliceLabel(startMs: number, windowName: string): string {
  const d = new Date(startMs);
  const hh = String(d.getHours()).padStart(2, '0');
  const mm = String(d.getMinutes()).padStart(2, '0');
  return windowName === '1h' ? `${hh}:${mm}` : `${hh}:00`;
}

/** The window's runs over time, stacked by status, oldest slice first. */
export function overTime(s: Stats): StackedColumn[] {
  return s.over_time.map((b) => {
    const parts = Object.entries(b.by_status)
      .filter(([, n]) => n > 0)
      .sort(([a], [b2]) => statusRank(a) - statusRank(b2))
      .map(([key, value]) => ({ key, value }));
    return { label: sliceLabel(b.start_ms, s.window), parts, total: parts.reduce((t, p) => t + p.value, 0) };
  });
}

/** p50 and p95 of each step kind, then of every step ("all"), as pairs of bars. */
export function stepLatency(s: Stats): { label: string; p50: Bar; p95: Bar }[] {
  const rows = Object.entries(s.steps_by_kind)
    .filter(([, l]) => l.count > 0)
    .map(([kind, l]) => ({ kind, l }));
  if (s.steps.count > 0 && rows.length !== 1) rows.unshift({ kind: 'all steps', l: s.steps });
  return rows.map(({ kind, l }) => ({
    label: `${kind} (${l.count})`,
    p50: { label: 'p50', value: l.p50_ms, text: fmtMs(l.p50_ms) },
    p95: { label: 'p95', value: l.p95_ms, text: fmtMs(l.p95_ms) },
  }));
}

/** Model latency (prompt to reply), p50 and p95 per model. */
export function modelLatency(s: Stats): { label: string; p50: Bar; p95: Bar }[] {
  return s.models
    .filter((m) => m.latency.count > 0)
    .map((m) => ({
      label: `${m.model} (${m.latency.count})`,
      p50: { label: 'p50', value: m.latency.p50_ms, text: fmtMs(m.latency.p50_ms) },
      p95: { label: 'p95', value: m.latency.p95_ms, text: fmtMs(m.latency.p95_ms) },
    }));
}

/** Tokens per model (prompt + completion), the cost printed with them; most first. */
export function tokensByModel(s: Stats): Bar[] {
  return s.models
    .map((m) => {
      const tokens = m.prompt_tokens + m.completion_tokens;
      return {
        label: m.model,
        value: tokens,
        text: `${fmtCount(tokens)} tok (${fmtCount(m.prompt_tokens)} in, ${fmtCount(m.completion_tokens)} out) · ${fmtUsd(m.cost_usd)}`,
      };
    })
    .filter((b) => b.value > 0)
    .sort((a, b) => b.value - a.value);
}

/** Sandbox executions by `tier · stop`, most first; a stop other than `exited` is marked bad. */
export function sandboxBars(s: Stats): Bar[] {
  return s.sandbox
    .map((c) => ({
      label: `${c.tier} · ${c.stop}`,
      value: c.count,
      text: String(c.count),
      tone: c.stop === 'exited' ? 's-succeeded' : 's-failed',
    }))
    .sort((a, b) => b.value - a.value || a.label.localeCompare(b.label));
}

/** The runs nearest their budget limits, as a share of the limit (100% and over: bad). */
export function budgetBars(s: Stats): Bar[] {
  return s.budget.runs.map((r) => {
    const limits = [
      r.tokens_limit != null ? `${fmtCount(r.tokens)}/${fmtCount(r.tokens_limit)} tok` : null,
      r.cost_limit_usd != null ? `${fmtUsd(r.cost_usd)}/${fmtUsd(r.cost_limit_usd)}` : null,
    ].filter(Boolean);
    return {
      label: `${r.workflow} ${shortId(r.run)}`,
      value: r.used,
      text: `${fmtPct(r.used)} (${limits.join(', ')})`,
      tone: r.used >= 1 ? 's-failed' : r.used >= 0.8 ? 's-waiting' : 's-running',
    };
  });
}

/** Whether the window has nothing to chart at all. */
export function isEmpty(s: Stats): boolean {
  return s.runs === 0;
}

// ---- Agents across the running runs ----

export type AgentStatus = 'idle' | 'working' | 'thinking' | 'tool' | 'retrying' | 'failed' | 'paused' | 'stopped' | 'done';

export interface AgentRow {
  agent: string;
  run: string;
  workflow: string;
  status: AgentStatus;
  /** What it does now, in words (`draft: calling echo`). */
  detail: string;
  /** When it entered this state (Unix ms). */
  since: number;
}

/** One run's agents, folded from its events in seq order. */
export interface RunAgents {
  run: string;
  workflow: string;
  seq: number;
  ended: boolean;
  /** Step id -> the agent it runs. */
  stepAgent: Record<string, string>;
  agents: Record<string, AgentRow>;
}

/** The agent of each agent step of a run's graph (a step's `agent:` name). */
export function agentsOfGraph(g: Graph): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of g.nodes) {
    const agent = (n.step as { agent?: string | null }).agent;
    if (n.kind === 'agent' && agent) out[n.id] = agent;
  }
  return out;
}

export function emptyRunAgents(run: string, workflow: string, stepAgent: Record<string, string>): RunAgents {
  const agents: Record<string, AgentRow> = {};
  for (const a of new Set(Object.values(stepAgent))) {
    agents[a] = { agent: a, run, workflow, status: 'idle', detail: 'not started', since: 0 };
  }
  return { run, workflow, seq: 0, ended: false, stepAgent, agents };
}

const RUN_ENDS = new Set(['run_succeeded', 'run_failed', 'run_cancelled']);

/** The step id of a step instance path (`review[2].draft` -> `draft`). */
function stepId(path: string): string {
  const last = path.split('.').pop() ?? path;
  return last.replace(/\[\d+\]$/, '');
}

/** The run's agents after one more event; events at or below its seq are ignored (replays). */
export function applyAgentEvent(r: RunAgents, e: EventRecord): RunAgents {
  if (e.seq <= r.seq) return r;
  const ev = e as EventRecord & Record<string, unknown>;
  const next: RunAgents = { ...r, seq: e.seq };
  if (RUN_ENDS.has(ev.type)) return { ...next, ended: true };
  const set = (agent: string, status: AgentStatus, detail: string) => {
    const old = r.agents[agent];
    // A paused or stopped agent keeps that state until a person resumes it.
    if (old && (old.status === 'stopped' || (old.status === 'paused' && status !== 'idle'))) return;
    next.agents = {
      ...next.agents,
      [agent]: { agent, run: r.run, workflow: r.workflow, status, detail, since: old?.status === status && old.detail === detail ? old.since : e.at_ms },
    };
  };
  if (ev.type === 'agent_controlled') {
    const agent = String(ev.agent);
    const action = String(ev.action);
    const old = r.agents[agent];
    const status: AgentStatus = action === 'pause' ? 'paused' : action === 'stop' ? 'stopped' : 'idle';
    next.agents = {
      ...next.agents,
      [agent]: { agent, run: r.run, workflow: r.workflow, status, detail: `${action}d by a person`.replace('stopd', 'stopped'), since: e.at_ms },
    };
    if (old?.status === 'stopped') next.agents[agent] = old;
    return next;
  }
  const step = typeof ev.step === 'string' ? ev.step : undefined;
  if (!step) return next;
  const id = stepId(step);
  const agent = r.stepAgent[id];
  if (!agent) return next;
  switch (ev.type) {
    case 'step_started':
      set(agent, 'working', `${step}: started`);
      break;
    case 'step_progress': {
      const p = ev.progress as { kind?: string; model?: string; tool?: string } | undefined;
      if (p?.kind === 'prompt') set(agent, 'thinking', `${step}: waiting for ${p.model ?? 'the model'}`);
      else if (p?.kind === 'model_reply') set(agent, 'working', `${step}: reply from ${p.model ?? 'the model'}`);
      break;
    }
    case 'tool_call_started':
      set(agent, 'tool', `${step}: calling ${String(ev.tool)}`);
      break;
    case 'tool_call_finished':
      set(agent, 'working', `${step}: ${String(ev.tool)} answered`);
      break;
    case 'step_succeeded':
      set(agent, 'idle', `${step}: done`);
      break;
    case 'step_failed': {
      const err = ev.error as { message?: string } | undefined;
      if (ev.retry_in_ms != null) set(agent, 'retrying', `${step}: retry in ${fmtMs(Number(ev.retry_in_ms))}`);
      else set(agent, 'failed', `${step}: ${err?.message ?? 'failed'}`);
      break;
    }
    case 'step_cancelled':
      set(agent, 'idle', `${step}: cancelled`);
      break;
  }
  return next;
}

export function foldAgents(r: RunAgents, events: EventRecord[]): RunAgents {
  return events.reduce(applyAgentEvent, r);
}

/** Every agent of the runs not yet ended, busiest first, then by name. */
export function agentRows(runs: RunAgents[]): AgentRow[] {
  const rank: Record<AgentStatus, number> = { tool: 0, thinking: 1, working: 2, retrying: 3, failed: 4, paused: 5, stopped: 6, idle: 7, done: 8 };
  return runs
    .filter((r) => !r.ended)
    .flatMap((r) => Object.values(r.agents))
    .sort((a, b) => rank[a.status] - rank[b.status] || a.agent.localeCompare(b.agent) || a.run.localeCompare(b.run));
}

/** Whether a live event changes the runs list (a run starting, pausing, waiting, ending). */
export function changesRuns(type: string): boolean {
  return RUN_LEVEL.has(type);
}
const RUN_LEVEL = new Set([
  'run_created',
  'run_started',
  'paused',
  'resumed',
  'human_requested',
  'human_responded',
  'run_succeeded',
  'run_failed',
  'run_cancelled',
  'step_started',
  'step_succeeded',
  'step_failed',
]);

/** Whether a live event changes the approvals waiting. */
export function changesApprovals(type: string): boolean {
  return type === 'human_requested' || type === 'human_responded' || type === 'human_escalated' || RUN_ENDS.has(type);
}

/** Whether a live event changes the window's figures. */
export function changesStats(type: string): boolean {
  return RUN_LEVEL.has(type) || type === 'tool_call_finished';
}

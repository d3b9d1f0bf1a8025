import { describe, expect, it } from 'vitest';
import type { EventRecord, Graph } from '../api/types';
import {
  agentRows,
  agentsOfGraph,
  applyAgentEvent,
  budgetBars,
  changesApprovals,
  changesRuns,
  emptyRunAgents,
  fmtMs,
  foldAgents,
  modelLatency,
  overTime,
  sandboxBars,
  statusBars,
  stepLatency,
  tokensByModel,
  type Stats,
} from './dashboard';
import { backoff, FALLBACK_AFTER, LiveSocket, socketUrl, type LiveDeps, type LiveState, type SocketLike } from './live';

const stats = (more: Partial<Stats> = {}): Stats => ({
  window: '1h',
  since_ms: Date.UTC(2026, 0, 1, 12, 0),
  until_ms: Date.UTC(2026, 0, 1, 13, 0),
  bucket_ms: 300_000,
  runs: 6,
  truncated: false,
  by_status: { succeeded: 3, failed: 1, running: 2, cancelled: 0 },
  success_rate: 0.75,
  over_time: Array.from({ length: 12 }, (_, i) => ({
    start_ms: Date.UTC(2026, 0, 1, 12, 0) + i * 300_000,
    by_status: (i === 11 ? { running: 2, succeeded: 1 } : i === 0 ? { failed: 1 } : {}) as Record<string, number>,
  })),
  steps: { count: 10, p50_ms: 40, p95_ms: 1500, max_ms: 2000 },
  steps_by_kind: { agent: { count: 4, p50_ms: 900, p95_ms: 1500, max_ms: 2000 }, tool: { count: 6, p50_ms: 3, p95_ms: 9, max_ms: 9 } },
  models: [
    { model: 'scripted/a', provider: 'scripted', latency: { count: 2, p50_ms: 10, p95_ms: 20, max_ms: 20 }, prompt_tokens: 100, completion_tokens: 20, cost_usd: 0 },
    { model: 'openai/gpt', provider: 'openai', latency: { count: 0, p50_ms: 0, p95_ms: 0, max_ms: 0 }, prompt_tokens: 3000, completion_tokens: 500, cost_usd: 0.0123 },
  ],
  sandbox: [
    { tier: 'process', stop: 'exited', count: 4 },
    { tier: 'process', stop: 'time_limit', count: 1 },
  ],
  budget: {
    tokens: 3620,
    cost_usd: 0.0123,
    model_calls: 3,
    runs_stopped: 1,
    runs: [{ run: 'abcdef0123456789', workflow: 'budget', tokens: 1200, tokens_limit: 1000, cost_usd: 0, used: 1.2 }],
  },
  ...more,
});

describe('stats -> chart data', () => {
  it('lists runs by status in the usual order, leaving out zeros', () => {
    expect(statusBars(stats()).map((b) => [b.label, b.text, b.tone])).toEqual([
      ['running', '2', 's-running'],
      ['succeeded', '3', 's-succeeded'],
      ['failed', '1', 's-failed'],
    ]);
  });

  it('stacks each time slice by status with its total and a clock label', () => {
    const cols = overTime(stats());
    expect(cols).toHaveLength(12);
    expect(cols[11]).toMatchObject({ total: 3, parts: [{ key: 'running', value: 2 }, { key: 'succeeded', value: 1 }] });
    expect(cols[1].total).toBe(0);
    expect(cols[0].label).toMatch(/^\d\d:\d\d$/);
  });

  it('gives step latency per kind after all steps, printed in ms or s', () => {
    const rows = stepLatency(stats());
    expect(rows.map((r) => [r.label, r.p50.text, r.p95.text])).toEqual([
      ['all steps (10)', '40 ms', '1.50 s'],
      ['agent (4)', '900 ms', '1.50 s'],
      ['tool (6)', '3 ms', '9 ms'],
    ]);
    // One kind only: no separate "all steps" row repeating it.
    const one = stepLatency(stats({ steps_by_kind: { tool: { count: 10, p50_ms: 40, p95_ms: 1500, max_ms: 2000 } } }));
    expect(one.map((r) => r.label)).toEqual(['tool (10)']);
  });

  it('leaves models without a timed call out of the latency chart', () => {
    expect(modelLatency(stats()).map((r) => r.label)).toEqual(['scripted/a (2)']);
  });

  it('prints tokens and cost per model, most tokens first', () => {
    const bars = tokensByModel(stats());
    expect(bars.map((b) => b.label)).toEqual(['openai/gpt', 'scripted/a']);
    expect(bars[0].text).toBe('3.5k tok (3.0k in, 500 out) · $0.0123');
    expect(bars[1].text).toBe('120 tok (100 in, 20 out) · $0');
  });

  it('marks sandbox stops other than exited, and budget use past the limit', () => {
    expect(sandboxBars(stats()).map((b) => [b.label, b.value, b.tone])).toEqual([
      ['process · exited', 4, 's-succeeded'],
      ['process · time_limit', 1, 's-failed'],
    ]);
    const [b] = budgetBars(stats());
    expect(b).toMatchObject({ label: 'budget abcdef01…6789', value: 1.2, tone: 's-failed' });
    expect(b.text).toBe('120% (1.2k/1.0k tok)');
  });

  it('formats durations', () => {
    expect([fmtMs(0), fmtMs(999), fmtMs(1000), fmtMs(12_345), fmtMs(90_000)]).toEqual(['0 ms', '999 ms', '1.00 s', '12.3 s', '1.5 min']);
  });
});

const ev = (seq: number, type: string, more: Record<string, unknown> = {}) =>
  ({ run_id: 'r1', seq, at_ms: 1000 * seq, type, ...more }) as unknown as EventRecord;

describe('agents across running runs', () => {
  const graph = {
    nodes: [
      { id: 'draft', kind: 'agent', step: { id: 'draft', agent: 'writer' } },
      { id: 'review', kind: 'agent', step: { id: 'review', agent: 'critic' } },
      { id: 'publish', kind: 'tool', step: { id: 'publish' } },
    ],
    edges: [],
  } as unknown as Graph;

  it('maps agent steps to their agents and starts every agent idle', () => {
    expect(agentsOfGraph(graph)).toEqual({ draft: 'writer', review: 'critic' });
    const r = emptyRunAgents('r1', 'wf', agentsOfGraph(graph));
    expect(Object.values(r.agents).map((a) => [a.agent, a.status])).toEqual([
      ['writer', 'idle'],
      ['critic', 'idle'],
    ]);
  });

  it('folds steps, model calls, tool calls and controls into each agent state with its since', () => {
    let r = emptyRunAgents('r1', 'wf', agentsOfGraph(graph));
    r = foldAgents(r, [
      ev(1, 'run_created', { workflow: 'wf' }),
      ev(2, 'step_started', { step: 'draft', attempt: 1 }),
      ev(3, 'step_progress', { step: 'draft', progress: { kind: 'prompt', model: 'scripted/a', turn: 1 } }),
    ]);
    expect(r.agents.writer).toMatchObject({ status: 'thinking', detail: 'draft: waiting for scripted/a', since: 3000 });
    r = applyAgentEvent(r, ev(4, 'tool_call_started', { step: 'draft', tool: 'echo' }));
    expect(r.agents.writer).toMatchObject({ status: 'tool', detail: 'draft: calling echo', since: 4000 });
    r = foldAgents(r, [ev(5, 'step_succeeded', { step: 'draft' }), ev(6, 'step_started', { step: 'review' })]);
    expect(r.agents.writer.status).toBe('idle');
    expect(r.agents.critic.status).toBe('working');
    // Replays (a reconnecting socket) change nothing.
    expect(applyAgentEvent(r, ev(3, 'step_failed', { step: 'review' }))).toBe(r);
    r = applyAgentEvent(r, ev(7, 'agent_controlled', { agent: 'critic', action: 'pause' }));
    expect(r.agents.critic).toMatchObject({ status: 'paused', since: 7000 });
    r = applyAgentEvent(r, ev(8, 'step_progress', { step: 'review', progress: { kind: 'prompt', model: 'm' } }));
    expect(r.agents.critic.status).toBe('paused');
    r = applyAgentEvent(r, ev(9, 'step_failed', { step: 'review', retry_in_ms: 2000, error: { message: 'x' } }));
    expect(r.agents.critic.status).toBe('paused');
    r = applyAgentEvent(r, ev(10, 'agent_controlled', { agent: 'critic', action: 'resume' }));
    r = applyAgentEvent(r, ev(11, 'step_failed', { step: 'review', retry_in_ms: 2000, error: { message: 'x' } }));
    expect(r.agents.critic).toMatchObject({ status: 'retrying', detail: 'review: retry in 2.00 s' });
    // Busiest first; an ended run's agents are gone.
    expect(agentRows([r]).map((a) => a.agent)).toEqual(['critic', 'writer']);
    r = applyAgentEvent(r, ev(12, 'run_succeeded'));
    expect(agentRows([r])).toEqual([]);
  });

  it('knows an instance of a step inside a map by its id', () => {
    let r = emptyRunAgents('r1', 'wf', { draft: 'writer' });
    r = applyAgentEvent(r, ev(1, 'step_started', { step: 'each[2].draft' }));
    expect(r.agents.writer).toMatchObject({ status: 'working', detail: 'each[2].draft: started' });
  });

  it('says which events reload the runs and the approvals', () => {
    expect(changesRuns('run_created')).toBe(true);
    expect(changesRuns('step_progress')).toBe(false);
    expect(changesApprovals('human_requested')).toBe(true);
    expect(changesApprovals('step_started')).toBe(false);
  });
});

/** A fake WebSocket and clock: the test opens, fails and drops connections by hand. */
function fakes() {
  const sockets: (SocketLike & { url: string; protocols: string[]; sent: string[]; closed: boolean })[] = [];
  const timers: { fn: () => void; ms: number }[] = [];
  const deps: LiveDeps = {
    open(url, protocols) {
      const s = { url, protocols, sent: [] as string[], closed: false, onopen: null, onmessage: null, onclose: null, onerror: null, send(d: string) { s.sent.push(d); }, close() { s.closed = true; } };
      sockets.push(s);
      return s;
    },
    setTimer(fn, ms) {
      const t = { fn, ms };
      timers.push(t);
      return t;
    },
    clearTimer(t) {
      const i = timers.indexOf(t as (typeof timers)[number]);
      if (i >= 0) timers.splice(i, 1);
    },
  };
  /** Runs the one pending timer, checking its delay. */
  const tick = (ms: number) => {
    expect(timers.map((t) => t.ms)).toEqual([ms]);
    timers.shift()!.fn();
  };
  return { sockets, timers, deps, tick };
}

const subscribed = (s: SocketLike) => s.onmessage?.({ data: JSON.stringify({ type: 'subscribed', tenant: 'default' }) });

describe('the live socket', () => {
  it('doubles its backoff up to 10 s', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 30].map(backoff)).toEqual([500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
    expect(socketUrl({ protocol: 'https:', host: 'b.example:8443' })).toBe('wss://b.example:8443/api/v1/ws');
    expect(socketUrl({ protocol: 'http:', host: '127.0.0.1:1' })).toBe('ws://127.0.0.1:1/api/v1/ws');
  });

  it('sends the key as a subprotocol, never in the URL, subscribes to the tenant and passes events on', () => {
    const f = fakes();
    const live = new LiveSocket('ws://h/api/v1/ws', 'bk_secret', f.deps);
    const states: LiveState[] = [];
    const got: number[] = [];
    let resyncs = 0;
    live.onState((s) => states.push(s));
    live.onEvent((e) => got.push(e.seq));
    live.onResync(() => resyncs++);
    live.start();
    const [s] = f.sockets;
    expect(s.url).toBe('ws://h/api/v1/ws');
    expect(s.protocols).toEqual(['baton.v1', 'baton.key.bk_secret']);
    s.onopen?.({});
    expect(s.sent).toEqual(['{"subscribe_tenant":{}}']);
    subscribed(s);
    s.onmessage?.({ data: JSON.stringify({ type: 'event', event: ev(1, 'run_created') }) });
    s.onmessage?.({ data: 'not json' });
    expect(got).toEqual([1]);
    expect(states).toEqual(['live']);
    expect(resyncs).toBe(1);
  });

  it('reconnects with backoff after a drop, resyncs when live again, and falls back to polling', () => {
    const f = fakes();
    const live = new LiveSocket('ws://h/api/v1/ws', 'k', f.deps);
    const states: LiveState[] = [];
    let resyncs = 0;
    live.onState((s) => states.push(s));
    live.onResync(() => resyncs++);
    live.start();
    f.sockets[0].onopen?.({});
    subscribed(f.sockets[0]);
    // The server goes away: reconnecting, first retry after 0.5 s.
    f.sockets[0].onclose?.({});
    expect(live.state).toBe('reconnecting');
    f.tick(500);
    // That try fails without opening, and the next: the delay doubles, then polling.
    f.sockets[1].onclose?.({});
    expect(live.state).toBe('reconnecting');
    f.tick(1000);
    f.sockets[2].onclose?.({});
    expect(FALLBACK_AFTER).toBe(3);
    expect(live.state).toBe('polling');
    f.tick(2000);
    // It keeps trying; when it connects, it is live again and the pages reload once.
    f.sockets[3].onopen?.({});
    subscribed(f.sockets[3]);
    expect(live.state).toBe('live');
    expect(resyncs).toBe(2);
    expect(states).toEqual(['live', 'reconnecting', 'polling', 'live']);
    // A drop after that starts the backoff again from 0.5 s.
    f.sockets[3].onclose?.({});
    f.tick(500);
  });

  it('polls for good when the subscription is refused, and stops cleanly', () => {
    const f = fakes();
    const live = new LiveSocket('ws://h/api/v1/ws', 'k', f.deps);
    live.start();
    f.sockets[0].onopen?.({});
    f.sockets[0].onmessage?.({ data: JSON.stringify({ error: { code: 'forbidden', message: 'a runner key follows only its own runs' } }) });
    expect(live.state).toBe('polling');
    expect(f.sockets[0].closed).toBe(true);
    expect(f.timers).toEqual([]);

    const g = fakes();
    const other = new LiveSocket('ws://h/api/v1/ws', 'k', g.deps);
    other.start();
    g.sockets[0].onclose?.({});
    expect(g.timers).toHaveLength(1);
    other.stop();
    expect(other.state).toBe('closed');
    expect(g.timers).toEqual([]);
    other.start();
    expect(g.sockets).toHaveLength(1);
  });
});

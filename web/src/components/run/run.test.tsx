import { act, cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { Profiler } from 'react';
import { afterEach, describe, expect, it } from 'vitest';
import { Api } from '../../api/client';
import type { EventRecord, Graph, RunDetail, SandboxRecord, TeamView, Whoami } from '../../api/types';
import { DeltaStore, followDeltas, stepIdOf } from '../../lib/deltas';
import { rowOf } from '../../lib/events';
import type { LiveDeps, SocketLike } from '../../lib/live';
import { lastTeamSeq, messagesOf, since, undeliveredTo } from '../../lib/team';
import { SessionContext } from '../../session';
import { EventLog } from '../EventLog';
import { TimeTravel } from '../timeline/TimeTravel';
import { LiveOutput } from './LiveOutput';
import { SandboxRuns, recordsOf } from './SandboxRuns';
import { TeamPanel } from './TeamPanel';

afterEach(cleanup);

const ev = (seq: number, type: string, more: Record<string, unknown> = {}) => ({ run_id: 'r', seq, at_ms: 1000 * seq, type, ...more }) as unknown as EventRecord;

describe('DeltaStore', () => {
  it('appends a turn, starts again on the next, and tells only the step concerned', () => {
    const store = new DeltaStore();
    let told = 0;
    let other = 0;
    store.subscribe('write', () => told++);
    store.subscribe('check', () => other++);
    store.add({ step: 'write', agent: 'a', turn: 1, text: 'Hello' });
    const first = store.of('write');
    expect(store.of('write')).toBe(first); // a stable snapshot until the next delta
    store.add({ step: 'write', agent: 'a', turn: 1, text: ' there' });
    expect(store.of('write')[0].text).toBe('Hello there');
    expect(store.of('write')).not.toBe(first);
    store.add({ step: 'write', agent: 'a', turn: 2, text: 'Next' });
    expect(store.of('write')[0]).toMatchObject({ turn: 2, text: 'Next' });
    // Map instances are kept apart, under their step's id.
    store.add({ step: 'write[1]', agent: 'a', turn: 1, text: 'item' });
    expect(store.of('write').map((s) => s.step)).toEqual(['write', 'write[1]']);
    expect(told).toBe(4);
    expect(other).toBe(0);
    expect(store.of('check')).toEqual([]);
    // A step that ended has its output in the log: its text is dropped.
    store.event({ type: 'step_succeeded', step: 'write' });
    expect(store.of('write').map((s) => s.step)).toEqual(['write[1]']);
    expect(told).toBe(5);
    expect(stepIdOf('review[2][0]')).toBe('review');
  });
});

class FakeSocket implements SocketLike {
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: unknown) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: string[] = [];
  closed = false;
  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {}
  send(d: string) {
    this.sent.push(d);
  }
  close() {
    this.closed = true;
  }
  receive(v: unknown) {
    this.onmessage?.({ data: JSON.stringify(v) });
  }
}

describe('followDeltas', () => {
  it('subscribes to the run from the seq the page has, keeps the deltas, ignores the events, and reconnects', () => {
    const sockets: FakeSocket[] = [];
    const timers: (() => void)[] = [];
    const deps: LiveDeps = {
      open: (url, p) => {
        const s = new FakeSocket(url, p);
        sockets.push(s);
        return s;
      },
      setTimer: (fn) => timers.push(fn),
      clearTimer: () => {},
    };
    const store = new DeltaStore();
    let seq = 7;
    const stop = followDeltas('bk_key', 'run1', () => seq, store, deps, 'ws://x/api/v1/ws');
    const s = sockets[0];
    expect(s.protocols).toEqual(['baton.v1', 'baton.key.bk_key']);
    s.onopen?.({});
    expect(JSON.parse(s.sent[0])).toEqual({ subscribe: { run: 'run1', after: 7 } });
    s.receive({ type: 'subscribed', run: 'run1', after: 7 });
    s.receive({ type: 'event', event: ev(8, 'step_started', { step: 'write' }) });
    s.receive({ type: 'event', event: ev(9, 'step_progress', { step: 'write', progress: { kind: 'prompt', turn: 1 } }) });
    s.receive({ type: 'model_delta', delta: { run_id: 'run1', step: 'write', agent: 'a', turn: 1, text: 'Hi' } });
    expect(store.of('write')[0]).toMatchObject({ turn: 1, text: 'Hi', whole: true });
    s.receive({ type: 'model_delta', delta: { run_id: 'run1', step: 'write', agent: 'a', turn: 2, text: 'Again' } });
    expect(store.of('write')[0]).toMatchObject({ turn: 2, text: 'Again', whole: false });
    // Dropped: it connects again after a pause, from the seq the page has then.
    s.onclose?.({});
    expect(timers).toHaveLength(1);
    seq = 12;
    timers[0]();
    sockets[1].onopen?.({});
    expect(JSON.parse(sockets[1].sent[0]).subscribe.after).toBe(12);
    stop();
    expect(sockets[1].closed).toBe(true);
  });
});

describe('LiveOutput', () => {
  it('shows the text as it streams, re-rendering itself only, and cuts a long one', () => {
    const store = new DeltaStore();
    let renders = 0;
    render(
      <Profiler id="panel" onRender={() => renders++}>
        <div>
          <LiveOutput store={store} step="write" />
        </div>
      </Profiler>,
    );
    expect(screen.getByText(/Waiting for the model's first words/)).toBeTruthy();
    // The turn's prompt came first: the text is whole.
    store.event({ type: 'step_progress', step: 'write', progress: { kind: 'prompt', turn: 1 } });
    act(() => store.add({ step: 'write', agent: 'typist', turn: 1, text: 'Hello' }));
    act(() => store.add({ step: 'write', agent: 'typist', turn: 1, text: ' world' }));
    expect(screen.getByTestId('live-text').textContent).toBe('Hello world');
    expect(screen.getByTestId('live-stream').textContent).toContain('typist · turn 1 · 11 characters received');
    expect(screen.queryByTestId('live-joined')).toBeNull();
    // Another step's deltas do not render it.
    const before = renders;
    act(() => store.add({ step: 'other', agent: 'x', turn: 1, text: 'zzz' }));
    expect(renders).toBe(before);
    act(() => store.add({ step: 'write', agent: 'typist', turn: 1, text: 'y'.repeat(10_000) }));
    const shown = screen.getByTestId('live-text').textContent ?? '';
    expect(shown).toHaveLength(4000);
    expect(shown.endsWith('y')).toBe(true);
    fireEvent.click(screen.getByRole('button', { name: /Show all \(10,011 characters\)/ }));
    expect(screen.getByTestId('live-text').textContent).toHaveLength(10_011);
  });

  it('says so when it started following in the middle of an answer', () => {
    const store = new DeltaStore();
    render(<LiveOutput store={store} step="write" />);
    act(() => store.add({ step: 'write', agent: 'typist', turn: 1, text: 'middle of it' }));
    expect(screen.getByTestId('live-text').textContent).toBe('… middle of it');
    expect(screen.getByTestId('live-joined').textContent).toContain('in the middle of this answer');
  });
});

const RECORD = {
  tier: 'process',
  exit_code: 3,
  signal: null,
  stop_reason: 'exited',
  limits_hit: ['time_limit'],
  stdout: 'hello\n',
  stdout_truncated: false,
  stderr: 'e'.repeat(6000),
  stderr_truncated: true,
  wall_time: 53.2,
  cpu_time: 6.5,
  peak_memory_bytes: 3 * 1024 * 1024,
  network: [],
  enforced: ['namespaces: user, pid'],
  request: { argv: ['sh', 'check.sh', 'an arg'], files: { 'check.sh': 120 }, env: ['TOKEN'], workdir: null, stdin_bytes: 0 },
  policy: { tier: 'process', limits: { cpus: 1, memory_bytes: 64 * 1024 * 1024, pids: 16, disk_bytes: 1024 * 1024, time: '10s', output_bytes: 65536 }, net: { mode: 'none' } },
  scan: { findings: [{ rule: 'SH002', severity: 'medium', file: 'check.sh', line: 2, message: 'eval in shell', fix: 'avoid eval', tool: 'baton' }], tools: ['baton'] },
};

describe('SandboxRuns', () => {
  it('shows the command, tier, limits, stop, exit code, output (cut) and findings of a step', () => {
    const all = [
      { step: 'other', via: 'step', record: {} },
      { step: 'check', visit: 1, attempt: 1, via: 'step', record: RECORD },
    ] as SandboxRecord[];
    render(<SandboxRuns records={recordsOf(all, 'check')} />);
    expect(screen.getByTestId('sandbox-command').textContent).toBe('sh check.sh "an arg"');
    expect(screen.getByTestId('sandbox-exit').textContent).toBe('exited · exit 3');
    expect(screen.getByTestId('sandbox-tier').textContent).toBe('process');
    const limits = screen.getByTestId('sandbox-limits').textContent;
    expect(limits).toContain('memory 64.0 MiB');
    expect(limits).toContain('time 10s');
    expect(limits).toContain('net none');
    expect(screen.getByText('time_limit')).toBeTruthy();
    expect(screen.getByTestId('sandbox-findings').textContent).toContain('SH002');
    expect(screen.getByTestId('sandbox-findings').textContent).toContain('check.sh:2');
    expect(screen.getByText(/cut at the sandbox's output limit/)).toBeTruthy();
    // stderr is cut in the page too, with "show all".
    expect(screen.getByRole('button', { name: /Show all \(6,000 characters\)/ })).toBeTruthy();
    expect(screen.getByText(/peak memory 3.0 MiB/)).toBeTruthy();
  });

  it('shows nothing for a step without executions', () => {
    const { container } = render(<SandboxRuns records={[]} />);
    expect(container.textContent).toBe('');
  });
});

const TEAM: TeamView = {
  agents: {
    critic: { state: 'running', since_ms: 10_000 },
    writer: { state: 'paused', since_ms: 5_000, by: 'ops' },
  },
  channels: { design: ['critic', 'writer'] },
  memory: { notes: { value: 'n'.repeat(500), version: 2, by: 'writer', step: 'draft[1]' } },
  inboxes: { critic: [{ id: 2, from: 'writer', channel: 'design', content: 'second', at_ms: 3000 }] },
  messages_sent: 2,
};

const TEAM_EVENTS = [
  ev(1, 'run_created', { workflow: 'w' }),
  ev(2, 'message_sent', { step: 'draft', from: 'writer', to: ['critic'], content: 'first' }),
  ev(3, 'message_sent', { step: 'draft', from: 'writer', to: ['critic'], channel: 'design', content: 'second' }),
  ev(4, 'step_progress', { step: 'draft', progress: { kind: 'note', message: 'x' } }),
];

function renderTeam(team: TeamView | null, events: EventRecord[], onStep?: (s: string) => void, fetcher?: typeof fetch) {
  const me = { tenant: 'default', key_id: 'k', role: 'admin', may: {} } as unknown as Whoami;
  return render(
    <SessionContext.Provider value={{ api: new Api('k', fetcher), me, signOut() {} }}>
      <TeamPanel runId="r" team={team} events={events} live={false} onStep={onStep} />
    </SessionContext.Provider>,
  );
}

describe('team lib', () => {
  it('numbers the messages as the server does and finds who has not got one', () => {
    const m = messagesOf(TEAM_EVENTS);
    expect(m.map((x) => [x.id, x.content, x.channel])).toEqual([
      [1, 'first', undefined],
      [2, 'second', 'design'],
    ]);
    expect(undeliveredTo(TEAM, 1)).toEqual([]);
    expect(undeliveredTo(TEAM, 2)).toEqual(['critic']);
    expect(lastTeamSeq(TEAM_EVENTS)).toBe(3);
    expect(since(0, 65_000)).toBe('1m 05s');
  });

  it("summarises the team's events in the log, so they can be searched", () => {
    expect(rowOf(TEAM_EVENTS[2]).summary).toBe('writer → #design: second');
    expect(rowOf(ev(5, 'message_sent', { step: 's', from: 'a', to: ['b', 'c'], content: 'hi' })).summary).toBe('a → b, c: hi');
    expect(rowOf(ev(6, 'memory_written', { step: 's', agent: 'scribe', key: 'decisions', value: 'x', op: 'append' })).summary).toBe('scribe append decisions: x');
    expect(rowOf(ev(7, 'messages_delivered', { step: 's', attempt: 1, turn: 2, count: 3 })).summary).toBe('3 message(s) into turn 2');
    expect(rowOf(ev(8, 'channel_subscribed', { step: 's', agent: 'a', channel: 'news' })).summary).toBe('a subscribed to #news');
  });
});

describe('TeamPanel', () => {
  it('shows agents, channels, memory (cut) and messages with their delivery, and links steps', () => {
    const picked: string[] = [];
    renderTeam(TEAM, TEAM_EVENTS, (s) => picked.push(s));
    expect(screen.getByText(/2 agents · 2 messages · 1 memory key$/)).toBeTruthy();
    expect(screen.getByTestId('agent-writer').textContent).toContain('paused');
    expect(screen.getByTestId('agent-writer').textContent).toContain('by ops');
    expect(screen.getByTestId('channel-design').textContent).toContain('1 message');
    expect(screen.getByTestId('channel-design').textContent).toContain('critic, writer');
    const memory = screen.getByTestId('memory-notes');
    expect(memory.textContent).toContain('v2 · by writer');
    // The value is cut to a line; all of it only when opened.
    expect(memory.querySelector('summary')?.textContent).toBe(`${'n'.repeat(160)}…`);
    const msgs = screen.getAllByTestId('team-message');
    expect(msgs[0].textContent).toContain('delivered to critic');
    expect(msgs[1].textContent).toContain('waiting in the inbox of critic');
    fireEvent.click(screen.getByRole('button', { name: 'draft[1]' }));
    expect(picked).toEqual(['draft']);
  });

  it('says so for a run without agents', () => {
    renderTeam(null, []);
    expect(screen.getByTestId('team-empty').textContent).toContain('This run has no agents');
  });

  it('reads the team again after an event that changes it', async () => {
    let asked = 0;
    const fetcher = (async () => {
      asked++;
      return new Response(JSON.stringify({ team: { ...TEAM, agents: { ...TEAM.agents, critic: { state: 'idle', since_ms: 20_000 } } } }), { status: 200 });
    }) as typeof fetch;
    const { rerender } = renderTeam(TEAM, TEAM_EVENTS, undefined, fetcher);
    expect(screen.getByTestId('agent-critic').dataset.state).toBe('running');
    const more = TEAM_EVENTS.concat(ev(5, 'step_succeeded', { step: 'review', output: 'ok' }));
    const me = { tenant: 'default', key_id: 'k', role: 'admin', may: {} } as unknown as Whoami;
    rerender(
      <SessionContext.Provider value={{ api: new Api('k', fetcher), me, signOut() {} }}>
        <TeamPanel runId="r" team={TEAM} events={more} live={false} />
      </SessionContext.Provider>,
    );
    await waitFor(() => expect(screen.getByTestId('agent-critic').dataset.state).toBe('idle'), { timeout: 2000 });
    expect(asked).toBe(1);
  });
});

describe('EventLog and the graph', () => {
  const rows = [ev(1, 'run_created'), ev(2, 'step_started', { step: 'a' }), ev(3, 'step_started', { step: 'b[1]' }), ev(4, 'step_succeeded', { step: 'b[1]', output: 'o' })].map(rowOf);

  it("picks an event's step with a click or Enter, highlights the focused step's events and filters to them", () => {
    const picked: string[] = [];
    const { container, rerender } = render(<EventLog rows={rows} onPick={(s) => picked.push(s)} />);
    fireEvent.click(container.querySelector('[data-step="a"]')!);
    fireEvent.keyDown(container.querySelector('[data-step="b[1]"]')!, { key: 'Enter' });
    expect(picked).toEqual(['a', 'b[1]']);
    // The run's own events pick nothing.
    expect(container.querySelector('[data-kind="run_created"]')?.getAttribute('role')).toBeNull();
    rerender(<EventLog rows={rows} focus="b" onPick={() => {}} />);
    expect(container.querySelectorAll('.row.rv-focus').length).toBe(2);
    fireEvent.click(screen.getByLabelText(/only b/));
    expect(screen.getByTestId('log-count').textContent).toBe('2 of 4');
  });
});

describe('TimeTravel and the graph', () => {
  it("picks a checkpoint's subject and marks the selected step's checkpoints", () => {
    const evs = [ev(1, 'run_created'), ev(2, 'step_started', { step: 'a', attempt: 1 }), ev(3, 'step_started', { step: 'b[0]', attempt: 1 }), ev(4, 'step_succeeded', { step: 'b[0]', output: 1 })];
    const me = { tenant: 'default', key_id: 'k', role: 'viewer', may: {} } as unknown as Whoami;
    const run = { run: { id: 'r', workflow: 'w', status: 'succeeded' }, steps: [] } as unknown as RunDetail;
    const graph = { header: { agents: {} }, nodes: [], edges: [] } as unknown as Graph;
    const picked: string[] = [];
    const { container } = render(
      <SessionContext.Provider value={{ api: new Api('k'), me, signOut() {} }}>
        <TimeTravel run={run} graph={graph} events={evs} focus="b" onSubject={(s) => picked.push(s)} />
      </SessionContext.Provider>,
    );
    expect([...container.querySelectorAll('.tt-row.rv-focus')].map((r) => r.getAttribute('data-seq'))).toEqual(['3', '4']);
    fireEvent.click(container.querySelector('[data-seq="2"]')!);
    expect(picked).toEqual(['a']);
  });
});

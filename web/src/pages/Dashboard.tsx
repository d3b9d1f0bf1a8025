// Home: counts by status, the runs in flight and the recent ones, each agent's state across the
// running runs, and charts of the last hour or day (`GET /api/v1/stats`). Live over the tab's
// WebSocket (components/dashboard/Live.tsx): a list is reloaded when an event concerns it, and
// polled only while the socket is down (the indicator says which).
import { useCallback, useEffect, useRef, useState } from 'react';
import type { ApiError } from '../api/client';
import type { EventRecord, Graph, RunListItem } from '../api/types';
import { BarChart, ColumnsChart, PairChart, RateChart } from '../components/dashboard/Charts';
import { useLiveEvents, useLiveResource, useLiveState } from '../components/dashboard/Live';
import { ErrorBanner, StatusPill } from '../components/Status';
import {
  agentRows,
  agentsOfGraph,
  applyAgentEvent,
  budgetBars,
  changesRuns,
  changesStats,
  emptyRunAgents,
  fmtCount,
  fmtUsd,
  foldAgents,
  modelLatency,
  overTime,
  sandboxBars,
  statusBars,
  stepLatency,
  tokensByModel,
  type RunAgents,
  type Stats,
} from '../lib/dashboard';
import { polling, type LiveState } from '../lib/live';
import { CompareBar, PickBox, usePick } from '../components/timeline/ComparePick';
import { ago } from '../lib/preview';
import { countByStatus, IN_FLIGHT } from '../lib/runStatus';
import { onLink } from '../router';
import { useSession } from '../session';
import { shortId } from '../lib/preview';

/** The most in-flight runs whose agents are followed. */
const AGENT_RUNS = 20;

export function Dashboard() {
  const { api, me } = useSession();
  const live = useLiveState();
  const runs = useLiveResource((s) => api.request<{ runs: RunListItem[] }>('GET', '/runs?limit=100', undefined, s), {
    key: 'runs',
    pollMs: 2000,
    relevant: changesRuns,
  });
  const [win, setWin] = useState<'1h' | '24h'>('1h');
  const stats = useLiveResource((s) => api.request<Stats>('GET', `/stats?window=${win}`, undefined, s), {
    key: `stats-${win}`,
    pollMs: 5000,
    relevant: changesStats,
    gapMs: 1000,
  });
  const list = runs.data?.runs ?? [];
  const inFlight = list.filter((r) => IN_FLIGHT.includes(r.status));
  const recent = list.filter((r) => !IN_FLIGHT.includes(r.status)).slice(0, 20);
  const agents = useAgents(inFlight.slice(0, AGENT_RUNS), live, runs.data);
  useClock(10_000);
  const pick = usePick();
  return (
    <section aria-labelledby="dash-title" className="dashboard">
      <div className="dash-head">
        <h1 id="dash-title">Dashboard</h1>
        <LiveIndicator state={live} />
      </div>
      <ErrorBanner error={runs.error} onRetry={runs.reload} />
      {runs.data && list.length === 0 && <FirstSteps canStart={me.may.start_runs} canBuild={me.may.edit_workflows} onStarted={runs.reload} />}
      {list.length > 0 && (
        <>
          <ul className="counts" aria-label="Runs by status (last 100)" data-testid="counts">
            {countByStatus(list).map(([status, n]) => (
              <li key={status} className={`count s-${status}`} data-status={status}>
                <span className="n">{n}</span>
                <span>{status}</span>
              </li>
            ))}
          </ul>
          <CompareBar picked={pick.picked} onClear={pick.clear} />
          <RunTable title="In flight" runs={inFlight} empty="Nothing is running right now." testid="in-flight" pick={pick} />
          <AgentTable rows={agents.rows} error={agents.error} />
          <RunTable title="Recent" runs={recent} empty="No run has finished yet." testid="recent" pick={pick} />
        </>
      )}
      {!runs.data && !runs.error && <p className="loading">Loading runs…</p>}
      {list.length > 0 && <StatsCharts stats={stats.data} error={stats.error} win={win} setWin={setWin} onRetry={stats.reload} />}
    </section>
  );
}

/** Re-renders every `ms`, so that "12s ago" stays true between updates (no request). */
function useClock(ms: number) {
  const [, setT] = useState(0);
  useEffect(() => {
    const t = setInterval(() => setT((n) => n + 1), ms);
    return () => clearInterval(t);
  }, [ms]);
}

function LiveIndicator({ state }: { state: LiveState }) {
  const text: Record<LiveState, string> = {
    connecting: 'connecting…',
    live: 'live',
    reconnecting: 'reconnecting…',
    polling: 'polling (live updates unavailable)',
    closed: 'offline',
  };
  return (
    <span className={`live-state l-${state}`} role="status" data-testid="live-state" data-state={state}>
      <svg width="10" height="10" aria-hidden="true">
        <circle cx="5" cy="5" r="5" />
      </svg>
      {text[state]}
    </span>
  );
}

/**
 * The agents of the runs in flight: each run's graph (which agent runs which step) and its
 * events so far are read once, then live events are folded in; an event past a gap (the socket
 * dropped some) reads the missing ones from the run's log. While the socket is down, each
 * followed run's new events are read whenever the runs list is reloaded.
 */
function useAgents(inFlight: RunListItem[], live: LiveState, version: unknown): { rows: ReturnType<typeof agentRows>; error?: ApiError } {
  const { api } = useSession();
  const [runs, setRuns] = useState<Record<string, RunAgents>>({});
  const [error, setError] = useState<ApiError>();
  const loading = useRef(new Set<string>());
  // Runs that got events while being read: read again after (what was read may predate them).
  const again = useRef(new Set<string>());
  const runsRef = useRef(runs);
  runsRef.current = runs;
  const ids = inFlight.map((r) => r.id).join(',');

  /** Reads a run's events after what is folded (all of them the first time) and folds them. */
  const catchUp = useCallback(
    async (id: string, workflow: string) => {
      if (loading.current.has(id)) {
        again.current.add(id);
        return;
      }
      loading.current.add(id);
      try {
        let cur = runsRef.current[id];
        if (!cur) {
          const g = await api.request<Graph>('GET', `/runs/${encodeURIComponent(id)}/graph`);
          cur = emptyRunAgents(id, workflow, agentsOfGraph(g));
        }
        for (let page = 0; page < 10; page++) {
          const evs = await api.events(id, cur.seq, 1000);
          cur = foldAgents(cur, evs);
          if (evs.length < 1000) break;
        }
        const done = cur;
        const known = runsRef.current[id];
        if (!known || known.seq < done.seq) runsRef.current = { ...runsRef.current, [id]: done };
        setRuns((m) => ({ ...m, [id]: m[id] && m[id].seq > done.seq ? m[id] : done }));
        setError(undefined);
      } catch (e) {
        setError(e as ApiError);
      } finally {
        loading.current.delete(id);
      }
      if (again.current.delete(id)) void catchUpRef.current(id, workflow);
    },
    [api],
  );
  const catchUpRef = useRef(catchUp);
  catchUpRef.current = catchUp;

  // New runs in flight are read; runs no longer in flight are dropped.
  useEffect(() => {
    const want = new Map(inFlight.map((r) => [r.id, r.workflow]));
    setRuns((m) => {
      const kept = Object.fromEntries(Object.entries(m).filter(([id]) => want.has(id)));
      return Object.keys(kept).length === Object.keys(m).length ? m : kept;
    });
    for (const [id, wf] of want) if (!runsRef.current[id] || polling(live)) void catchUp(id, wf);
    // `ids` stands for the list: while live, a reload with the same runs reads nothing; while
    // polling, each reload of the list (`version`) reads each run's new events.
  }, [ids, live, catchUp, polling(live) ? version : null]);

  useLiveEvents((e: EventRecord) => {
    const cur = runsRef.current[e.run_id];
    if (!cur) {
      if (loading.current.has(e.run_id)) again.current.add(e.run_id);
      return;
    }
    if (e.seq === cur.seq + 1) {
      const next = applyAgentEvent(cur, e);
      runsRef.current = { ...runsRef.current, [e.run_id]: next };
      setRuns((m) => (m[e.run_id] && m[e.run_id].seq + 1 === e.seq ? { ...m, [e.run_id]: applyAgentEvent(m[e.run_id], e) } : m));
    } else if (e.seq > cur.seq + 1) void catchUp(e.run_id, cur.workflow);
  });

  return { rows: agentRows(inFlight.map((r) => runs[r.id]).filter((r): r is RunAgents => !!r)), error };
}

function AgentTable({ rows, error }: { rows: ReturnType<typeof agentRows>; error?: ApiError }) {
  return (
    <div className="card" data-testid="agents">
      <h2>Agents in running runs</h2>
      <ErrorBanner error={error} />
      {rows.length === 0 ? (
        <p className="muted">No agent is at work: the runs in flight have no agent step, or nothing is running.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">Agent</th>
              <th scope="col">Run</th>
              <th scope="col">State</th>
              <th scope="col">Doing</th>
              <th scope="col">Since</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((a) => (
              <tr key={`${a.run}/${a.agent}`} data-testid="agent-row" data-agent={a.agent} data-status={a.status}>
                <td>
                  <strong>{a.agent}</strong>
                </td>
                <td>
                  <a href={`/runs/${a.run}`} onClick={onLink} className="mono">
                    {shortId(a.run)}
                  </a>{' '}
                  <span className="muted small">{a.workflow}</span>
                </td>
                <td>
                  <span className={`pill a-${a.status}`}>{a.status}</span>
                </td>
                <td className="small">{a.detail}</td>
                <td className="muted">{a.since ? ago(a.since) : '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function StatsCharts({ stats, error, win, setWin, onRetry }: { stats?: Stats; error?: ApiError; win: '1h' | '24h'; setWin(w: '1h' | '24h'): void; onRetry(): void }) {
  const s = stats?.window === win ? stats : undefined;
  return (
    <div className="charts-block" data-testid="charts">
      <div className="charts-head">
        <h2>{win === '1h' ? 'The last hour' : 'The last day'}</h2>
        <div className="seg" role="group" aria-label="Window">
          {(['1h', '24h'] as const).map((w) => (
            <button key={w} type="button" aria-pressed={win === w} onClick={() => setWin(w)}>
              {w === '1h' ? 'Last hour' : 'Last day'}
            </button>
          ))}
        </div>
        {s && (
          <span className="muted small" data-testid="stats-runs">
            {plural(s.runs, 'run')} created{s.truncated ? ' (the newest 500 counted)' : ''}
          </span>
        )}
      </div>
      <ErrorBanner error={error} onRetry={onRetry} />
      {!s && !error && <p className="loading">Loading figures…</p>}
      {s && s.runs === 0 && <p className="muted">No run was created in this window: the charts fill in as runs are started.</p>}
      {s && s.runs > 0 && (
        <div className="charts">
          <BarChart title="Runs by status" bars={statusBars(s)} empty="No run." testid="chart-status" />
          <RateChart
            title="Success rate"
            rate={s.success_rate}
            detail={s.success_rate == null ? 'no run has finished yet' : 'succeeded among the finished runs (succeeded, failed, cancelled)'}
            testid="chart-success"
          />
          <ColumnsChart title="Runs over time (created, by status now)" columns={overTime(s)} testid="chart-over-time" />
          <PairChart title="Step latency (count)" rows={stepLatency(s)} empty="No step has ended yet." testid="chart-steps" />
          <PairChart title="Model latency, prompt to reply (calls)" rows={modelLatency(s)} empty="No model was called." testid="chart-model-latency" />
          <BarChart title="Tokens and cost by model" bars={tokensByModel(s)} empty="No tokens used." testid="chart-tokens" />
          <BarChart title="Sandbox executions by tier and stop" bars={sandboxBars(s)} empty="No sandbox execution." testid="chart-sandbox" />
          <BarChart
            title={`Budget use: ${fmtCount(s.budget.tokens)} tokens, ${fmtUsd(s.budget.cost_usd)}, ${plural(s.budget.model_calls, 'model call')}, ${plural(s.budget.runs_stopped, 'run')} stopped by a limit`}
            bars={budgetBars(s)}
            max={1}
            empty="No run in this window sets a token or cost limit."
            testid="chart-budget"
          />
        </div>
      )}
    </div>
  );
}

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

/** A first example anyone can run: examples/hello.yaml (the embedded model, offline). */
const HELLO = `version: 1
name: hello
description: One agent answers one prompt.
inputs:
  who: { type: string, default: "world", description: Who to greet }
agents:
  greeter:
    model: "\${BATON_MODEL:-local/smollm2}"
    role: friendly greeter
    instructions: Greet people warmly in one sentence.
steps:
  - id: greet
    agent: greeter
    prompt: "Say hello to {{ inputs.who }}."
`;

function FirstSteps({ canStart, canBuild, onStarted }: { canStart: boolean; canBuild: boolean; onStarted(): void }) {
  const { api } = useSession();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const base = `${window.location.protocol}//${window.location.host}`;
  const runExample = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await api.request('POST', '/runs', { source: HELLO });
      onStarted();
    } catch (e) {
      setError(e as ApiError);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="empty" data-testid="empty-dashboard">
      <h2>No runs yet</h2>
      {canStart ? (
        <>
          <p>Start a first run: it shows up here as it goes, and you can open it to watch each step.</p>
          <p className="first-actions">
            <button type="button" className="primary" onClick={runExample} disabled={busy}>
              {busy ? 'Starting…' : 'Run the hello example'}
            </button>
            <span className="muted small">one agent greets the world, on the embedded model (offline)</span>
          </p>
          <ErrorBanner error={error} />
          {canBuild && (
            <p>
              Or build one on a canvas in the <a href="/builder" onClick={onLink}>workflow builder</a> (or import a YAML file
              there), save it and press Run.
            </p>
          )}
          <p>Or store a workflow, then start it (from the repository, with your key in <code>$KEY</code>):</p>
          <pre>
            {`curl -H "Authorization: Bearer $KEY" -H 'Content-Type: application/yaml' \\
     --data-binary @examples/human-approval.yaml ${base}/api/v1/workflows
curl -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \\
     -d '{"workflow": "human-approval"}' ${base}/api/v1/runs`}
          </pre>
          <p className="muted">
            That one waits for your approval in <a href="/approvals" onClick={onLink}>Approvals</a>. Every route is in
            the <a href="/api/v1/docs">API reference</a>.
          </p>
        </>
      ) : (
        <p>Your key may read runs but not start them: ask an editor or an admin to start one.</p>
      )}
    </div>
  );
}

function RunTable({ title, runs, empty, testid, pick }: { title: string; runs: RunListItem[]; empty: string; testid: string; pick: ReturnType<typeof usePick> }) {
  return (
    <div className="card" data-testid={testid}>
      <h2>{title}</h2>
      {runs.length === 0 ? (
        <p className="muted">{empty}</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col" className="pick">
                <span className="sr-only">Compare</span>
              </th>
              <th scope="col">Run</th>
              <th scope="col">Workflow</th>
              <th scope="col">Status</th>
              <th scope="col">Updated</th>
            </tr>
          </thead>
          <tbody>
            {runs.map((r) => (
              <tr key={r.id}>
                <td className="pick">
                  <PickBox id={r.id} picked={pick.picked} onToggle={pick.toggle} />
                </td>
                <td>
                  <a href={`/runs/${r.id}`} onClick={onLink} className="mono">
                    {shortId(r.id)}
                  </a>
                </td>
                <td>{r.workflow}</td>
                <td>
                  <StatusPill status={r.status} />
                  {r.error && <span className="muted small"> {r.error}</span>}
                </td>
                <td className="muted">{ago(r.updated_at_ms)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

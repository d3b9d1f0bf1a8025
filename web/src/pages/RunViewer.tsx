// One run: its workflow graph with each node's live status, a node's details, the event log,
// and pause/resume/cancel for the roles that may. The first events are read page by page,
// then the run's SSE stream continues from the last seq; live events are applied in batches
// (lib/frameBatch.ts: at most once per animation frame, less often when an update costs more),
// however many arrive, so a busy run never floods the page with renders.
import { useCallback, useEffect, useRef, useState } from 'react';
import { ApiError } from '../api/client';
import { followRun } from '../api/sse';
import type { EventRecord, Graph, RunDetail } from '../api/types';
import { EventLog } from '../components/EventLog';
import { GraphView } from '../components/GraphView';
import { NodePanel } from '../components/NodePanel';
import { BreakpointButton } from '../components/debugger/BreakpointToggle';
import { DebuggerBar } from '../components/debugger/DebuggerBar';
import { useDebugger } from '../components/debugger/useDebugger';
import { ForkNote, TimeTravel } from '../components/timeline/TimeTravel';
import { TeamPanel } from '../components/run/TeamPanel';
import { useRunDeltas } from '../components/run/useRunDeltas';
import { stepIdOf } from '../lib/deltas';
import { ErrorBanner, StatusPill } from '../components/Status';
import { rowOf, type Row } from '../lib/events';
import { FrameBatcher } from '../lib/frameBatch';
import { duration, shortId } from '../lib/preview';
import { emptyRun, foldEvents, isFinished, statusOf, type RunView } from '../lib/runStatus';
import { onLink } from '../router';
import { useSession } from '../session';

const PAGE = 1000;
/** Kinds after which the run's figures (outputs, durations, tokens) are read again. */
const REFRESH = new Set(['step_succeeded', 'step_failed', 'human_requested', 'human_responded', 'paused', 'resumed', 'run_succeeded', 'run_failed', 'run_cancelled', 'breakpoints_set', 'state_edited']);

export default function RunViewer({ id }: { id: string }) {
  const { api, me } = useSession();
  const [graph, setGraph] = useState<Graph>();
  const [detail, setDetail] = useState<RunDetail>();
  const [view, setView] = useState<RunView>(emptyRun);
  const [rows, setRows] = useState<Row[]>([]);
  const [events, setEvents] = useState<EventRecord[]>([]);
  const [error, setError] = useState<ApiError>();
  const [streamNote, setStreamNote] = useState<string>();
  const [selected, setSelected] = useState<string>();
  const [busy, setBusy] = useState(false);
  const refreshTimer = useRef<ReturnType<typeof setTimeout>>(undefined);

  const refreshDetail = useCallback(() => {
    clearTimeout(refreshTimer.current);
    refreshTimer.current = setTimeout(() => {
      api.run(id).then(setDetail, (e: ApiError) => setError(e));
    }, 150);
  }, [api, id]);

  useEffect(() => {
    const ctrl = new AbortController();
    setEvents([]); // another run (a fork just opened): its own timeline
    const flush = (batch: EventRecord[]) => {
      setView((v) => foldEvents(v, batch));
      setRows((r) => r.concat(batch.filter((e) => e.seq > (r.at(-1)?.seq ?? 0)).map(rowOf)));
      setEvents((all) => all.concat(batch.filter((e) => e.seq > (all.at(-1)?.seq ?? 0))));
      if (batch.some((e) => REFRESH.has(e.type))) refreshDetail();
    };
    // Once per animation frame at most, and less often when the page grows slow to update.
    const batcher = new FrameBatcher(flush);
    const push = (e: EventRecord) => batcher.push(e);
    (async () => {
      try {
        const [g, d] = await Promise.all([api.graph(id), api.run(id)]);
        setGraph(g);
        setDetail(d);
        let after = 0;
        let all: EventRecord[] = [];
        for (;;) {
          const page = await api.events(id, after, PAGE);
          all = all.concat(page);
          if (page.length < PAGE) break;
          after = page[page.length - 1].seq;
        }
        const first = foldEvents(emptyRun(), all);
        setView(first);
        setRows(all.map(rowOf));
        setEvents(all);
        if (isFinished(first.status)) return;
        await followRun(api, d.run.id, first.seq, {
          onEvent: push,
          onOpen: () => setStreamNote(undefined),
          onError: (e) => setStreamNote(e.message),
        }, ctrl.signal);
      } catch (e) {
        if (!ctrl.signal.aborted) setError(e as ApiError);
      }
    })();
    return () => {
      ctrl.abort();
      batcher.stop();
      clearTimeout(refreshTimer.current);
    };
  }, [api, id, refreshDetail]);

  const nodeStatus = useCallback((n: string) => statusOf(view, n), [view]);
  const onOpen = useCallback((n: string) => setSelected((s) => (s === n ? undefined : n)), []);
  // An event, a checkpoint or a message picks its step's node (a state key picks none).
  const [reveal, setReveal] = useState(0);
  const pickStep = useCallback(
    (step: string) => {
      if (!graph?.nodes.some((n) => n.id === stepIdOf(step))) return;
      setSelected(stepIdOf(step));
      setReveal((r) => r + 1);
    },
    [graph],
  );

  // The record says `interrupted` when no process holds a running run.
  const status = detail?.run.status === 'interrupted' ? 'interrupted' : view.seq ? view.status : detail?.run.status ?? 'pending';
  const deltas = useRunDeltas(api.key, id, !detail || isFinished(status), Math.max(view.seq, detail?.run.last_seq ?? 0));
  const dbg = useDebugger(id, detail?.debug, isFinished(status), refreshDetail);
  const act = async (action: 'pause' | 'resume' | 'cancel') => {
    setBusy(true);
    setError(undefined);
    try {
      await api.operate(id, action);
      refreshDetail();
    } catch (e) {
      setError(e as ApiError);
    } finally {
      setBusy(false);
    }
  };

  if (error && !graph) {
    return (
      <section>
        <h1>Run {shortId(id)}</h1>
        <ErrorBanner error={error} />
        <a href="/" onClick={onLink}>
          Back to the dashboard
        </a>
      </section>
    );
  }
  if (!graph || !detail) return <p className="loading">Loading run {shortId(id)}…</p>;
  const node = graph.nodes.find((n) => n.id === selected);
  const finished = isFinished(status);
  return (
    <section className="run" aria-labelledby="run-title">
      <header className="run-head">
        <h1 id="run-title">
          {detail.run.workflow} <span className="mono muted small">{shortId(detail.run.id)}</span>
        </h1>
        <span data-testid="run-status">
          <StatusPill status={status} />
        </span>
        <span className="muted small">
          {detail.tokens} tokens
          {detail.usage.cost_usd != null && ` · $${detail.usage.cost_usd.toFixed(4)}`}
          {finished && ` · ${duration(detail.run.updated_at_ms - detail.run.created_at_ms)}`}
        </span>
        {me.may.operate_runs && !finished && (
          <div className="buttons">
            {(status === 'running' || status === 'waiting') && (
              <button type="button" disabled={busy} onClick={() => act('pause')}>
                Pause
              </button>
            )}
            {(status === 'paused' || status === 'interrupted') && (
              <button type="button" disabled={busy} onClick={() => act('resume')}>
                Resume
              </button>
            )}
            <button type="button" className="danger" disabled={busy} onClick={() => act('cancel')}>
              Cancel
            </button>
          </div>
        )}
      </header>
      <ErrorBanner error={error} />
      {streamNote && !finished && (
        <p className="banner" role="status">
          {streamNote}
        </p>
      )}
      <ForkNote run={detail} />
      {detail.run.error && <p className="banner error">{detail.run.error}</p>}
      <DebuggerBar runId={detail.run.id} dbg={dbg} paused={status === 'paused'} seq={view.seq} order={graph.nodes.map((n) => n.id)} onEdited={refreshDetail} />
      <div className={`run-body${node ? ' with-panel' : ''}`}>
        <GraphView graph={graph} statusOf={nodeStatus} selected={selected} onOpen={onOpen} reveal={reveal} breakpoints={dbg.active ? dbg.breakpoints : undefined} onBreakpoint={dbg.active ? dbg.toggle : undefined} />
        {node && (
          <NodePanel
            runId={detail.run.id}
            node={node}
            live={view.nodes[node.id]}
            detail={detail.steps.find((s) => s.step === node.id)}
            status={nodeStatus(node.id)}
            deltas={deltas}
            sandbox={detail.sandbox}
            onClose={() => setSelected(undefined)}
          >
            {dbg.active && <BreakpointButton step={node.id} on={dbg.breakpoints.has(node.id)} onToggle={dbg.toggle} />}
          </NodePanel>
        )}
      </div>
      <TeamPanel key={`team-${detail.run.id}`} runId={detail.run.id} team={detail.team} events={events} live={!finished} onStep={pickStep} />
      <TimeTravel key={detail.run.id} run={detail} graph={graph} events={events} onSubject={pickStep} focus={selected} />
      <EventLog rows={rows} focus={selected} onPick={pickStep} />
    </section>
  );
}

// The run viewer's time travel: the run's checkpoints on a timeline (keyboard: arrows, Home,
// End, Page Up/Down), the state as it was at the one picked (folded from the events up to its
// seq), and "Fork from here". The list draws only the rows in view, so a run with thousands of
// checkpoints scrolls like one with ten.
import { useEffect, useMemo, useRef, useState } from 'react';
import type { EventRecord, Graph, RunDetail } from '../../api/types';
import { checkpointsOf, declaredModels, stateAt, type Checkpoint } from '../../lib/timeline';
import { shortId } from '../../lib/compare';
import { onLink } from '../../router';
import { useSession } from '../../session';
import { Big } from '../NodePanel';
import { ForkDialog } from './ForkDialog';
import { stepIdOf } from '../../lib/deltas';

const ROW = 30;
const HEIGHT = 300;

export function TimeTravel({ run, graph, events, onSubject, focus }: { run: RunDetail; graph: Graph; events: EventRecord[]; onSubject?(subject: string): void; focus?: string }) {
  const { me } = useSession();
  // A live run's log only grows: only the events added since the last render are read (a run
  // of tens of thousands of events would otherwise be read whole at each update).
  const cache = useRef<{ events: EventRecord[]; checkpoints: Checkpoint[] }>({ events: [], checkpoints: [] });
  const checkpoints = useMemo(() => {
    const c = cache.current;
    const n = c.events.length;
    const grown = n > 0 && events.length >= n && events[0] === c.events[0] && events[n - 1] === c.events[n - 1];
    const next = grown ? c.checkpoints.concat(checkpointsOf(events.slice(n))) : checkpointsOf(events);
    cache.current = { events, checkpoints: next };
    return next;
  }, [events]);
  const [picked, setPicked] = useState<number>();
  const [forking, setForking] = useState(false);
  const index = picked === undefined ? -1 : checkpoints.findIndex((c) => c.seq === picked);
  const cp = index >= 0 ? checkpoints[index] : undefined;
  // The agents' models: as the workflow declares them, or as the log pinned them (registry agents).
  const state = useMemo(() => {
    if (!cp) return undefined;
    const s = stateAt(events, cp.seq);
    return { ...s, models: { ...declaredModels(graph.header), ...s.models } };
  }, [events, cp, graph]);
  return (
    <section className="card timetravel" aria-labelledby="tt-title" data-testid="timetravel">
      <header>
        <h2 id="tt-title">Timeline</h2>
        <span className="muted small">
          {checkpoints.length} checkpoints · pick one to see the run as it was then, and fork a new run from it
        </span>
      </header>
      <div className="tt-body">
        <TimelineList checkpoints={checkpoints} index={index} focus={focus} onPick={(i) => {
            setPicked(checkpoints[i]?.seq);
            if (checkpoints[i]) onSubject?.(checkpoints[i].subject);
          }} />
        <div className="tt-state" data-testid="tt-state" aria-live="polite">
          {!cp || !state ? (
            <p className="muted">No checkpoint picked.</p>
          ) : (
            <>
              <header>
                <h3>
                  At seq {cp.seq} <span className="muted small">· {new Date(cp.at).toLocaleTimeString()} · {cp.subject ? `${cp.subject} ` : ''}{cp.label}</span>
                </h3>
                {me.may.start_runs && (
                  <button type="button" className="primary" onClick={() => setForking(true)}>
                    Fork from here
                  </button>
                )}
              </header>
              <StateView state={state} />
            </>
          )}
        </div>
      </div>
      {forking && cp && state && <ForkDialog run={run} checkpoint={cp} state={state} onClose={() => setForking(false)} />}
    </section>
  );
}

function TimelineList({ checkpoints, index, onPick, focus }: { checkpoints: Checkpoint[]; index: number; onPick(i: number): void; focus?: string }) {
  const box = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  // Keep the picked row in view.
  useEffect(() => {
    const el = box.current;
    if (!el || index < 0) return;
    if (index * ROW < el.scrollTop) el.scrollTop = index * ROW;
    else if ((index + 1) * ROW > el.scrollTop + el.clientHeight) el.scrollTop = (index + 1) * ROW - el.clientHeight;
  }, [index]);
  // A step selected elsewhere (the graph, the log): show its checkpoints, unless one is in view.
  useEffect(() => {
    const el = box.current;
    if (!el || !focus) return;
    const rows = checkpoints.flatMap((c, i) => (stepIdOf(c.subject) === focus ? [i] : []));
    const seen = (i: number) => i * ROW >= el.scrollTop && (i + 1) * ROW <= el.scrollTop + el.clientHeight;
    if (rows.length && !rows.some(seen)) el.scrollTop = rows[0] * ROW;
    // Only when the selection changes, not with each new checkpoint.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [focus]);
  const onKey = (e: React.KeyboardEvent) => {
    const page = Math.floor(HEIGHT / ROW) - 1;
    const to: Record<string, number> = {
      ArrowDown: index + 1,
      ArrowUp: index < 0 ? checkpoints.length - 1 : index - 1,
      Home: 0,
      End: checkpoints.length - 1,
      PageDown: index + page,
      PageUp: index - page,
    };
    if (!(e.key in to) || !checkpoints.length) return;
    e.preventDefault();
    onPick(Math.max(0, Math.min(checkpoints.length - 1, to[e.key])));
  };
  const first = Math.max(0, Math.floor(top / ROW) - 10);
  const last = Math.min(checkpoints.length, Math.ceil((top + HEIGHT) / ROW) + 10);
  const height = Math.min(HEIGHT, Math.max(ROW * 2, checkpoints.length * ROW));
  return (
    <div
      className="tt-list"
      ref={box}
      role="listbox"
      tabIndex={0}
      aria-label="Checkpoints (arrow keys move, Home and End jump)"
      aria-activedescendant={index >= 0 ? `cp-${checkpoints[index].seq}` : undefined}
      style={{ height }}
      onKeyDown={onKey}
      onScroll={(e) => setTop(e.currentTarget.scrollTop)}
      data-testid="timeline"
    >
      {checkpoints.length === 0 && <p className="muted small">No step has started yet.</p>}
      <div style={{ height: checkpoints.length * ROW, position: 'relative' }}>
        {checkpoints.slice(first, last).map((c, i) => (
          <div
            key={c.seq}
            id={`cp-${c.seq}`}
            role="option"
            aria-selected={first + i === index}
            className={`tt-row cp-${c.kind}${focus && stepIdOf(c.subject) === focus ? ' rv-focus' : ''}`}
            style={{ top: (first + i) * ROW, height: ROW }}
            onClick={() => onPick(first + i)}
            data-seq={c.seq}
            data-testid="checkpoint"
          >
            <span className="tt-dot" aria-hidden="true" />
            <span className="seq mono">{c.seq}</span>
            <span className="time mono">{new Date(c.at).toLocaleTimeString()}</span>
            <span className="mono subject">{c.subject}</span>
            <span className="what">{c.label}</span>
          </div>
        ))}
      </div>
    </div>
  );
}

function StateView({ state }: { state: ReturnType<typeof stateAt> }) {
  const steps = Object.entries(state.steps);
  const keys = Object.entries(state.state);
  const inputs = Object.entries(state.inputs);
  return (
    <div className="tt-values">
      <h4>Steps</h4>
      {steps.length === 0 && <p className="muted small">No step reached yet.</p>}
      {steps.map(([id, s]) => (
        <details key={id} data-testid={`tt-step-${id}`} open={steps.length <= 4}>
          <summary>
            <span className="mono">{id}</span> <span className={`pill s-${s.status}`}>{s.status}</span>
          </summary>
          {s.hasOutput ? <Big value={s.output ?? null} /> : <p className="muted small">No output yet.</p>}
        </details>
      ))}
      <h4>Shared state</h4>
      {keys.length === 0 ? (
        <p className="muted small">Empty.</p>
      ) : (
        keys.map(([k, v]) => (
          <details key={k} open={keys.length <= 4}>
            <summary className="mono">{k}</summary>
            <Big value={v} />
          </details>
        ))
      )}
      <h4>Inputs</h4>
      {inputs.length === 0 ? <p className="muted small">None.</p> : <Big value={state.inputs} />}
    </div>
  );
}

/** On a fork: where it came from, and a link to compare it with its parent. */
export function ForkNote({ run }: { run: RunDetail }) {
  const from = run.forked_from;
  if (!from) return null;
  return (
    <p className="banner tt-fork-note" data-testid="fork-note">
      <span>
        Forked from run{' '}
        <a href={`/runs/${from.run}`} onClick={onLink} className="mono">
          {shortId(from.run)}
        </a>{' '}
        at seq {from.seq}.
      </span>
      <a href={`/compare/${from.run}/${run.run.id}`} onClick={onLink}>
        Compare with parent
      </a>
    </p>
  );
}

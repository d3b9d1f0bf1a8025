// The run's event log with a filter. Rows have one height and only those in view are rendered,
// so a run of hundreds of thousands of events scrolls as fast as one of ten; it follows the
// newest event while scrolled to the bottom. An event of a step picks that step (`onPick`: the
// run viewer selects its node); the events of the selected step (`focus`) are highlighted, and
// "only this step" keeps just them.
import { useEffect, useMemo, useRef, useState } from 'react';
import { stepIdOf } from '../lib/deltas';
import { filterRows, type Row } from '../lib/events';

const ROW = 26;
const HEIGHT = 280;

export function EventLog({ rows, focus, onPick }: { rows: Row[]; focus?: string; onPick?(step: string): void }) {
  const [text, setText] = useState('');
  const [kind, setKind] = useState('');
  const [only, setOnly] = useState(false);
  const [top, setTop] = useState(0);
  const box = useRef<HTMLDivElement>(null);
  const follow = useRef(true);
  const kinds = useMemo(() => [...new Set(rows.map((r) => r.kind))].sort(), [rows]);
  const onlyStep = only && focus ? focus : undefined;
  const shown = useMemo(() => {
    const f = filterRows(rows, text, kind);
    return onlyStep ? f.filter((r) => stepIdOf(r.step) === onlyStep) : f;
  }, [rows, text, kind, onlyStep]);
  useEffect(() => {
    const el = box.current;
    if (el && follow.current) el.scrollTop = el.scrollHeight;
  }, [shown.length]);
  const first = Math.max(0, Math.floor(top / ROW) - 10);
  const last = Math.min(shown.length, Math.ceil((top + HEIGHT) / ROW) + 10);
  return (
    <section className="card log" aria-labelledby="log-title">
      <header>
        <h2 id="log-title">Events</h2>
        <label className="sr-only" htmlFor="log-filter">
          Filter events
        </label>
        <input id="log-filter" type="search" placeholder="Filter: step, kind or text" value={text} onChange={(e) => setText(e.target.value)} />
        <label className="sr-only" htmlFor="log-kind">
          Event kind
        </label>
        <select id="log-kind" value={kind} onChange={(e) => setKind(e.target.value)}>
          <option value="">every kind</option>
          {kinds.map((k) => (
            <option key={k}>{k}</option>
          ))}
        </select>
        {focus && (
          <label className="small rv-only">
            <input type="checkbox" checked={only} onChange={(e) => setOnly(e.target.checked)} /> only <span className="mono">{focus}</span>
          </label>
        )}
        <span className="muted small" data-testid="log-count">
          {shown.length} of {rows.length}
        </span>
      </header>
      <div
        className="rows"
        ref={box}
        style={{ height: HEIGHT }}
        tabIndex={0}
        role="log"
        aria-label="Run events"
        onScroll={(e) => {
          const el = e.currentTarget;
          setTop(el.scrollTop);
          follow.current = el.scrollTop + el.clientHeight >= el.scrollHeight - ROW;
        }}
      >
        <div style={{ height: shown.length * ROW, position: 'relative' }}>
          {shown.slice(first, last).map((r, i) => (
            <div
              key={r.seq}
              className={`row${focus && r.step && stepIdOf(r.step) === focus ? ' rv-focus' : ''}${onPick && r.step ? ' rv-pick' : ''}`}
              style={{ top: (first + i) * ROW, height: ROW }}
              data-kind={r.kind}
              data-step={r.step || undefined}
              {...(onPick && r.step
                ? {
                    role: 'button',
                    tabIndex: 0,
                    title: `Show ${r.step} in the graph`,
                    onClick: () => onPick(r.step),
                    onKeyDown: (e: React.KeyboardEvent) => {
                      if (e.key === 'Enter' || e.key === ' ') {
                        e.preventDefault();
                        onPick(r.step);
                      }
                    },
                  }
                : {})}
            >
              <span className="seq mono">{r.seq}</span>
              <span className="time mono">{new Date(r.at).toLocaleTimeString()}</span>
              <span className={`kind k-${r.kind}`}>{r.kind}</span>
              <span className="mono">{r.step}</span>
              <span className="summary">{r.summary}</span>
            </div>
          ))}
        </div>
      </div>
    </section>
  );
}

// A running step's model output as it streams, token by token. It subscribes to its own step
// in the run's DeltaStore, so a delta re-renders this text only (not the details panel, not
// the page); a long text shows its newest part, with "show all".
import { useEffect, useLayoutEffect, useRef, useState, useSyncExternalStore } from 'react';
import { PREVIEW_CHARS } from '../../lib/preview';
import type { DeltaStore, Streamed } from '../../lib/deltas';

export function LiveOutput({ store, step }: { store: DeltaStore; step: string }) {
  const streams = useSyncExternalStore(
    (l) => store.subscribe(step, l),
    () => store.of(step),
  );
  return (
    <section className="rv-live" data-testid="live-output" aria-live="off">
      <h3>
        Streaming <span className="rv-dot" aria-hidden="true" />
      </h3>
      {streams.length === 0 ? (
        <p className="muted small">Waiting for the model's first words…</p>
      ) : (
        streams.map((s) => <StreamText key={s.step} s={s} many={streams.length > 1} />)
      )}

    </section>
  );
}

function StreamText({ s, many }: { s: Streamed; many: boolean }) {
  const [all, setAll] = useState(false);
  const pre = useRef<HTMLPreElement>(null);
  const follow = useRef(true);
  const cut = !all && s.text.length > PREVIEW_CHARS;
  const text = cut ? s.text.slice(s.text.length - PREVIEW_CHARS) : s.text;
  // Follows the newest words while scrolled to the bottom.
  useLayoutEffect(() => {
    const el = pre.current;
    if (el && follow.current) el.scrollTop = el.scrollHeight;
  }, [text]);
  useEffect(() => setAll(false), [s.turn]);
  return (
    <div data-testid="live-stream" data-step={s.step}>
      <p className="muted small">
        {many && <span className="mono">{s.step} · </span>}
        {s.agent} · turn {s.turn} · {s.text.length.toLocaleString()} characters received
      </p>
      {!s.whole && (
        <p className="muted small" data-testid="live-joined">
          This page began following the model in the middle of this answer: the words before are not shown here; the step's output will have all of them.
        </p>
      )}
      {cut && <p className="muted small">… {(s.text.length - PREVIEW_CHARS).toLocaleString()} earlier characters</p>}
      <pre
        className="output"
        ref={pre}
        data-testid="live-text"
        onScroll={(e) => {
          const el = e.currentTarget;
          follow.current = el.scrollTop + el.clientHeight >= el.scrollHeight - 8;
        }}
      >
        {!s.whole && !cut && '… '}
        {text}
      </pre>
      {cut && (
        <button type="button" onClick={() => setAll(true)}>
          Show all ({s.text.length.toLocaleString()} characters)
        </button>
      )}
    </div>
  );
}

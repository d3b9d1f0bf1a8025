// "Run with breakpoints": the steps to pause before (and whether to pause before every step)
// for a run about to start. `steps` are the workflow's step ids, or a promise of them (the
// Workflows page reads the stored document first); `onStart` starts the run and opens it, and
// its refusal is shown here.
import { useEffect, useRef, useState } from 'react';
import type { ApiError } from '../../api/client';
import { walk, parseFlow } from '../../lib/flow';
import { ErrorBanner } from '../Status';

export interface DebugStart {
  breakpoints: string[];
  stepping: boolean;
}

/** The step ids of a workflow document, in document order (nested steps included). */
export function stepIdsOf(source: string): string[] {
  return walk(parseFlow(source).flow.steps).map((p) => p.step.id);
}

export function StartRunDialog({ title, steps, onStart, onClose }: { title: string; steps: string[] | Promise<string[]>; onStart(opts: DebugStart): Promise<void>; onClose(): void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const [ids, setIds] = useState<string[] | undefined>(Array.isArray(steps) ? steps : undefined);
  const [chosen, setChosen] = useState<Set<string>>(new Set());
  const [stepping, setStepping] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | Error>();

  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
  }, []);
  useEffect(() => {
    if (Array.isArray(steps)) return setIds(steps);
    let live = true;
    steps.then(
      (s) => live && setIds(s),
      (e: Error) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [steps]);

  const flip = (id: string) =>
    setChosen((c) => {
      const next = new Set(c);
      if (!next.delete(id)) next.add(id);
      return next;
    });
  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await onStart({ breakpoints: (ids ?? []).filter((id) => chosen.has(id)), stepping });
      ref.current?.close();
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };
  return (
    <dialog ref={ref} className="fork-dialog dbg-start" aria-labelledby="dbg-start-title" onClose={onClose} data-testid="debug-start">
      <form onSubmit={submit}>
        <header>
          <h2 id="dbg-start-title">{title}</h2>
          <button type="button" className="link" aria-label="Close without starting" onClick={() => ref.current?.close()}>
            ✕
          </button>
        </header>
        <p className="muted small">The run pauses before the steps you tick; there you can read and edit its state, then Continue or Step.</p>
        <ErrorBanner error={error as ApiError} />
        {!ids && !error && <p className="loading">Reading the workflow's steps…</p>}
        {ids && (
          <fieldset>
            <legend>Pause before</legend>
            {ids.length === 0 && <p className="muted">The workflow has no steps.</p>}
            <div className="dbg-steps">
              {ids.map((id) => (
                <label key={id}>
                  <input type="checkbox" checked={chosen.has(id)} onChange={() => flip(id)} /> <span className="mono">{id}</span>
                </label>
              ))}
            </div>
          </fieldset>
        )}
        <label>
          <input type="checkbox" checked={stepping} onChange={(e) => setStepping(e.target.checked)} /> Pause before every step (step through)
        </label>
        <footer>
          <span className="muted small">{chosen.size ? `${chosen.size} breakpoint${chosen.size > 1 ? 's' : ''}` : stepping ? 'stepping' : 'no breakpoint: it runs through'}</span>
          <button type="button" onClick={() => ref.current?.close()}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={busy || !ids}>
            Start run
          </button>
        </footer>
      </form>
    </dialog>
  );
}

// A paused run's state, to read and to edit before it goes on: the shared state's keys and
// each finished step's output, as JSON (`GET /runs/{id}/state`). An edit is checked as it is
// typed (text that is not JSON is refused in place, with where and why) and sent as
// `POST /runs/{id}/edit`; the server's refusal is shown beside the value. Big values are cut
// with "show all", and a long list shows its first entries until asked for more.
import { useEffect, useId, useState } from 'react';
import type { ApiError } from '../../api/client';
import { editText, parseEdit } from '../../lib/timeline';
import { preview } from '../../lib/preview';
import { useSession } from '../../session';
import { ErrorBanner } from '../Status';
import { editRun, runState, type InspectedState } from './api';

/** Entries shown before "show more" (a run of hundreds of steps stays quick to render). */
const FIRST = 40;

/** `order`: step ids in the graph's order (outputs are listed so; others after them). */
export function StateInspector({ runId, seq, order, onEdited }: { runId: string; seq: number; order: string[]; onEdited(): void }) {
  const { api } = useSession();
  const [st, setSt] = useState<InspectedState>();
  const [error, setError] = useState<ApiError | Error>();
  const [shown, setShown] = useState(FIRST);

  useEffect(() => {
    const ctrl = new AbortController();
    runState(api, runId, ctrl.signal).then(
      (s) => {
        setSt(s);
        setError(undefined);
      },
      (e: Error) => e.name !== 'AbortError' && setError(e),
    );
    return () => ctrl.abort();
  }, [api, runId, seq]);

  if (error) return <ErrorBanner error={error as ApiError} />;
  if (!st) return <p className="loading">Reading the run's state…</p>;
  const entries = [
    ...Object.entries(st.outputs)
      .sort(([a], [b]) => rank(order, a) - rank(order, b))
      .map(([id, v]) => ({ path: `steps.${id}.output`, value: v })),
    ...Object.entries(st.state).map(([k, v]) => ({ path: `state.${k}`, value: v })),
  ];
  const save = async (path: string, value: unknown) => {
    await editRun(api, runId, { [path]: value });
    onEdited();
  };
  return (
    <section className="dbg-inspector" aria-labelledby="dbg-state-title" data-testid="state-inspector">
      <h2 id="dbg-state-title">State at this stop</h2>
      <p className="muted small">Change a value (JSON: a string needs quotes), then Continue or Step: the next steps see the change.</p>
      {entries.length === 0 && <p className="muted">No finished step and no shared state yet.</p>}
      <ul className="dbg-entries">
        {entries.slice(0, shown).map((e) => (
          <li key={e.path} data-testid={`inspect-${e.path}`}>
            <ValueEditor path={e.path} value={e.value} onSave={(v) => save(e.path, v)} />
          </li>
        ))}
      </ul>
      {entries.length > shown && (
        <button type="button" onClick={() => setShown((n) => n + FIRST * 5)}>
          Show more ({entries.length - shown} left)
        </button>
      )}
    </section>
  );
}

const rank = (order: string[], id: string) => {
  const i = order.indexOf(id.replace(/\[.*$/, ''));
  return i < 0 ? order.length : i;
};

/** One value: shown cut, edited on demand as JSON, saved with `onSave` (its refusal shown here). */
export function ValueEditor({ path, value, onSave }: { path: string; value: unknown; onSave(value: unknown): Promise<void> }) {
  const id = useId();
  const [text, setText] = useState<string>();
  const [all, setAll] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const p = preview(value);
  const parsed = text === undefined ? undefined : parseEdit(text);

  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    if (!parsed?.ok) return;
    setBusy(true);
    setError(undefined);
    try {
      await onSave(parsed.value);
      setText(undefined);
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };

  if (text === undefined) {
    return (
      <div className="dbg-value">
        <div className="dbg-value-head">
          <span className="mono">{path}</span>
          <button type="button" onClick={() => setText(editText(value))} aria-label={`Edit ${path}`}>
            Edit
          </button>
        </div>
        <pre className="output" data-testid="value">
          {all ? preview(value, Infinity).text : p.text}
        </pre>
        {p.truncated && !all && (
          <button type="button" onClick={() => setAll(true)}>
            Show all ({p.total.toLocaleString()} characters)
          </button>
        )}
      </div>
    );
  }
  return (
    <form className="dbg-value" onSubmit={submit}>
      <label htmlFor={id} className="mono">
        {path}
      </label>
      <textarea
        id={id}
        value={text}
        rows={Math.min(12, Math.max(2, text.split('\n').length))}
        spellCheck={false}
        aria-invalid={parsed && !parsed.ok}
        aria-describedby={parsed && !parsed.ok ? `${id}-error` : undefined}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={(e) => e.key === 'Escape' && setText(undefined)}
        autoFocus
      />
      {parsed && !parsed.ok && (
        <p className="field-error" id={`${id}-error`} role="alert">
          {parsed.error}
        </p>
      )}
      <ErrorBanner error={error} />
      <div className="buttons">
        <button type="submit" className="primary" disabled={busy || !parsed?.ok}>
          Save
        </button>
        <button type="button" onClick={() => setText(undefined)}>
          Cancel
        </button>
      </div>
    </form>
  );
}

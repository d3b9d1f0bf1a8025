// "Fork from here": the values a fork may change (finished steps' outputs, shared state,
// inputs), each as JSON checked as it is typed, and each agent's model (the served models of
// `GET /v1/models` and the run's own are suggested; any `provider/model` may be typed). Sends
// `POST /api/v1/runs/{id}/fork` with `at` (the checkpoint's seq), the changed values and
// models, then opens the new run. The server's refusal (a bad path, an unknown model) is shown
// in the dialog as it says it.
import { useEffect, useMemo, useRef, useState } from 'react';
import type { ApiError } from '../../api/client';
import type { RunDetail } from '../../api/types';
import { editablesOf, editText, forkModels, forkSet, parseEdit, type Checkpoint, type StateAt } from '../../lib/timeline';
import { navigate } from '../../router';
import { useSession } from '../../session';
import { ErrorBanner } from '../Status';

/** Values longer than this are edited only once asked for (a textarea of megabytes is slow). */
const EDIT_INLINE = 20_000;

export function ForkDialog({ run, checkpoint, state, onClose }: { run: RunDetail; checkpoint: Checkpoint; state: StateAt; onClose(): void }) {
  const { api } = useSession();
  const ref = useRef<HTMLDialogElement>(null);
  const editables = useMemo(() => editablesOf(state), [state]);
  const originals = useMemo(() => Object.fromEntries(editables.map((e) => [e.path, editText(e.value)])), [editables]);
  const [texts, setTexts] = useState<Record<string, string>>({});
  const [models, setModels] = useState<Record<string, string>>(() => ({ ...state.models }));
  const [served, setServed] = useState<string[]>([]);
  const [modelsError, setModelsError] = useState<string>();
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    const ctrl = new AbortController();
    api.models(ctrl.signal).then(setServed, (e: Error) => {
      if (e.name !== 'AbortError') setModelsError(`The served models could not be listed (${e.message}); type a model as provider/model.`);
    });
    return () => ctrl.abort();
  }, [api]);

  const suggestions = useMemo(() => [...new Set([...served, ...Object.values(state.models)])].sort(), [served, state.models]);
  const textOf = (path: string) => texts[path] ?? originals[path];
  const problems = editables.map((e) => [e.path, texts[e.path] === undefined ? undefined : parseEdit(texts[e.path])] as const).filter(([, p]) => p && !p.ok);
  const request = forkSet(editables, Object.fromEntries(editables.map((e) => [e.path, textOf(e.path)])));
  const changedModels = forkModels(state.models, models);
  const changes = 'set' in request ? Object.keys(request.set).length + Object.keys(changedModels).length : 0;

  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    if (!('set' in request)) return;
    setBusy(true);
    setError(undefined);
    try {
      const started = await api.fork(run.run.id, { at: checkpoint.seq, set: request.set, models: changedModels });
      ref.current?.close();
      onClose();
      navigate(`/runs/${started.id}`);
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };

  return (
    <dialog ref={ref} className="fork-dialog" aria-labelledby="fork-title" onClose={onClose} data-testid="fork-dialog">
      <form onSubmit={submit}>
        <header>
          <h2 id="fork-title">
            Fork {run.run.workflow} from seq {checkpoint.seq}
          </h2>
          <button type="button" className="link" aria-label="Close without forking" onClick={() => ref.current?.close()}>
            ✕
          </button>
        </header>
        <p className="muted small">
          The new run starts with this run's log up to seq {checkpoint.seq} ({checkpoint.subject ? `${checkpoint.subject} ` : ''}
          {checkpoint.label}) and goes on from there. Change values as JSON (a string needs quotes); what you leave as it is stays.
        </p>
        <fieldset>
          <legend>Values</legend>
          {editables.length === 0 && <p className="muted small">Nothing to edit at this point: no step had finished, and there is no state or input.</p>}
          {editables.map((e) => (
            <EditField
              key={e.path}
              path={e.path}
              text={textOf(e.path)}
              changed={texts[e.path] !== undefined && texts[e.path] !== originals[e.path]}
              error={problems.find(([p]) => p === e.path)?.[1]}
              onChange={(t) => setTexts((x) => ({ ...x, [e.path]: t }))}
            />
          ))}
        </fieldset>
        <fieldset>
          <legend>Models</legend>
          {Object.keys(state.models).length === 0 && <p className="muted small">This run has no agents.</p>}
          {modelsError && <p className="field-error">{modelsError}</p>}
          <datalist id="fork-models">
            {suggestions.map((m) => (
              <option key={m} value={m} />
            ))}
          </datalist>
          {Object.entries(state.models).map(([agent, current]) => (
            <div className="field" key={agent}>
              <label htmlFor={`fork-model-${agent}`}>Model of agent {agent}</label>
              <input
                id={`fork-model-${agent}`}
                list="fork-models"
                value={models[agent] ?? ''}
                placeholder={current}
                onChange={(ev) => setModels((m) => ({ ...m, [agent]: ev.target.value }))}
              />
              {!(models[agent] ?? '').trim() ? (
                <p className="muted small">Empty: the fork keeps {current}.</p>
              ) : (
                models[agent].trim() !== current && <p className="muted small">was {current}</p>
              )}
            </div>
          ))}
        </fieldset>
        <ErrorBanner error={error} />
        <footer>
          <span className="muted small" data-testid="fork-summary">
            {'set' in request ? `${changes} change${changes === 1 ? '' : 's'}` : `${request.path}: fix it to fork`}
          </span>
          <button type="button" onClick={() => ref.current?.close()}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={busy || !('set' in request)}>
            {busy ? 'Forking…' : 'Fork and open'}
          </button>
        </footer>
      </form>
    </dialog>
  );
}

function EditField({ path, text, changed, error, onChange }: { path: string; text: string; changed: boolean; error?: { ok: false; error: string } | { ok: true }; onChange(t: string): void }) {
  const [open, setOpen] = useState(text.length <= EDIT_INLINE);
  const id = `fork-${path}`;
  const bad = error && !error.ok ? error.error : undefined;
  return (
    <div className={`field${bad ? ' invalid' : ''}`} data-path={path}>
      <label htmlFor={id}>
        <span className="mono">{path}</span>
        {changed && <span className="pill s-running">edited</span>}
      </label>
      {open ? (
        <textarea
          id={id}
          className="mono"
          rows={Math.min(8, Math.max(1, text.split('\n').length))}
          value={text}
          spellCheck={false}
          aria-invalid={!!bad || undefined}
          aria-describedby={bad ? `${id}-error` : undefined}
          onChange={(e) => onChange(e.target.value)}
        />
      ) : (
        <button type="button" id={id} onClick={() => setOpen(true)}>
          Edit ({text.length.toLocaleString()} characters)
        </button>
      )}
      {bad && (
        <p className="field-error" id={`${id}-error`} role="alert">
          {bad}
        </p>
      )}
    </div>
  );
}

// The editor of an agent file (YAML or JSON, as `baton agents create` takes it): stores it as
// the next version of its `name` (`POST /api/v1/agents`). The server checks it; each of its
// diagnostics is shown with the field and the line it names, and selecting one puts the
// cursor on that line.
import { useRef, useState } from 'react';
import { ApiError } from '../../api/client';
import type { AgentVersion } from '../../api/adminTypes';
import type { Diagnostic } from '../../api/types';
import { useSession } from '../../session';

/** The diagnostics of a refused file (422 `details.diagnostics`), else none. */
export function diagnosticsOf(e: unknown): Diagnostic[] {
  if (!(e instanceof ApiError)) return [];
  const d = (e.details as { diagnostics?: Diagnostic[] } | undefined)?.diagnostics;
  return Array.isArray(d) ? d : [];
}

/** The character offset of a 1-based line and column in a text. */
export function offsetOf(text: string, line: number, column: number): number {
  let at = 0;
  for (let l = 1; l < line; l++) {
    const nl = text.indexOf('\n', at);
    if (nl < 0) return text.length;
    at = nl + 1;
  }
  return Math.min(text.length, at + Math.max(0, column - 1));
}

export const NEW_AGENT = `name: my-agent
model: scripted/hello
role: helpful assistant
instructions: |
  Answer in one short paragraph.
`;

export function AgentEditor({ initial, title, onSaved, onCancel }: { initial: string; title: string; onSaved(v: AgentVersion): void; onCancel(): void }) {
  const { api } = useSession();
  const [text, setText] = useState(initial);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const [diags, setDiags] = useState<Diagnostic[]>([]);
  const area = useRef<HTMLTextAreaElement>(null);
  const save = async () => {
    setBusy(true);
    try {
      const v = await api.requestText<AgentVersion>('POST', '/agents', text);
      setError(undefined);
      setDiags([]);
      onSaved(v);
    } catch (e) {
      setError(e instanceof ApiError ? e : new ApiError(0, 'client', String(e)));
      setDiags(diagnosticsOf(e));
    } finally {
      setBusy(false);
    }
  };
  const goTo = (d: Diagnostic) => {
    const el = area.current;
    if (!el) return;
    const at = offsetOf(text, d.line, d.column);
    el.focus();
    const end = text.indexOf('\n', at);
    el.setSelectionRange(at, end < 0 ? text.length : end);
  };
  const errs = diags.filter((d) => d.level === 'error');
  return (
    <form
      className="card agent-editor"
      aria-label={title}
      data-testid="agent-editor"
      onSubmit={(e) => {
        e.preventDefault();
        void save();
      }}
    >
      <h2>{title}</h2>
      <p className="muted small">
        The agent file as YAML (or JSON): <code>name</code>, <code>model</code> (<code>provider/model</code>), <code>role</code>, <code>instructions</code>, <code>tools</code>,{' '}
        <code>output</code>, <code>budget</code>… Saving stores it as the next version of its <code>name</code>, which becomes the default.
      </p>
      <div className="field">
        <label htmlFor="agent-source">Agent file</label>
        <textarea
          id="agent-source"
          ref={area}
          className="yaml"
          rows={Math.min(24, Math.max(8, text.split('\n').length + 1))}
          spellCheck={false}
          value={text}
          aria-invalid={errs.length > 0}
          aria-describedby={diags.length ? 'agent-problems' : undefined}
          onChange={(e) => setText(e.target.value)}
          onKeyDown={(e) => {
            if ((e.ctrlKey || e.metaKey) && e.key === 's') {
              e.preventDefault();
              void save();
            }
          }}
        />
      </div>
      {error && diags.length === 0 && (
        <div className="banner error" role="alert">
          {error.message}
        </div>
      )}
      {diags.length > 0 && (
        <ul className="problems-list" id="agent-problems" data-testid="agent-problems" aria-label="Problems" role="alert">
          {diags.map((d, i) => (
            <li key={i} className={d.level === 'error' ? 'field-error' : 'muted'}>
              <button type="button" className="link" onClick={() => goTo(d)} aria-label={`Go to line ${d.line}`}>
                line {d.line}, column {d.column}
              </button>
              {d.path && <code className="field-name">{d.path}</code>}
              <span>{d.message}</span>
            </li>
          ))}
        </ul>
      )}
      <div className="buttons">
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Saving…' : 'Save version'}
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}

// The YAML tab (the document as text: an edit that parses replaces the canvas, one that does
// not is shown with its error and changes nothing) and the validator's problems list.
import { useEffect, useRef, useState } from 'react';
import type { Diagnostic } from '../../api/types';

export function YamlTab({ text, readOnly, onText }: { text: string; readOnly: boolean; onText(text: string): string | undefined }) {
  const [draft, setDraft] = useState(text);
  const [error, setError] = useState<string>();
  const timer = useRef<ReturnType<typeof setTimeout>>(undefined);
  const mine = useRef(text);
  useEffect(() => {
    if (text !== mine.current) {
      mine.current = text;
      setDraft(text);
      setError(undefined);
    }
  }, [text]);
  useEffect(() => () => clearTimeout(timer.current), []);
  const change = (s: string) => {
    setDraft(s);
    clearTimeout(timer.current);
    timer.current = setTimeout(() => {
      const why = onText(s);
      setError(why);
      if (!why) mine.current = s;
    }, 300);
  };
  return (
    <div className="yaml-tab">
      {error && (
        <p className="banner error" role="alert" data-testid="yaml-error">
          Not applied (the canvas is unchanged): {error}
        </p>
      )}
      <textarea
        className="mono yaml"
        aria-label="The workflow as YAML"
        data-testid="yaml"
        spellCheck={false}
        readOnly={readOnly}
        value={draft}
        onChange={(e) => change(e.target.value)}
      />
    </div>
  );
}

export interface Problem {
  d: Diagnostic;
  step?: string;
}

export function Problems({ problems, checking, onOpen }: { problems: Problem[]; checking: boolean; onOpen(p: Problem): void }) {
  return (
    <section className="problems" aria-labelledby="problems-title" data-testid="problems">
      <h2 id="problems-title" className="small">
        {problems.length ? `${problems.length} problem${problems.length > 1 ? 's' : ''}${checking ? ' (checking again…)' : ''}` : checking ? 'Checking…' : 'No problems'}
      </h2>
      {problems.length > 0 && (
        <ul>
          {problems.map((p, i) => (
            <li key={i} className={p.d.level === 'warning' ? 'warn' : 'err'}>
              <button type="button" className="link" onClick={() => onOpen(p)}>
                <span className="mono small">
                  {p.d.line}:{p.d.column}
                </span>{' '}
                {p.step && <span className="mono">{p.step}</span>} {p.d.message}
              </button>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

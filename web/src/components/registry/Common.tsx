// Small pieces the registry and admin pages share: a long text cut to its first lines with
// "show all", a one-time secret with a copy button, an inline "are you sure?", a time.
import { useState } from 'react';

/** The first `max` lines of a text, and all of it on request (big definitions stay fast). */
export function CutText({ text, max = 40, testId }: { text: string; max?: number; testId?: string }) {
  const [all, setAll] = useState(false);
  const lines = text.split('\n');
  const cut = !all && lines.length > max;
  return (
    <>
      <pre className="output source" data-testid={testId}>
        {cut ? lines.slice(0, max).join('\n') : text}
      </pre>
      {cut && (
        <button type="button" onClick={() => setAll(true)}>
          Show all ({lines.length.toLocaleString()} lines)
        </button>
      )}
    </>
  );
}

/** A secret shown once: a warning, the value, and a button that copies it. */
export function SecretOnce({ label, secret, onDone }: { label: string; secret: string; onDone(): void }) {
  const [copied, setCopied] = useState<'yes' | 'failed' | undefined>();
  const copy = () =>
    navigator.clipboard.writeText(secret).then(
      () => setCopied('yes'),
      () => setCopied('failed'),
    );
  return (
    <div className="banner secret" role="region" aria-label={label} data-testid="secret">
      <div className="secret-body">
        <strong>{label}</strong>
        <p>This is the only time it is shown: copy it now and keep it safe. The server stores only a hash of it.</p>
        <div className="secret-row">
          <code data-testid="secret-value">{secret}</code>
          <button type="button" onClick={copy}>
            Copy
          </button>
          <span role="status" className="small">
            {copied === 'yes' ? 'Copied' : copied === 'failed' ? 'Could not copy: select it and copy by hand' : ''}
          </span>
        </div>
      </div>
      <button type="button" onClick={onDone}>
        I have copied it
      </button>
    </div>
  );
}

/** A button that asks once more, in place, before doing something that cannot be undone. */
export function ConfirmButton({ label, question, onConfirm, busy }: { label: string; question: string; onConfirm(): void; busy?: boolean }) {
  const [asking, setAsking] = useState(false);
  if (!asking)
    return (
      <button type="button" className="danger" onClick={() => setAsking(true)} disabled={busy}>
        {label}
      </button>
    );
  return (
    <span className="confirm" role="group" aria-label={question}>
      <span>{question}</span>
      <button
        type="button"
        className="danger"
        autoFocus
        onClick={() => {
          setAsking(false);
          onConfirm();
        }}
      >
        Yes, {label.toLowerCase()}
      </button>
      <button type="button" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}

/** A time as the user's locale writes it, with the exact ISO time on hover. */
export function When({ ms }: { ms?: number | null }) {
  if (ms == null) return <span className="muted">—</span>;
  const d = new Date(ms);
  return <time dateTime={d.toISOString()} title={d.toISOString()}>{d.toLocaleString()}</time>;
}

// Every human step waiting in the tenant's runs, answered with a click or with a comment.
// Live: reloaded when a run asks for or gets an answer, or ends (the tab's tenant socket, as the
// header's badge); polled every 10 s only while the socket is down.
import { useState } from 'react';
import { ApiError, parseValue } from '../api/client';
import type { Approval } from '../api/types';
import { ErrorBanner } from '../components/Status';
import { useLiveResource } from '../components/dashboard/Live';
import { changesApprovals } from '../lib/dashboard';
import { ago, preview } from '../lib/preview';
import { onLink } from '../router';
import { useSession } from '../session';
import { shortId } from '../lib/preview';

export function Approvals({ onAnswered }: { onAnswered(): void }) {
  const { api } = useSession();
  const list = useLiveResource((s) => api.request<{ approvals: Approval[] }>('GET', '/approvals', undefined, s), {
    key: 'inbox',
    pollMs: 10_000,
    relevant: changesApprovals,
  });
  const [done, setDone] = useState<string>();
  const answered = (msg: string) => {
    setDone(msg);
    list.reload();
    onAnswered();
  };
  const items = list.data?.approvals ?? [];
  return (
    <section aria-labelledby="inbox-title">
      <h1 id="inbox-title">Approvals</h1>
      <ErrorBanner error={list.error} onRetry={list.reload} />
      {done && (
        <p className="banner ok" role="status">
          {done}
        </p>
      )}
      {list.data && items.length === 0 && (
        <div className="empty">
          <h2>Nothing waits for you</h2>
          <p className="muted">
            A workflow's <code>human</code> step (see <code>examples/human-approval.yaml</code>) shows up here while it
            waits for an answer.
          </p>
        </div>
      )}
      <ul className="inbox">
        {items.map((a) => (
          <ApprovalCard key={`${a.run}/${a.step}`} a={a} onAnswered={answered} />
        ))}
      </ul>
    </section>
  );
}

function ApprovalCard({ a, onAnswered }: { a: Approval; onAnswered(msg: string): void }) {
  const { api, me } = useSession();
  const [comment, setComment] = useState('');
  const [value, setValue] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const p = preview(a.prompt, 2000);
  const input = a.kind === 'input';
  const send = async (call: () => Promise<unknown>, done: string) => {
    setBusy(true);
    setError(undefined);
    try {
      await call();
      onAnswered(`${done} ${a.workflow} › ${a.step}.`);
    } catch (e) {
      setError(e as ApiError);
      setBusy(false);
    }
  };
  const note = comment.trim() || undefined;
  const id = `${a.run}-${a.step}`;
  return (
    <li className="card approval" data-testid="approval">
      <header>
        <strong>{a.workflow}</strong> › <span className="mono">{a.step}</span>{' '}
        <a href={`/runs/${a.run}`} onClick={onLink} className="mono small">
          run {shortId(a.run)}
        </a>
        <span className="muted small"> · asked {ago(a.requested_at_ms)}</span>
        {input && <span className="pill">input</span>}
      </header>
      <pre className="prompt">
        {p.text}
        {p.truncated && '…'}
      </pre>
      <ErrorBanner error={error} />
      {!me.may.answer_approvals ? (
        <p className="muted small">Your key may not answer approvals.</p>
      ) : (
        <div className="answer">
          {input && (
            <>
              <label htmlFor={`v-${id}`}>Value (JSON, or plain text)</label>
              <textarea id={`v-${id}`} rows={2} value={value} onChange={(e) => setValue(e.target.value)} />
              {a.schema != null && (
                <details>
                  <summary className="muted small">Expected shape</summary>
                  <pre className="prompt">{JSON.stringify(a.schema, null, 2)}</pre>
                </details>
              )}
            </>
          )}
          <label htmlFor={`c-${id}`}>Comment (optional)</label>
          <textarea id={`c-${id}`} rows={2} value={comment} onChange={(e) => setComment(e.target.value)} />
          <div className="buttons">
            {input ? (
              <button type="button" className="primary" disabled={busy || !value.trim()} onClick={() => send(() => api.input(a.run, a.step, parseValue(value), note), 'Answered')}>
                Send
              </button>
            ) : (
              <>
                <button type="button" className="primary" disabled={busy} onClick={() => send(() => api.answer(a.run, a.step, true, note), 'Approved')}>
                  Approve
                </button>
                <button type="button" className="danger" disabled={busy} onClick={() => send(() => api.answer(a.run, a.step, false, note), 'Rejected')}>
                  Reject
                </button>
              </>
            )}
          </div>
        </div>
      )}
    </li>
  );
}

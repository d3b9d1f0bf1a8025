// Every human step waiting in the tenant's runs, answered with a click or with a comment.
import { useState } from 'react';
import { ApiError } from '../api/client';
import type { Approval } from '../api/types';
import { ErrorBanner } from '../components/Status';
import { usePoll } from '../hooks';
import { ago, preview } from '../lib/preview';
import { onLink } from '../router';
import { useSession } from '../session';

export function Approvals({ onAnswered }: { onAnswered(): void }) {
  const { api } = useSession();
  const list = usePoll((s) => api.request<{ approvals: Approval[] }>('GET', '/approvals', undefined, s), 3000, 'inbox');
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
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const p = preview(a.prompt, 2000);
  const answer = async (approve: boolean) => {
    setBusy(true);
    setError(undefined);
    try {
      await api.answer(a.run, a.step, approve, comment.trim() || undefined);
      onAnswered(`${approve ? 'Approved' : 'Rejected'} ${a.workflow} › ${a.step}.`);
    } catch (e) {
      setError(e as ApiError);
      setBusy(false);
    }
  };
  const id = `c-${a.run}-${a.step}`;
  return (
    <li className="card approval" data-testid="approval">
      <header>
        <strong>{a.workflow}</strong> › <span className="mono">{a.step}</span>{' '}
        <a href={`/runs/${a.run}`} onClick={onLink} className="mono small">
          run {a.run.slice(0, 8)}
        </a>
        <span className="muted small"> · asked {ago(a.requested_at_ms)}</span>
        {a.kind !== 'approval' && <span className="pill">{a.kind}</span>}
      </header>
      <pre className="prompt">
        {p.text}
        {p.truncated && '…'}
      </pre>
      <ErrorBanner error={error} />
      {a.kind === 'approval' && me.may.answer_approvals ? (
        <div className="answer">
          <label htmlFor={id}>Comment (optional)</label>
          <textarea id={id} rows={2} value={comment} onChange={(e) => setComment(e.target.value)} />
          <div className="buttons">
            <button type="button" className="primary" disabled={busy} onClick={() => answer(true)}>
              Approve
            </button>
            <button type="button" className="danger" disabled={busy} onClick={() => answer(false)}>
              Reject
            </button>
          </div>
        </div>
      ) : (
        <p className="muted small">
          {me.may.answer_approvals
            ? 'This step asks for a value: answer it with `baton runs input` or POST /api/v1/runs/{id}/input.'
            : 'Your key may not answer approvals.'}
        </p>
      )}
    </li>
  );
}

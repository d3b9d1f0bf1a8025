// Outbound webhooks (editors and admins): the tenant's subscriptions, a new one (its signing
// secret shown once), deleting one, and each one's delivery history (status, attempts, the
// receiver's answers), newest first, page by page.
import { useState } from 'react';
import { ApiError } from '../api/client';
import type { Delivery, DeliveryPage, Subscription, Subscriptions, SubscriptionWithSecret } from '../api/adminTypes';
import { ConfirmButton, SecretOnce, When } from '../components/registry/Common';
import { ErrorBanner } from '../components/Status';
import { usePoll } from '../hooks';
import { onLink } from '../router';
import { useSession } from '../session';
import { NotAllowed } from './AdminKeys';

/** The event types a subscription may name (docs/api.md, "Outbound: run events to a URL"). */
export const EVENT_TYPES = [
  'run.created',
  'run.succeeded',
  'run.failed',
  'run.cancelled',
  'run.paused',
  'run.budget_exceeded',
  'step.succeeded',
  'step.failed',
  'approval.requested',
  'approval.answered',
  'approval.escalated',
];

/** The last attempt's outcome in a few words: its status code, or its error. */
export function lastAnswer(d: Delivery): string {
  const a = d.attempts[d.attempts.length - 1];
  if (!a) return d.status === 'pending' ? 'not tried yet' : '—';
  if (a.status_code != null) return `HTTP ${a.status_code}`;
  return a.error ?? '—';
}

export function AdminWebhooks() {
  const { me } = useSession();
  return me.may.edit_workflows ? <WebhooksPage /> : <NotAllowed what="manage webhooks" />;
}

function WebhooksPage() {
  const { api } = useSession();
  const list = usePoll((s) => api.request<Subscriptions>('GET', '/webhooks/subscriptions', undefined, s), 15_000, 'subscriptions');
  const [url, setUrl] = useState('');
  const [description, setDescription] = useState('');
  const [events, setEvents] = useState<string[]>(['run.succeeded', 'run.failed']);
  const [made, setMade] = useState<SubscriptionWithSecret>();
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  const [open, setOpen] = useState<string>();

  const create = async () => {
    setBusy(true);
    try {
      const body: Record<string, unknown> = { url: url.trim(), events };
      if (description.trim()) body.description = description.trim();
      const s = await api.request<SubscriptionWithSecret>('POST', '/webhooks/subscriptions', body);
      setMade(s);
      setError(undefined);
      setUrl('');
      setDescription('');
      setOpen(s.id);
      list.reload();
    } catch (e) {
      setError(e as ApiError);
    } finally {
      setBusy(false);
    }
  };
  const remove = async (s: Subscription) => {
    try {
      await api.request<void>('DELETE', `/webhooks/subscriptions/${encodeURIComponent(s.id)}`);
      setError(undefined);
      if (open === s.id) setOpen(undefined);
      list.reload();
    } catch (e) {
      setError(e as ApiError);
    }
  };
  const subs = list.data?.subscriptions ?? [];
  const toggle = (t: string) => setEvents((es) => (es.includes(t) ? es.filter((e) => e !== t) : [...es, t]));
  return (
    <section aria-labelledby="hooks-title">
      <h1 id="hooks-title">Webhooks</h1>
      <form
        className="card"
        aria-label="New subscription"
        onSubmit={(e) => {
          e.preventDefault();
          void create();
        }}
      >
        <h2>New subscription</h2>
        <p className="muted small">
          Run events of these types are sent to the URL as signed <code>POST</code>s (Standard Webhooks), retried until it answers 2xx. The server must allow private addresses
          (<code>baton serve --webhook-allow</code>) for a URL on your network.
        </p>
        <div className="row-fields">
          <label className="field grow">
            <span>URL</span>
            <input value={url} onChange={(e) => setUrl(e.target.value)} placeholder="https://example.com/baton" required />
          </label>
          <label className="field grow">
            <span>Description (optional)</span>
            <input value={description} onChange={(e) => setDescription(e.target.value)} />
          </label>
        </div>
        <fieldset className="events">
          <legend>Events</legend>
          {EVENT_TYPES.map((t) => (
            <label key={t}>
              <input type="checkbox" checked={events.includes(t)} onChange={() => toggle(t)} /> <code>{t}</code>
            </label>
          ))}
        </fieldset>
        <button type="submit" className="primary" disabled={busy}>
          Subscribe
        </button>
      </form>
      {made && <SecretOnce label={`The signing secret of ${made.url}`} secret={made.secret} onDone={() => setMade(undefined)} />}
      <ErrorBanner error={error} />
      <ErrorBanner error={list.error} onRetry={list.reload} />
      {!list.data && !list.error && <p className="loading">Loading subscriptions…</p>}
      {list.data && subs.length === 0 && (
        <div className="empty" data-testid="no-subscriptions">
          <h2>No subscription yet</h2>
          <p>Subscribe a URL above to have run events (a run that ends, a step that fails, an approval asked for…) sent to it as they happen.</p>
        </div>
      )}
      {subs.map((s) => (
        <article key={s.id} className="card" data-testid="subscription">
          <header className="run-head">
            <h2 className="mono cut">{s.url}</h2>
            <span className="muted small">
              {s.id} · created <When ms={s.created_at_ms} />
            </span>
            <div className="buttons">
              <button type="button" aria-expanded={open === s.id} onClick={() => setOpen(open === s.id ? undefined : s.id)}>
                {open === s.id ? 'Hide deliveries' : 'Deliveries'}
              </button>
              <ConfirmButton label="Delete" question={`Delete the subscription to ${s.url}? Deliveries not yet made are cancelled.`} onConfirm={() => void remove(s)} />
            </div>
          </header>
          {s.description && <p>{s.description}</p>}
          <p className="small">
            {s.events.map((e) => (
              <code key={e} className="tag">
                {e}
              </code>
            ))}
          </p>
          {open === s.id && <Deliveries id={s.id} />}
        </article>
      ))}
    </section>
  );
}

function Deliveries({ id }: { id: string }) {
  const { api } = useSession();
  // The cursors of the pages before this one (to go back), and this page's.
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const cursor = cursors[cursors.length - 1];
  const q = `/webhooks/subscriptions/${encodeURIComponent(id)}/deliveries?limit=20${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
  const page = usePoll((s) => api.request<DeliveryPage>('GET', q, undefined, s), 3000, q);
  const ds = page.data?.deliveries ?? [];
  return (
    <div data-testid="deliveries">
      <h3>Deliveries</h3>
      <ErrorBanner error={page.error} onRetry={page.reload} />
      {!page.data && !page.error && <p className="loading">Loading deliveries…</p>}
      {page.data && ds.length === 0 && (
        <p className="muted" data-testid="no-deliveries">
          Nothing delivered yet: a delivery appears here when a run logs an event of the types above (start a run to see one).
        </p>
      )}
      {ds.length > 0 && (
        <table className="deliveries">
          <thead>
            <tr>
              <th scope="col">Status</th>
              <th scope="col">Event</th>
              <th scope="col">Run</th>
              <th scope="col">Attempts</th>
              <th scope="col">Last answer</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {ds.map((d) => (
              <tr key={d.id} data-testid="delivery">
                <td>
                  <span className={`pill s-${d.status}`}>{d.status}</span>
                </td>
                <td className="mono">{d.event_type}</td>
                <td className="mono cut">
                  {d.run_id ? (
                    <a href={`/runs/${d.run_id}`} onClick={onLink}>
                      {d.run_id.slice(0, 12)}
                    </a>
                  ) : (
                    '—'
                  )}
                </td>
                <td>
                  {d.attempts.length === 0 ? (
                    <span className="muted">0</span>
                  ) : (
                    <details>
                      <summary>{d.attempts.length}</summary>
                      <ol className="attempts">
                        {d.attempts.map((a) => (
                          <li key={a.n}>
                            <When ms={a.at_ms} /> · {a.duration_ms} ms · {a.status_code != null ? `HTTP ${a.status_code}` : 'no answer'}
                            {a.error && <span className="field-error"> · {a.error}</span>}
                          </li>
                        ))}
                      </ol>
                    </details>
                  )}
                  {d.status === 'pending' && d.next_attempt_at_ms != null && (
                    <div className="small muted">
                      next: <When ms={d.next_attempt_at_ms} />
                    </div>
                  )}
                </td>
                <td className="cut" data-testid="last-answer">
                  {lastAnswer(d)}
                </td>
                <td className="small">
                  <When ms={d.created_at_ms} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div className="buttons pager">
        {cursors.length > 1 && (
          <button type="button" onClick={() => setCursors(cursors.slice(0, -1))}>
            Newer
          </button>
        )}
        {page.data?.next && (
          <button type="button" onClick={() => setCursors([...cursors, page.data!.next!])}>
            Older
          </button>
        )}
      </div>
    </div>
  );
}

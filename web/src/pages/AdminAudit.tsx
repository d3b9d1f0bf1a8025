// The tenant's audit log (admins): writes, denials and failed authentications, oldest first,
// filtered by action, key and time, page by page; and a check of its hash chain.
import { useState } from 'react';
import { ApiError } from '../api/client';
import type { AuditEntry, AuditPage, Verified } from '../api/adminTypes';
import { When } from '../components/registry/Common';
import { ErrorBanner } from '../components/Status';
import { usePoll } from '../hooks';
import { useSession } from '../session';
import { NotAllowed } from './AdminKeys';

export const AUDIT_PAGE = 50;

export interface AuditFilter {
  action: string;
  keyId: string;
  /** A `datetime-local` value (the user's time zone), or empty. */
  since: string;
}

/** The query string of a page of the log: the filter, and the seq the page starts after. */
export function auditQuery(f: AuditFilter, after: number, limit = AUDIT_PAGE): string {
  const q = new URLSearchParams();
  q.set('limit', String(limit));
  if (after > 0) q.set('after', String(after));
  if (f.action.trim()) q.set('action', f.action.trim());
  if (f.keyId.trim()) q.set('key_id', f.keyId.trim());
  if (f.since) {
    const d = new Date(f.since);
    if (!Number.isNaN(d.getTime())) q.set('since', d.toISOString());
  }
  return q.toString();
}

export function AdminAudit() {
  const { me } = useSession();
  return me.may.admin ? <AuditLog /> : <NotAllowed what="read the audit log" />;
}

const EMPTY: AuditFilter = { action: '', keyId: '', since: '' };

function AuditLog() {
  const { api } = useSession();
  const [draft, setDraft] = useState<AuditFilter>(EMPTY);
  const [filter, setFilter] = useState<AuditFilter>(EMPTY);
  // The `after` of every page up to this one (to go back).
  const [afters, setAfters] = useState<number[]>([0]);
  const after = afters[afters.length - 1];
  const q = auditQuery(filter, after);
  const page = usePoll((s) => api.request<AuditPage>('GET', `/audit?${q}`, undefined, s), 10_000, q);
  const [verified, setVerified] = useState<Verified>();
  const [verifyError, setVerifyError] = useState<ApiError>();
  const [verifying, setVerifying] = useState(false);
  const entries = page.data?.entries ?? [];
  const filtered = filter.action || filter.keyId || filter.since;

  const verify = async () => {
    setVerifying(true);
    try {
      setVerified(await api.request<Verified>('GET', '/audit/verify'));
      setVerifyError(undefined);
    } catch (e) {
      setVerified(undefined);
      setVerifyError(e as ApiError);
    } finally {
      setVerifying(false);
    }
  };
  const since = draft.since && Number.isNaN(new Date(draft.since).getTime());
  return (
    <section aria-labelledby="audit-title">
      <header className="run-head">
        <h1 id="audit-title">Audit log</h1>
        <div className="buttons">
          <button type="button" onClick={() => void verify()} disabled={verifying}>
            {verifying ? 'Verifying…' : 'Verify chain'}
          </button>
        </div>
      </header>
      {verified && (
        <div className={`banner ${verified.broken ? 'error' : 'ok'}`} role="status" data-testid="verified">
          {verified.broken
            ? `The chain is broken at entry ${verified.broken.seq}: ${verified.broken.reason}. Entries from there on may have been changed or removed.`
            : `The chain is whole: ${verified.entries.toLocaleString()} entries checked, each hash matches its entry and the one before.`}
        </div>
      )}
      <ErrorBanner error={verifyError} />
      <form
        className="card row-fields"
        aria-label="Filter the log"
        onSubmit={(e) => {
          e.preventDefault();
          if (since) return;
          setFilter(draft);
          setAfters([0]);
        }}
      >
        <label className="field">
          <span>Action</span>
          <input value={draft.action} onChange={(e) => setDraft({ ...draft, action: e.target.value })} placeholder="key.create" />
        </label>
        <label className="field">
          <span>Key id</span>
          <input value={draft.keyId} onChange={(e) => setDraft({ ...draft, keyId: e.target.value })} />
        </label>
        <label className="field">
          <span>Since</span>
          <input type="datetime-local" value={draft.since} onChange={(e) => setDraft({ ...draft, since: e.target.value })} aria-invalid={!!since} />
        </label>
        <button type="submit" className="primary">
          Filter
        </button>
        {filtered && (
          <button
            type="button"
            onClick={() => {
              setDraft(EMPTY);
              setFilter(EMPTY);
              setAfters([0]);
            }}
          >
            Clear
          </button>
        )}
      </form>
      <ErrorBanner error={page.error} onRetry={page.reload} />
      {!page.data && !page.error && <p className="loading">Loading the audit log…</p>}
      {page.data && entries.length === 0 && (
        <div className="empty" data-testid="no-entries">
          {filtered ? 'No entry matches this filter (the action is matched exactly, e.g. key.create, agent.create, run.start).' : afters.length > 1 ? 'No more entries.' : 'Nothing audited yet: writes, denials and failed sign-ins are recorded here.'}
        </div>
      )}
      {entries.length > 0 && (
        <div className="card">
          <table data-testid="audit" className="audit">
            <thead>
              <tr>
                <th scope="col" className="num">
                  #
                </th>
                <th scope="col">Time</th>
                <th scope="col">Action</th>
                <th scope="col">Object</th>
                <th scope="col">Key</th>
                <th scope="col">Outcome</th>
                <th scope="col">Source</th>
              </tr>
            </thead>
            <tbody>
              {entries.map((e) => (
                <Entry key={e.seq} e={e} />
              ))}
            </tbody>
          </table>
        </div>
      )}
      <div className="buttons pager">
        {afters.length > 1 && (
          <button type="button" onClick={() => setAfters(afters.slice(0, -1))}>
            Previous page
          </button>
        )}
        {entries.length === AUDIT_PAGE && (
          <button type="button" onClick={() => setAfters([...afters, entries[entries.length - 1].seq])}>
            Next page
          </button>
        )}
      </div>
    </section>
  );
}

function Entry({ e }: { e: AuditEntry }) {
  const details = e.details == null ? '' : JSON.stringify(e.details);
  return (
    <tr data-testid="audit-entry" data-action={e.action}>
      <td className="num muted">{e.seq}</td>
      <td className="small">
        <When ms={e.at_ms} />
      </td>
      <td className="mono" title={e.action}>
        {e.action}
      </td>
      <td className="mono cut" title={details || undefined}>
        {e.object ?? <span className="muted">—</span>}
      </td>
      <td className="mono cut">{e.key_id ?? <span className="muted">none</span>}</td>
      <td>
        <span className={`pill ${e.outcome === 'ok' ? 's-succeeded' : 's-failed'}`}>{e.outcome}</span>
      </td>
      <td className="small cut">{e.source ?? ''}</td>
    </tr>
  );
}

// API keys of the tenant (admins): the list (never a secret), a new key (its secret shown
// once, with a copy button), revoking one (after a confirmation).
import { useState } from 'react';
import { ApiError } from '../api/client';
import type { CreatedKey, KeyInfo, Keys, Role } from '../api/adminTypes';
import { ConfirmButton, SecretOnce, When } from '../components/registry/Common';
import { ErrorBanner } from '../components/Status';
import { usePoll } from '../hooks';
import { useSession } from '../session';

const ROLES: Role[] = ['viewer', 'runner', 'editor', 'admin'];

export function keyState(k: KeyInfo, now = Date.now()): 'revoked' | 'expired' | 'active' {
  if (k.revoked_at_ms != null) return 'revoked';
  if (k.expires_at_ms != null && k.expires_at_ms <= now) return 'expired';
  return 'active';
}

export function NotAllowed({ what }: { what: string }) {
  const { me } = useSession();
  return (
    <div className="empty" data-testid="not-allowed">
      <h1>Not for this key</h1>
      <p>
        A <strong>{me.role}</strong> key may not {what}. Sign in with an admin key (<code>baton keys create --role admin</code>).
      </p>
    </div>
  );
}

export function AdminKeys() {
  const { me } = useSession();
  return me.may.admin ? <KeysPage /> : <NotAllowed what="manage keys" />;
}

function KeysPage() {
  const { api, me } = useSession();
  const list = usePoll((s) => api.request<Keys>('GET', '/keys', undefined, s), 15_000, 'keys');
  const [role, setRole] = useState<Role>('viewer');
  const [name, setName] = useState('');
  const [expires, setExpires] = useState('');
  const [made, setMade] = useState<CreatedKey>();
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  const [note, setNote] = useState<string>();

  const create = async () => {
    setBusy(true);
    try {
      const body: Record<string, string> = { role };
      if (name.trim()) body.name = name.trim();
      if (expires.trim()) body.expires_in = expires.trim();
      const k = await api.request<CreatedKey>('POST', '/keys', body);
      setMade(k);
      setError(undefined);
      setNote(undefined);
      setName('');
      setExpires('');
      list.reload();
    } catch (e) {
      setError(e as ApiError);
    } finally {
      setBusy(false);
    }
  };
  const revoke = async (k: KeyInfo) => {
    try {
      await api.request('DELETE', `/keys/${encodeURIComponent(k.id)}`);
      setError(undefined);
      setNote(`Key ${k.name ?? k.id} is revoked: requests with it are refused from now on.`);
      list.reload();
    } catch (e) {
      setError(e as ApiError);
    }
  };
  const keys = list.data?.keys ?? [];
  return (
    <section aria-labelledby="keys-title">
      <h1 id="keys-title">API keys</h1>
      <form
        className="card inline-form"
        aria-label="New key"
        onSubmit={(e) => {
          e.preventDefault();
          void create();
        }}
      >
        <h2>New key</h2>
        <div className="row-fields">
          <label className="field">
            <span>Role</span>
            <select value={role} onChange={(e) => setRole(e.target.value as Role)}>
              {ROLES.map((r) => (
                <option key={r}>{r}</option>
              ))}
            </select>
          </label>
          <label className="field">
            <span>Name (optional)</span>
            <input value={name} onChange={(e) => setName(e.target.value)} placeholder="dashboard" />
          </label>
          <label className="field">
            <span>Expires in (optional)</span>
            <input value={expires} onChange={(e) => setExpires(e.target.value)} placeholder="30d, 12h" />
          </label>
          <button type="submit" className="primary" disabled={busy}>
            Create key
          </button>
        </div>
      </form>
      {made && <SecretOnce label={`The new ${made.role} key${made.name ? ` “${made.name}”` : ''}`} secret={made.key} onDone={() => setMade(undefined)} />}
      {note && (
        <div className="banner ok" role="status">
          {note}
        </div>
      )}
      <ErrorBanner error={error} />
      <ErrorBanner error={list.error} onRetry={list.reload} />
      {!list.data && !list.error && <p className="loading">Loading keys…</p>}
      {keys.length > 0 && (
        <div className="card">
          <table data-testid="keys">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Id</th>
                <th scope="col">Role</th>
                <th scope="col">Created</th>
                <th scope="col">Expires</th>
                <th scope="col">State</th>
                <th scope="col">
                  <span className="sr-only">Revoke</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {keys.map((k) => {
                const state = keyState(k);
                return (
                  <tr key={k.id} data-testid={`key-${k.id}`}>
                    <td className="cut">{k.name ?? <span className="muted">—</span>}</td>
                    <td className="mono cut">
                      {k.id}
                      {k.id === me.key_id && <span className="muted small"> (you)</span>}
                    </td>
                    <td>{k.role}</td>
                    <td className="small">
                      <When ms={k.created_at_ms} />
                    </td>
                    <td className="small">{k.expires_at_ms ? <When ms={k.expires_at_ms} /> : <span className="muted">never</span>}</td>
                    <td>
                      <span className={`pill ${state === 'active' ? 's-succeeded' : 's-failed'}`}>{state}</span>
                    </td>
                    <td>
                      {state !== 'revoked' && (
                        <ConfirmButton
                          label="Revoke"
                          question={k.id === me.key_id ? 'Revoke the key you are signed in with?' : `Revoke ${k.name ?? k.id}?`}
                          onConfirm={() => void revoke(k)}
                        />
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

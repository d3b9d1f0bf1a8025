import { useState } from 'react';
import { Api, ApiError } from '../api/client';
import type { Whoami } from '../api/types';

export function SignIn({ onSignedIn, initialError }: { onSignedIn(api: Api, me: Whoami): void; initialError?: ApiError }) {
  const [key, setKey] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(initialError?.message);

  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    const k = key.trim();
    if (!k) {
      setError('Paste an API key first.');
      return;
    }
    setBusy(true);
    setError(undefined);
    const api = new Api(k);
    try {
      onSignedIn(api, await api.me());
    } catch (err) {
      const a = err as ApiError;
      setError(a.status === 401 ? `That key was not accepted: ${a.message}` : a.message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="signin">
      <form onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">Sign in to Baton</h1>
        <label htmlFor="key">API key</label>
        <input
          id="key"
          name="key"
          type="password"
          autoComplete="off"
          autoFocus
          placeholder="bk_…"
          value={key}
          onChange={(e) => setKey(e.target.value)}
          aria-describedby="key-help"
        />
        <p id="key-help" className="muted">
          <code>baton serve</code> prints an admin key on its first start; make others with{' '}
          <code>baton keys create --role viewer</code>. The key stays in this tab only.
        </p>
        {error && (
          <p className="banner error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}

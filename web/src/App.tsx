// The shell: sign-in until a key is accepted, then the header (pages, approvals badge, who is
// signed in) over the page of the current route.
import { lazy, Suspense, useCallback, useEffect, useMemo, useState } from 'react';
import { Api, ApiError, KEY_STORAGE } from './api/client';
import type { Whoami } from './api/types';
import { LiveProvider, useLiveResource } from './components/dashboard/Live';
import { changesApprovals } from './lib/dashboard';
import { Agents } from './pages/Agents';
import { Approvals } from './pages/Approvals';
import { Dashboard } from './pages/Dashboard';
import { SignIn } from './pages/SignIn';
import { Workflows } from './pages/Workflows';
import { navigate, onLink, useRoute } from './router';
import { SessionContext, useSession, type Session } from './session';

// The run viewer carries the graph library: loaded when a run is opened.
const RunViewer = lazy(() => import('./pages/RunViewer'));
// So does the builder (with the YAML library): loaded when a workflow is opened.
const Builder = lazy(() => import('./pages/Builder'));
// An agent's versions and diff, and the admin pages: loaded when opened.
const Agent = lazy(() => import('./pages/Agent').then((m) => ({ default: m.Agent })));
const AdminKeys = lazy(() => import('./pages/AdminKeys').then((m) => ({ default: m.AdminKeys })));
const AdminWebhooks = lazy(() => import('./pages/AdminWebhooks').then((m) => ({ default: m.AdminWebhooks })));
const AdminAudit = lazy(() => import('./pages/AdminAudit').then((m) => ({ default: m.AdminAudit })));
// Two runs side by side (with the diff code): loaded when a comparison is opened.
const Compare = lazy(() => import('./pages/Compare'));

export function App() {
  const [signed, setSigned] = useState<{ api: Api; me: Whoami } | null>(null);
  const [restoring, setRestoring] = useState(() => !!sessionStorage.getItem(KEY_STORAGE));
  const [restoreError, setRestoreError] = useState<ApiError>();

  const signIn = useCallback((api: Api, me: Whoami) => {
    sessionStorage.setItem(KEY_STORAGE, api.key);
    setSigned({ api, me });
  }, []);
  const signOut = useCallback(() => {
    sessionStorage.removeItem(KEY_STORAGE);
    setSigned(null);
    navigate('/');
  }, []);

  // A reload keeps the session of this tab.
  useEffect(() => {
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (!key) return;
    const api = new Api(key);
    api
      .me()
      .then((me) => setSigned({ api, me }))
      .catch((e: ApiError) => {
        if (e.status === 401) sessionStorage.removeItem(KEY_STORAGE);
        setRestoreError(e);
      })
      .finally(() => setRestoring(false));
  }, []);

  const session = useMemo<Session | null>(() => (signed ? { ...signed, signOut } : null), [signed, signOut]);
  if (restoring) return <p className="loading">Signing in…</p>;
  if (!session) return <SignIn onSignedIn={signIn} initialError={restoreError} />;
  return (
    <SessionContext.Provider value={session}>
      <LiveProvider>
        <Shell />
      </LiveProvider>
    </SessionContext.Provider>
  );
}

function Shell() {
  const route = useRoute();
  const { api, me, signOut } = useSession();
  // Live: reloaded when a run asks for or gets an answer (polled every 3 s while the socket is down).
  const approvals = useLiveResource((s) => api.request<{ approvals: unknown[] }>('GET', '/approvals', undefined, s), {
    key: 'approvals',
    pollMs: 3000,
    relevant: changesApprovals,
  });
  const waiting = approvals.data?.approvals.length ?? 0;
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <a className="brand" href="/" onClick={onLink}>
          Baton
        </a>
        <nav aria-label="Pages">
          <a href="/" onClick={onLink} aria-current={route.page === 'dashboard' ? 'page' : undefined}>
            Dashboard
          </a>
          <a href="/workflows" onClick={onLink} aria-current={route.page === 'workflows' || route.page === 'builder' ? 'page' : undefined}>
            Workflows
          </a>
          <a href="/agents" onClick={onLink} aria-current={route.page === 'agents' || route.page === 'agent' ? 'page' : undefined}>
            Agents
          </a>
          <a href="/approvals" onClick={onLink} aria-current={route.page === 'approvals' ? 'page' : undefined}>
            Approvals
            {waiting > 0 && (
              <span className="badge" aria-label={`${waiting} waiting`} data-testid="approvals-badge">
                {waiting}
              </span>
            )}
          </a>
          {me.may.admin && (
            <a href="/admin/keys" onClick={onLink} aria-current={route.page === 'admin-keys' ? 'page' : undefined}>
              Keys
            </a>
          )}
          {me.may.edit_workflows && (
            <a href="/admin/webhooks" onClick={onLink} aria-current={route.page === 'admin-webhooks' ? 'page' : undefined}>
              Webhooks
            </a>
          )}
          {me.may.admin && (
            <a href="/admin/audit" onClick={onLink} aria-current={route.page === 'admin-audit' ? 'page' : undefined}>
              Audit
            </a>
          )}
        </nav>
        <div className="who" data-testid="who">
          <span title={`key ${me.key_id}`}>
            {me.tenant} · <strong>{me.role}</strong>
          </span>
          <button type="button" className="link" onClick={signOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main">
        {route.page === 'dashboard' && <Dashboard />}
        {route.page === 'approvals' && <Approvals onAnswered={approvals.reload} />}
        {route.page === 'run' && (
          <Suspense fallback={<p className="loading">Loading the run viewer…</p>}>
            <RunViewer id={route.id} />
          </Suspense>
        )}
        {route.page === 'workflows' && <Workflows />}
        {route.page === 'builder' && (
          <Suspense fallback={<p className="loading">Loading the builder…</p>}>
            <Builder key={route.name ?? ''} name={route.name} />
          </Suspense>
        )}
        {route.page === 'agents' && <Agents />}
        {(route.page === 'agent' || route.page.startsWith('admin-')) && (
          <Suspense fallback={<p className="loading">Loading…</p>}>
            {route.page === 'agent' && <Agent key={route.name} name={route.name} />}
            {route.page === 'admin-keys' && <AdminKeys />}
            {route.page === 'admin-webhooks' && <AdminWebhooks />}
            {route.page === 'admin-audit' && <AdminAudit />}
          </Suspense>
        )}
        {route.page === 'compare' && (
          <Suspense fallback={<p className="loading">Loading the comparison…</p>}>
            <Compare a={route.a} b={route.b} />
          </Suspense>
        )}
        {route.page === 'missing' && (
          <section className="empty">
            <h1>Nothing here</h1>
            <p>
              No page at <code>{route.path}</code>.{' '}
              <a href="/" onClick={onLink}>
                Back to the dashboard
              </a>
            </p>
          </section>
        )}
      </main>
    </>
  );
}

// The tenant's stored workflows: open one in the builder, or start a new one.
import type { WorkflowInfo } from '../api/types';
import { ErrorBanner } from '../components/Status';
import { WorkflowRunButton } from '../components/debugger/WorkflowRunButton';
import { usePoll } from '../hooks';
import { ago } from '../lib/preview';
import { navigate, onLink } from '../router';
import { useSession } from '../session';

export function Workflows() {
  const { api, me } = useSession();
  const list = usePoll((s) => api.request<{ workflows: WorkflowInfo[] }>('GET', '/workflows', undefined, s), 10_000, 'workflows');
  const rows = list.data?.workflows ?? [];
  return (
    <section aria-labelledby="wf-title">
      <header className="run-head">
        <h1 id="wf-title">Workflows</h1>
        {me.may.edit_workflows && (
          <button type="button" className="primary" onClick={() => navigate('/builder')}>
            New
          </button>
        )}
      </header>
      <ErrorBanner error={list.error} onRetry={list.reload} />
      {!list.data && !list.error && <p className="loading">Loading workflows…</p>}
      {list.data && rows.length === 0 && (
        <div className="empty" data-testid="no-workflows">
          <h2>No stored workflow yet</h2>
          <p>
            {me.may.edit_workflows
              ? 'Press New to build one on a canvas (or import a YAML file there), then Save: each save is a new version.'
              : 'Your key may read workflows but not create them: ask an editor or an admin.'}
          </p>
        </div>
      )}
      {rows.length > 0 && (
        <div className="card" data-testid="workflows">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Latest version</th>
                <th scope="col">Updated</th>
                <th scope="col">
                  <span className="sr-only">Open</span>
                </th>
                {me.may.start_runs && (
                  <th scope="col">
                    <span className="sr-only">Run</span>
                  </th>
                )}
              </tr>
            </thead>
            <tbody>
              {rows.map((w) => (
                <tr key={w.name}>
                  <td className="mono">{w.name}</td>
                  <td>v{w.latest}</td>
                  <td className="muted">{ago(w.updated_at_ms)}</td>
                  <td>
                    <a href={`/builder/${encodeURIComponent(w.name)}`} onClick={onLink} aria-label={`Open ${w.name}`}>
                      Open
                    </a>
                  </td>
                  {me.may.start_runs && (
                    <td>
                      <WorkflowRunButton name={w.name} />
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

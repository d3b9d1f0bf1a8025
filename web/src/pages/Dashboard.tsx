// Home: counts by status, the runs in flight and the recent ones, refreshed every 2 s.
// (Polling `GET /api/v1/runs`: a browser's WebSocket cannot send the key header, and one small
// list request every 2 s costs the server less than a tenant-wide event subscription.)
import type { RunListItem } from '../api/types';
import { ErrorBanner, StatusPill } from '../components/Status';
import { CompareBar, PickBox, usePick } from '../components/timeline/ComparePick';
import { usePoll } from '../hooks';
import { ago } from '../lib/preview';
import { countByStatus, IN_FLIGHT } from '../lib/runStatus';
import { onLink } from '../router';
import { useSession } from '../session';

export function Dashboard() {
  const { api, me } = useSession();
  const runs = usePoll((s) => api.request<{ runs: RunListItem[] }>('GET', '/runs?limit=100', undefined, s), 2000, 'runs');
  const list = runs.data?.runs ?? [];
  const inFlight = list.filter((r) => IN_FLIGHT.includes(r.status));
  const recent = list.filter((r) => !IN_FLIGHT.includes(r.status)).slice(0, 20);
  const pick = usePick();
  return (
    <section aria-labelledby="dash-title">
      <h1 id="dash-title">Dashboard</h1>
      <ErrorBanner error={runs.error} onRetry={runs.reload} />
      {runs.data && list.length === 0 && <FirstSteps canStart={me.may.start_runs} canBuild={me.may.edit_workflows} />}
      {list.length > 0 && (
        <>
          <ul className="counts" aria-label="Runs by status (last 100)">
            {countByStatus(list).map(([status, n]) => (
              <li key={status} className={`count s-${status}`}>
                <span className="n">{n}</span>
                <span>{status}</span>
              </li>
            ))}
          </ul>
          <CompareBar picked={pick.picked} onClear={pick.clear} />
          <RunTable title="In flight" runs={inFlight} empty="Nothing is running right now." testid="in-flight" pick={pick} />
          <RunTable title="Recent" runs={recent} empty="No run has finished yet." testid="recent" pick={pick} />
        </>
      )}
      {!runs.data && !runs.error && <p className="loading">Loading runs…</p>}
    </section>
  );
}

function FirstSteps({ canStart, canBuild }: { canStart: boolean; canBuild: boolean }) {
  const base = `${window.location.protocol}//${window.location.host}`;
  return (
    <div className="empty" data-testid="empty-dashboard">
      <h2>No runs yet</h2>
      {canStart ? (
        <>
          <p>Start a first run: it shows up here as it goes, and you can open it to watch each step.</p>
          {canBuild && (
            <p>
              Build one on a canvas in the <a href="/builder" onClick={onLink}>workflow builder</a> (or import a YAML file
              there), save it and press Run.
            </p>
          )}
          <p>Or store a workflow, then start it (from the repository, with your key in <code>$KEY</code>):</p>
          <pre>
            {`curl -H "Authorization: Bearer $KEY" -H 'Content-Type: application/yaml' \\
     --data-binary @examples/human-approval.yaml ${base}/api/v1/workflows
curl -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \\
     -d '{"workflow": "human-approval"}' ${base}/api/v1/runs`}
          </pre>
          <p className="muted">
            That one waits for your approval in <a href="/approvals" onClick={onLink}>Approvals</a>. Every route is in
            the <a href="/api/v1/docs">API reference</a>.
          </p>
        </>
      ) : (
        <p>Your key may read runs but not start them: ask an editor or an admin to start one.</p>
      )}
    </div>
  );
}

function RunTable({ title, runs, empty, testid, pick }: { title: string; runs: RunListItem[]; empty: string; testid: string; pick: ReturnType<typeof usePick> }) {
  return (
    <div className="card" data-testid={testid}>
      <h2>{title}</h2>
      {runs.length === 0 ? (
        <p className="muted">{empty}</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col" className="pick">
                <span className="sr-only">Compare</span>
              </th>
              <th scope="col">Run</th>
              <th scope="col">Workflow</th>
              <th scope="col">Status</th>
              <th scope="col">Updated</th>
            </tr>
          </thead>
          <tbody>
            {runs.map((r) => (
              <tr key={r.id}>
                <td className="pick">
                  <PickBox id={r.id} picked={pick.picked} onToggle={pick.toggle} />
                </td>
                <td>
                  <a href={`/runs/${r.id}`} onClick={onLink} className="mono">
                    {r.id.slice(0, 8)}
                  </a>
                </td>
                <td>{r.workflow}</td>
                <td>
                  <StatusPill status={r.status} />
                  {r.error && <span className="muted small"> {r.error}</span>}
                </td>
                <td className="muted">{ago(r.updated_at_ms)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

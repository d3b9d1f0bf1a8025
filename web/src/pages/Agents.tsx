// The agent registry: every agent of the tenant with its default version, model and role;
// a search over them; a new agent (editors and admins).
import { useMemo, useState } from 'react';
import type { AgentInfo } from '../api/types';
import { AgentEditor, NEW_AGENT } from '../components/registry/AgentEditor';
import { ErrorBanner } from '../components/Status';
import { usePoll } from '../hooks';
import { ago } from '../lib/preview';
import { navigate, onLink } from '../router';
import { useSession } from '../session';

/** The agents whose name, model or role contains every word of the query. */
export function filterAgents(agents: AgentInfo[], query: string): AgentInfo[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) return agents;
  return agents.filter((a) => {
    const hay = `${a.name} ${a.model} ${a.role ?? ''}`.toLowerCase();
    return words.every((w) => hay.includes(w));
  });
}

export function Agents() {
  const { api, me } = useSession();
  const list = usePoll((s) => api.request<{ agents: AgentInfo[] }>('GET', '/agents', undefined, s), 10_000, 'agents');
  const [query, setQuery] = useState('');
  const [creating, setCreating] = useState(false);
  const all = list.data?.agents;
  const rows = useMemo(() => filterAgents(all ?? [], query), [all, query]);
  return (
    <section aria-labelledby="agents-title">
      <header className="run-head">
        <h1 id="agents-title">Agents</h1>
        {all && all.length > 0 && (
          <input type="search" aria-label="Search agents" placeholder="Search by name, model or role" value={query} onChange={(e) => setQuery(e.target.value)} />
        )}
        {me.may.edit_workflows && !creating && (
          <div className="buttons">
            <button type="button" className="primary" onClick={() => setCreating(true)}>
              New agent
            </button>
          </div>
        )}
      </header>
      {creating && (
        <AgentEditor title="New agent" initial={NEW_AGENT} onCancel={() => setCreating(false)} onSaved={(v) => navigate(`/agents/${encodeURIComponent(v.name)}`)} />
      )}
      <ErrorBanner error={list.error} onRetry={list.reload} />
      {!list.data && !list.error && <p className="loading">Loading agents…</p>}
      {all && all.length === 0 && !creating && (
        <div className="empty" data-testid="no-agents">
          <h2>No agent in the registry yet</h2>
          <p>
            An agent is a reusable template (model, role, instructions, tools) that workflow steps name with <code>agent: NAME</code> (or pin with{' '}
            <code>agent: NAME@2</code>). Each save is a new version; runs use the default one.
          </p>
          <p>
            {me.may.edit_workflows
              ? 'Press New agent to write one here, or from a terminal:'
              : 'Your key may read agents but not create them: ask an editor or an admin. From a terminal, with such a key:'}
          </p>
          <pre>baton agents create examples/agents/reviewer.yaml</pre>
        </div>
      )}
      {all && all.length > 0 && rows.length === 0 && (
        <p className="muted" data-testid="no-match">
          No agent matches “{query}”.
        </p>
      )}
      {rows.length > 0 && (
        <div className="card" data-testid="agents">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Default version</th>
                <th scope="col">Model</th>
                <th scope="col">Role</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((a) => (
                <tr key={a.name}>
                  <td className="mono">
                    <a href={`/agents/${encodeURIComponent(a.name)}`} onClick={onLink}>
                      {a.name}
                    </a>
                  </td>
                  <td>
                    v{a.default_version}
                    {a.latest !== a.default_version && <span className="muted small"> (latest v{a.latest})</span>}
                  </td>
                  <td className="mono cut">{a.model}</td>
                  <td className="cut">{a.role ?? <span className="muted">—</span>}</td>
                  <td className="muted">{ago(a.updated_at_ms)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

// One agent of the registry: its versions (which is the default), a version's definition,
// two versions side by side, a new version, and making a version the default (a rollback).
import { useEffect, useState } from 'react';
import { ApiError } from '../api/client';
import type { AgentDiff, AgentVersion, AgentVersions } from '../api/adminTypes';
import { AgentEditor } from '../components/registry/AgentEditor';
import { CutText, When } from '../components/registry/Common';
import { DiffView } from '../components/registry/DiffView';
import { ErrorBanner } from '../components/Status';
import { navigate, onLink } from '../router';
import { useSession } from '../session';

const text = (v: unknown) => (v === null || v === undefined ? '(absent)' : typeof v === 'string' ? v : JSON.stringify(v));
/** A short value: too long or several lines (instructions) are read in the file diff below. */
const short = (v: unknown) => {
  const t = text(v);
  return t.length <= 120 && !t.includes('\n');
};

export function Agent({ name }: { name: string }) {
  const { api, me } = useSession();
  const [versions, setVersions] = useState<AgentVersion[]>();
  const [error, setError] = useState<ApiError>();
  const [tick, setTick] = useState(0);
  const [selected, setSelected] = useState<number>();
  const [pair, setPair] = useState<{ from: number; to: number }>();
  const [editing, setEditing] = useState(false);
  const [note, setNote] = useState<string>();
  const [actionError, setActionError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    const ctrl = new AbortController();
    api.request<AgentVersions>('GET', `/agents/${encodeURIComponent(name)}/versions`, undefined, ctrl.signal).then(
      (v) => {
        setVersions(v.versions);
        setError(undefined);
      },
      (e: ApiError) => e.name !== 'AbortError' && setError(e),
    );
    return () => ctrl.abort();
  }, [api, name, tick]);

  const latest = versions?.[versions.length - 1];
  const def = latest?.default_version;
  const current = versions?.find((v) => v.version === (selected ?? def));
  // Compare the default with the one before it, unless the user picked two.
  const compare = pair ?? (versions && versions.length > 1 && def ? (def > 1 ? { from: def - 1, to: def } : { from: def, to: def + 1 }) : undefined);

  const rollback = async (to: number) => {
    setBusy(true);
    try {
      await api.request('POST', `/agents/${encodeURIComponent(name)}/rollback`, { to });
      setActionError(undefined);
      setNote(`v${to} is now the default: runs started from now on use it.`);
      setTick((t) => t + 1);
    } catch (e) {
      setActionError(e as ApiError);
    } finally {
      setBusy(false);
    }
  };

  if (error)
    return (
      <section>
        <h1>
          Agent <span className="mono">{name}</span>
        </h1>
        <ErrorBanner error={error} onRetry={() => setTick((t) => t + 1)} />
        <a href="/agents" onClick={onLink}>
          All agents
        </a>
      </section>
    );
  if (!versions || !latest || !current) return <p className="loading">Loading {name}…</p>;

  return (
    <section aria-labelledby="agent-title" className="agent-page">
      <header className="run-head">
        <h1 id="agent-title">
          <a href="/agents" onClick={onLink} className="muted">
            Agents
          </a>{' '}
          › <span className="mono">{name}</span>
        </h1>
        <span className="pill s-succeeded" data-testid="default-version">
          default v{def}
        </span>
        <span className="muted">
          {versions.length} version{versions.length === 1 ? '' : 's'}
        </span>
        {me.may.edit_workflows && !editing && (
          <div className="buttons">
            <button type="button" className="primary" onClick={() => setEditing(true)}>
              New version
            </button>
          </div>
        )}
      </header>
      {note && (
        <div className="banner ok" role="status">
          {note}
        </div>
      )}
      <ErrorBanner error={actionError} />
      {editing && (
        <AgentEditor
          title={`New version of ${name} (from v${current.version})`}
          initial={current.source}
          onCancel={() => setEditing(false)}
          onSaved={(v) => {
            setEditing(false);
            if (v.name !== name) {
              navigate(`/agents/${encodeURIComponent(v.name)}`);
              return;
            }
            setNote(`Saved v${v.version}: it is now the default.`);
            setSelected(undefined);
            setPair(undefined);
            setTick((t) => t + 1);
          }}
        />
      )}
      <div className="agent-grid">
        <div className="card">
          <h2>Versions</h2>
          <table data-testid="versions">
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">Model</th>
                <th scope="col">Created</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {[...versions].reverse().map((v) => (
                <tr key={v.version} className={v.version === current.version ? 'selected' : undefined} data-testid={`version-${v.version}`}>
                  <td>
                    <button type="button" className="link" aria-pressed={v.version === current.version} onClick={() => setSelected(v.version)}>
                      v{v.version}
                    </button>
                    {v.version === def && <span className="pill s-succeeded">default</span>}
                  </td>
                  <td className="mono cut">{v.spec.model}</td>
                  <td className="small">
                    <When ms={v.created_at_ms} />
                    {v.created_by && <div className="muted cut">by key {v.created_by}</div>}
                  </td>
                  <td>
                    {me.may.edit_workflows && v.version !== def && (
                      <button type="button" disabled={busy} onClick={() => void rollback(v.version)}>
                        Make <span className="sr-only">v{v.version} the </span>default
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <div className="card" data-testid="definition">
          <h2>
            v{current.version} {current.version === def && <span className="muted small">(default)</span>}
          </h2>
          <dl className="facts">
            <dt>Model</dt>
            <dd className="mono">{current.spec.model}</dd>
            <dt>Role</dt>
            <dd>{current.spec.role ?? <span className="muted">—</span>}</dd>
            <dt>Tools</dt>
            <dd>{current.spec.tools?.length ? current.spec.tools.join(', ') : <span className="muted">none</span>}</dd>
            <dt>Format</dt>
            <dd>{current.format}</dd>
          </dl>
          {current.warnings?.map((w, i) => (
            <p key={i} className="banner">
              {w.path && <code>{w.path}</code>} {w.message}
            </p>
          ))}
          <CutText text={current.source} testId="agent-source" />
        </div>
      </div>
      <div className="card">
        <h2>Compare versions</h2>
        {versions.length < 2 || !compare ? (
          <p className="muted">Only one version so far: save a new version to compare two.</p>
        ) : (
          <Compare name={name} versions={versions} pair={compare} onPair={setPair} />
        )}
      </div>
    </section>
  );
}

function Compare({ name, versions, pair, onPair }: { name: string; versions: AgentVersion[]; pair: { from: number; to: number }; onPair(p: { from: number; to: number }): void }) {
  const { api } = useSession();
  const [diff, setDiff] = useState<AgentDiff>();
  const [error, setError] = useState<ApiError>();
  useEffect(() => {
    const ctrl = new AbortController();
    setDiff(undefined);
    api.request<AgentDiff>('GET', `/agents/${encodeURIComponent(name)}/diff?from=${pair.from}&to=${pair.to}`, undefined, ctrl.signal).then(
      (d) => {
        setDiff(d);
        setError(undefined);
      },
      (e: ApiError) => e.name !== 'AbortError' && setError(e),
    );
    return () => ctrl.abort();
  }, [api, name, pair.from, pair.to]);
  const older = versions.find((v) => v.version === pair.from);
  const newer = versions.find((v) => v.version === pair.to);
  const pick = (label: string, value: number, set: (v: number) => void) => (
    <label>
      {label}{' '}
      <select value={value} onChange={(e) => set(Number(e.target.value))}>
        {versions.map((v) => (
          <option key={v.version} value={v.version}>
            v{v.version}
          </option>
        ))}
      </select>
    </label>
  );
  return (
    <>
      <div className="buttons compare-pick">
        {pick('From', pair.from, (from) => onPair({ ...pair, from }))}
        {pick('to', pair.to, (to) => onPair({ ...pair, to }))}
      </div>
      <ErrorBanner error={error} />
      {diff && (
        <div data-testid="field-changes">
          {diff.changes.length === 0 ? (
            <p className="muted">No field differs.</p>
          ) : (
            <ul className="changes">
              {diff.changes.map((c) => (
                <li key={c.field}>
                  <code>{c.field}</code>:{' '}
                  {short(c.from) && short(c.to) ? (
                    <>
                      <del>{text(c.from)}</del> → <ins>{text(c.to)}</ins>
                    </>
                  ) : (
                    <span className="muted">changed (see the lines below)</span>
                  )}
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
      {older && newer && <DiffView older={older.source} newer={newer.source} olderLabel={`v${older.version}`} newerLabel={`v${newer.version}`} />}
    </>
  );
}

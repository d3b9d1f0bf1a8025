// One step's details: status, attempts, duration, tokens, its output and error. Outputs are
// cut at a few thousand characters with "show all", so a huge output never freezes the page.
import { useEffect, useState, type ReactNode } from 'react';
import type { ApiError } from '../api/client';
import type { GraphNode, StepDetail, StepTrace } from '../api/types';
import { useSession } from '../session';
import { ErrorBanner } from './Status';
import { duration, preview } from '../lib/preview';
import type { NodeState, NodeStatus } from '../lib/runStatus';
import { onLink } from '../router';

export function NodePanel({ runId, node, live, detail, status, onClose, children }: { runId: string; node: GraphNode; live?: NodeState; detail?: StepDetail; status: NodeStatus; onClose(): void; children?: ReactNode }) {
  const output = detail?.output ?? live?.output;
  const error = detail?.error ?? live?.error;
  const tokens = detail?.tokens ?? live?.tokens ?? 0;
  const ms = detail?.duration_ms ?? live?.durationMs;
  return (
    <aside className="panel" aria-labelledby="panel-title" data-testid="node-panel">
      <header>
        <h2 id="panel-title">
          <span className="mono">{node.id}</span> <span className={`pill s-${status}`}>{status}</span>
        </h2>
        <button type="button" className="link" onClick={onClose} aria-label="Close the step's details">
          ✕
        </button>
      </header>
      <dl className="facts">
        <dt>Kind</dt>
        <dd>{node.kind}</dd>
        <dt>Attempts</dt>
        <dd>{detail?.attempts ?? live?.attempts ?? 0}</dd>
        <dt>Duration</dt>
        <dd>{duration(ms)}</dd>
        <dt>Tokens</dt>
        <dd>{tokens}</dd>
        {detail?.usage?.cost_usd != null && (
          <>
            <dt>Cost</dt>
            <dd>${detail.usage.cost_usd.toFixed(4)}</dd>
          </>
        )}
      </dl>
      {children}
      {status === 'waiting' && (
        <p className="banner">
          Waiting for a person.{' '}
          <a href="/approvals" onClick={onLink}>
            Answer it in Approvals
          </a>
        </p>
      )}
      {error && (
        <>
          <h3>Error</h3>
          <p className="banner error">
            <strong>{error.kind}</strong>: {error.message}
          </p>
        </>
      )}
      <h3>Output</h3>
      {output === undefined || output === null ? <p className="muted">No output yet.</p> : <Big value={output} />}
      {node.kind === 'agent' && status !== 'pending' && status !== 'skipped' && <Trace runId={runId} step={node.id} status={status} />}
    </aside>
  );
}

export function Big({ value }: { value: unknown }) {
  const [all, setAll] = useState(false);
  const p = preview(value);
  const text = all ? preview(value, Infinity).text : p.text;
  return (
    <>
      <pre className="output" data-testid="output">
        {text}
      </pre>
      {p.truncated && !all && (
        <button type="button" onClick={() => setAll(true)}>
          Show all ({p.total.toLocaleString()} characters)
        </button>
      )}
    </>
  );
}

/** What an agent step's model saw (each turn's messages) and the tools it called. */
function Trace({ runId, step, status }: { runId: string; step: string; status: NodeStatus }) {
  const { api } = useSession();
  const [trace, setTrace] = useState<StepTrace>();
  const [error, setError] = useState<ApiError>();
  useEffect(() => {
    let live = true;
    api.stepTrace(runId, step).then(
      (t) => live && setTrace(t),
      (e: ApiError) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [api, runId, step, status]);
  if (error) return <ErrorBanner error={error} />;
  if (!trace) return null;
  return (
    <>
      {trace.prompts.map((t) => (
        <section key={t.turn} data-testid="turn">
          <h3>
            Turn {t.turn} <span className="muted small">· {t.model}</span>
          </h3>
          {(t.messages as { role?: string; content?: unknown }[]).map((m, i) => (
            <div key={i}>
              <span className="muted small">{m.role ?? 'message'}</span>
              <Big value={m.content ?? m} />
            </div>
          ))}
        </section>
      ))}
      {trace.tool_calls.length > 0 && <h3>Tool calls</h3>}
      {trace.tool_calls.map((c) => (
        <section key={`${c.attempt}-${c.call}`}>
          <p className="small">
            <span className="mono">{c.tool}</span> <span className={`pill s-${c.status === 'finished' ? 'done' : 'failed'}`}>{c.status}</span>
          </p>
          <Big value={c.arguments} />
          {c.output !== undefined && c.output !== null && <Big value={c.output} />}
        </section>
      ))}
    </>
  );
}

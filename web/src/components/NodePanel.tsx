// One step's details: status, attempts, duration, tokens, its output and error. Outputs are
// cut at a few thousand characters with "show all", so a huge output never freezes the page.
import { useState } from 'react';
import type { GraphNode, StepDetail } from '../api/types';
import { duration, preview } from '../lib/preview';
import type { NodeState, NodeStatus } from '../lib/runStatus';
import { onLink } from '../router';

export function NodePanel({ node, live, detail, status, onClose }: { node: GraphNode; live?: NodeState; detail?: StepDetail; status: NodeStatus; onClose(): void }) {
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

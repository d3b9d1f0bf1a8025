// One step's details: status, attempts, duration, tokens, its output and error; while an agent
// runs, its model's output as it streams; its prompt and tool calls, its sandbox executions
// and its definition (components/run/); the debugger's controls (children). Outputs are cut at
// a few thousand characters with "show all", so a huge output never freezes the page.
import { useState, type ReactNode } from 'react';
import type { GraphNode, SandboxRecord, StepDetail } from '../api/types';
import { duration, preview } from '../lib/preview';
import type { NodeState, NodeStatus } from '../lib/runStatus';
import { onLink } from '../router';
import type { DeltaStore } from '../lib/deltas';
import { Elapsed } from './run/Elapsed';
import { LiveOutput } from './run/LiveOutput';
import { recordsOf, SandboxRuns } from './run/SandboxRuns';
import { StepDefinition, StepTrace } from './run/StepTrace';

export function NodePanel({ runId, node, live, detail, status, deltas, sandbox, onClose, children }: { runId: string; node: GraphNode; live?: NodeState; detail?: StepDetail; status: NodeStatus; deltas?: DeltaStore; sandbox?: SandboxRecord[]; onClose(): void; children?: ReactNode }) {
  const output = detail?.output ?? live?.output;
  const error = detail?.error ?? live?.error;
  const tokens = detail?.tokens ?? live?.tokens ?? 0;
  const ms = detail?.duration_ms ?? live?.durationMs;
  const records = recordsOf(sandbox, node.id);
  // Agents, and parallel steps whose judge agent picks the winner, talk to a model.
  const talks = node.kind === 'agent' || (node.kind === 'parallel' && (node.step as { join?: { strategy?: string } }).join?.strategy === 'judge');
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
        <dd>{status === 'running' && live?.startedAt !== undefined ? <Elapsed since={live.startedAt} /> : duration(ms)}</dd>
        <dt>Tokens</dt>
        <dd>
          {tokens}
          {detail?.usage && detail.usage.prompt_tokens + detail.usage.completion_tokens > 0 && (
            <span className="muted small">
              {' '}
              ({detail.usage.prompt_tokens} in, {detail.usage.completion_tokens} out)
            </span>
          )}
        </dd>
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
      {status === 'running' && deltas && talks && <LiveOutput store={deltas} step={node.id} />}
      <SandboxRuns records={records} />
      {records.length > 0 && output !== undefined && output !== null ? (
        <details>
          <summary>Output (the execution record)</summary>
          <Big value={output} />
        </details>
      ) : (
        <>
          <h3>Output</h3>
          {output === undefined || output === null ? <p className="muted">No output yet.</p> : <Big value={output} />}
        </>
      )}
      {talks && status !== 'pending' && status !== 'skipped' && <StepTrace runId={runId} step={node.id} status={status} />}
      <StepDefinition node={node} />
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

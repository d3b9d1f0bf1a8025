// What an agent step's model saw and did (`GET /runs/{id}/steps/{step}`): each turn's
// rendered prompt (the system message, tools offered and answer format once, then the
// messages each turn added) and each tool call with its arguments, status and result. Read
// again when the step's status changes, so a running step's turns appear as they happen.
import { useEffect, useState } from 'react';
import type { ApiError } from '../../api/client';
import type { GraphNode, StepTrace as Trace } from '../../api/types';
import type { NodeStatus } from '../../lib/runStatus';
import { useSession } from '../../session';
import { Big } from '../NodePanel';
import { ErrorBanner } from '../Status';

export function StepTrace({ runId, step, status, turns }: { runId: string; step: string; status: NodeStatus; turns?: number }) {
  const { api } = useSession();
  const [trace, setTrace] = useState<Trace>();
  const [error, setError] = useState<ApiError>();
  useEffect(() => {
    let live = true;
    api.stepTrace(runId, step).then(
      (t) => {
        if (!live) return;
        setTrace(t);
        setError(undefined);
      },
      (e: ApiError) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [api, runId, step, status, turns]);
  if (error) return <ErrorBanner error={error} />;
  if (!trace) return <p className="muted small">Loading the prompt…</p>;
  if (!trace.prompts.length && !trace.tool_calls.length) return <p className="muted small">No prompt sent yet.</p>;
  return (
    <>
      <h3>Prompt</h3>
      {trace.prompts.map((t) => (
        <section key={t.turn} className="rv-turn" data-testid="turn">
          <h4>
            Turn {t.turn} <span className="muted small">· {t.model}</span>
            {t.cut_bytes > 0 && <span className="muted small"> · {t.cut_bytes.toLocaleString()} bytes cut from the log</span>}
          </h4>
          {t.context?.system && (
            <details>
              <summary className="small">System message</summary>
              <Big value={t.context.system} />
            </details>
          )}
          {(t.context?.tools?.length ?? 0) > 0 && (
            <details>
              <summary className="small">
                Tools offered:{' '}
                <span className="mono">
                  {(t.context?.tools ?? []).map((x) => String((x as { name?: unknown }).name ?? '?')).join(', ')}
                </span>
              </summary>
              <Big value={t.context?.tools} />
            </details>
          )}
          {t.context?.response_format != null && (
            <details>
              <summary className="small">Answer format</summary>
              <Big value={t.context.response_format} />
            </details>
          )}
          {(t.messages as { role?: string; content?: unknown }[]).map((m, i) => (
            <div key={i} data-testid="prompt-message">
              <span className="muted small">{m.role ?? 'message'}</span>
              <Big value={m.content ?? m} />
            </div>
          ))}
        </section>
      ))}
      {trace.tool_calls.length > 0 && <h3>Tool calls ({trace.tool_calls.length})</h3>}
      {trace.tool_calls.map((c) => (
        <details key={`${c.attempt}-${c.call}`} className="rv-call" data-testid="tool-call" open={trace.tool_calls.length <= 3}>
          <summary>
            <span className="mono">{c.tool}</span> <span className={`pill s-${c.status === 'finished' ? 'done' : c.status === 'error' ? 'failed' : 'running'}`}>{c.status}</span>
            <span className="muted small">
              {' '}
              · call {c.call}
              {c.attempt > 1 && ` · attempt ${c.attempt}`}
            </span>
          </summary>
          <span className="muted small">arguments</span>
          <Big value={c.arguments} />
          {c.output !== undefined && c.output !== null && (
            <>
              <span className="muted small">result</span>
              <Big value={c.output} />
            </>
          )}
        </details>
      ))}
    </>
  );
}

/** The step as the workflow wrote it (its template, its agent, its limits): the inputs it had. */
export function StepDefinition({ node }: { node: GraphNode }) {
  const fields = Object.fromEntries(Object.entries(node.step as Record<string, unknown>).filter(([k, v]) => k !== 'id' && v !== null && v !== undefined && !(Array.isArray(v) && v.length === 0)));
  if (!Object.keys(fields).length) return null;
  return (
    <details className="rv-def" data-testid="step-definition">
      <summary>
        <h3>Definition</h3>
      </summary>
      <Big value={fields} />
    </details>
  );
}

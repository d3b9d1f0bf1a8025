// A step's sandbox executions (a `sandbox:` step's, or an agent's `sandbox.exec` calls), as
// `GET /runs/{id}` gives them in `sandbox`: the command and its files, the tier and limits it
// ran under, why it stopped and with which exit code, what it used, stdout and stderr (cut,
// with "show all"), the limits it hit, the scan's findings and the hosts it tried.
import type { SandboxRecord } from '../../api/types';
import { stepIdOf } from '../../lib/deltas';
import { Big } from '../NodePanel';

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

export function bytes(n: unknown): string {
  if (typeof n !== 'number') return '–';
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}

const ms = (v: unknown) => (typeof v === 'number' ? `${v < 10 ? v.toFixed(1) : Math.round(v)} ms` : '–');

/** A limit's value as people read it (sizes in KiB/MiB, times as given). */
function limitText(key: string, v: unknown): string {
  if (key.endsWith('_bytes')) return bytes(v);
  if (v === null || v === undefined) return 'none';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** The records of one workflow step (every instance of it), in log order. */
export function recordsOf(all: SandboxRecord[] | undefined, step: string): SandboxRecord[] {
  return (all ?? []).filter((r) => stepIdOf(r.step) === step);
}

export function SandboxRuns({ records }: { records: SandboxRecord[] }) {
  if (!records.length) return null;
  return (
    <>
      <h3>Sandbox {records.length > 1 ? `(${records.length} executions)` : ''}</h3>
      {records.map((r, i) => (
        <SandboxRun key={i} r={r} open={i === records.length - 1} />
      ))}
    </>
  );
}

function SandboxRun({ r, open }: { r: SandboxRecord; open: boolean }) {
  const v = obj(r.record);
  const req = obj(v.request);
  const policy = obj(v.policy);
  const limits = Object.entries(obj(policy.limits));
  const net = obj(policy.net);
  const argv = list(req.argv).map(String);
  const files = Object.entries(obj(req.files));
  const findings = list(obj(v.scan).findings).map(obj);
  const hit = list(v.limits_hit).map(String);
  const network = list(v.network);
  const exit = typeof v.exit_code === 'number' ? `exit ${v.exit_code}` : typeof v.signal === 'number' ? `signal ${v.signal}` : 'no exit code';
  const ok = v.stop_reason === 'exited' && v.exit_code === 0;
  const where = [r.visit && r.visit > 1 ? `visit ${r.visit}` : '', r.attempt ? `attempt ${r.attempt}` : '', r.via === 'step' ? '' : `via ${r.via}`].filter(Boolean).join(' · ');
  return (
    <details className="rv-sandbox" open={open} data-testid="sandbox-run">
      <summary>
        <span className={`pill s-${ok ? 'done' : 'failed'}`} data-testid="sandbox-exit">
          {String(v.stop_reason ?? '?')} · {exit}
        </span>{' '}
        <span className="muted small">
          tier {String(policy.tier ?? v.tier ?? '?')}
          {where && ` · ${where}`}
        </span>
      </summary>
      <dl className="facts">
        <dt>Command</dt>
        <dd className="mono" data-testid="sandbox-command">
          {argv.length ? argv.map((a) => (/\s/.test(a) || !a ? JSON.stringify(a) : a)).join(' ') : '–'}
        </dd>
        {files.length > 0 && (
          <>
            <dt>Files</dt>
            <dd className="mono small">{files.map(([k, n]) => `${k} (${bytes(n)})`).join(', ')}</dd>
          </>
        )}
        {typeof req.workdir === 'string' && (
          <>
            <dt>Workdir</dt>
            <dd className="mono">{req.workdir}</dd>
          </>
        )}
        {list(req.env).length > 0 && (
          <>
            <dt>Env</dt>
            <dd className="mono small">{list(req.env).map(String).join(', ')}</dd>
          </>
        )}
        <dt>Tier</dt>
        <dd data-testid="sandbox-tier">{String(policy.tier ?? v.tier ?? '?')}</dd>
        <dt>Stopped</dt>
        <dd>
          {String(v.stop_reason ?? '?')} ({exit})
        </dd>
        <dt>Used</dt>
        <dd>
          wall {ms(v.wall_time)}, cpu {ms(v.cpu_time)}, peak memory {bytes(v.peak_memory_bytes)}
        </dd>
        <dt>Limits</dt>
        <dd data-testid="sandbox-limits">
          {limits.map(([k, l]) => `${k.replace(/_bytes$/, '')} ${limitText(k, l)}`).join(', ') || '–'}
          {`, net ${String(net.mode ?? '?')}${list(net.hosts).length ? `: ${list(net.hosts).map(String).join(', ')}` : ''}`}
          {typeof policy.file === 'string' && <span className="muted"> (policy file {policy.file})</span>}
        </dd>
        {hit.length > 0 && (
          <>
            <dt>Limits hit</dt>
            <dd className="rv-warn">{hit.join(', ')}</dd>
          </>
        )}
      </dl>
      <h4>
        Scan <span className="muted small">· {findings.length === 0 ? 'no findings' : `${findings.length} finding${findings.length > 1 ? 's' : ''}`}</span>
      </h4>
      {findings.length > 0 && (
        <ul className="rv-findings" data-testid="sandbox-findings">
          {findings.map((f, i) => (
            <li key={i}>
              <span className={`pill sev-${String(f.severity)}`}>{String(f.severity)}</span> <span className="mono">{String(f.rule)}</span>{' '}
              <span className="mono small muted">
                {String(f.file)}:{String(f.line)}
              </span>{' '}
              {String(f.message)}
              {typeof f.fix === 'string' && f.fix && <div className="muted small">Fix: {f.fix}</div>}
            </li>
          ))}
        </ul>
      )}
      <h4>
        stdout{' '}
        {v.stdout_truncated === true && <span className="muted small">(cut at the sandbox's output limit)</span>}
      </h4>
      {typeof v.stdout === 'string' && v.stdout ? <Big value={v.stdout} /> : <p className="muted small">Empty.</p>}
      <h4>
        stderr{' '}
        {v.stderr_truncated === true && <span className="muted small">(cut at the sandbox's output limit)</span>}
      </h4>
      {typeof v.stderr === 'string' && v.stderr ? <Big value={v.stderr} /> : <p className="muted small">Empty.</p>}
      {network.length > 0 && (
        <>
          <h4>Network</h4>
          <Big value={network} />
        </>
      )}
      {list(v.enforced).length > 0 && (
        <details>
          <summary className="small">Enforced ({list(v.enforced).length})</summary>
          <ul className="small">
            {list(v.enforced).map((e, i) => (
              <li key={i}>{String(e)}</li>
            ))}
          </ul>
        </details>
      )}
    </details>
  );
}

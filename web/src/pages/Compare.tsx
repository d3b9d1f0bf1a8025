// Two runs side by side (`/compare/A/B`: a fork and its parent, or any two runs chosen on the
// dashboard): the totals at the top, then each step of either run with both sides' status,
// tokens, cost, duration, model and output, the output differences highlighted. Outputs are
// cut at a few thousand characters with "show all", and a step's differences are computed
// only once it scrolls into view, after the page has drawn, so two runs with megabyte
// outputs open as fast as two small ones; only the steps near the viewport are drawn
// (components/compare/WindowList.tsx), so two runs of thousands of steps do too.
import { useEffect, useMemo, useRef, useState } from 'react';
import { ApiError } from '../api/client';
import type { RunDetail } from '../api/types';
import { WindowList } from '../components/compare/WindowList';
import { ErrorBanner, StatusPill } from '../components/Status';
import { delta, pairSteps, shortId, sideOf, totalsOf, type RunSide, type StepPair, type Totals } from '../lib/compare';
import { canonicalText, cutParts, diffValues, fromFirstChange, type Diff, type Part } from '../lib/outputDiff';
import { duration, PREVIEW_CHARS } from '../lib/preview';
import { onLink } from '../router';
import { useSession } from '../session';

export default function Compare({ a, b }: { a: string; b: string }) {
  const { api } = useSession();
  const [sides, setSides] = useState<[RunSide, RunSide]>();
  const [error, setError] = useState<ApiError>();
  // While either run is still going (a fork just started), both are read again every 2 s.
  const [round, setRound] = useState(0);
  useEffect(() => {
    setSides(undefined);
    setError(undefined);
    setRound(0);
  }, [a, b]);
  useEffect(() => {
    const ctrl = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async (id: string, name: string): Promise<RunSide> => {
      try {
        const [detail, events] = await Promise.all([api.run(id), api.allEvents(id, ctrl.signal)]);
        return sideOf(detail, events);
      } catch (e) {
        const err = e as ApiError;
        if (err.name === 'AbortError') throw err;
        throw new ApiError(err.status, err.code, `Run ${name} (${shortId(id)}): ${err.message}`, err.details);
      }
    };
    Promise.all([load(a, 'A'), load(b, 'B')]).then(
      (s) => {
        if (ctrl.signal.aborted) return;
        setSides(s);
        if (s.some((x) => totalsOf(x.detail).durationMs === undefined)) timer = setTimeout(() => setRound((r) => r + 1), 2000);
      },
      (e: ApiError) => !ctrl.signal.aborted && setError(e),
    );
    return () => {
      ctrl.abort();
      clearTimeout(timer);
    };
  }, [api, a, b, round]);

  const pairs = useMemo(() => (sides ? pairSteps(sides[0], sides[1]) : []), [sides]);
  if (error)
    return (
      <section>
        <h1>Compare runs</h1>
        <ErrorBanner error={error} />
        <a href="/" onClick={onLink}>
          Back to the dashboard
        </a>
      </section>
    );
  if (!sides) return <p className="loading">Loading runs {shortId(a)} and {shortId(b)}…</p>;
  const [sa, sb] = sides;
  const differ = pairs.filter((p) => !p.sameOutput).length;
  return (
    <section className="compare" aria-labelledby="cmp-title">
      <header className="cmp-head">
        <h1 id="cmp-title">Compare runs</h1>
        <a href={`/compare/${b}/${a}`} onClick={onLink} className="small">
          Swap sides
        </a>
      </header>
      <Totals a={sa.detail} b={sb.detail} />
      <p className="muted small" data-testid="cmp-summary">
        {pairs.length} step{pairs.length === 1 ? '' : 's'} · {differ === 0 ? 'every output is the same' : `${differ} with a different output or only in one run`}
      </p>
      <WindowList className="cmp-steps" label="Steps" items={pairs} keyOf={stepKey} render={renderStep} />
    </section>
  );
}

const stepKey = (p: StepPair) => p.step;
const renderStep = (p: StepPair) => <StepRow pair={p} />;

const money = (v?: number) => (v === undefined ? '–' : `$${v.toFixed(4)}`);

function RunHead({ d, side }: { d: RunDetail; side: 'A' | 'B' }) {
  return (
    <span>
      <span className="cmp-side">{side}</span>{' '}
      <a href={`/runs/${d.run.id}`} onClick={onLink} className="mono">
        {shortId(d.run.id)}
      </a>{' '}
      <span className="muted small">{d.run.workflow}</span>
      {d.forked_from && <span className="muted small"> · fork of {shortId(d.forked_from.run)} at seq {d.forked_from.seq}</span>}
    </span>
  );
}

function Totals({ a, b }: { a: RunDetail; b: RunDetail }) {
  const ta: Totals = totalsOf(a);
  const tb: Totals = totalsOf(b);
  const rows: [string, React.ReactNode, React.ReactNode, string][] = [
    ['Status', <StatusPill status={ta.status} />, <StatusPill status={tb.status} />, ta.status === tb.status ? '=' : 'differs'],
    ['Tokens', ta.tokens.toLocaleString(), tb.tokens.toLocaleString(), delta(ta.tokens, tb.tokens)],
    ['Cost', money(ta.cost), money(tb.cost), delta(ta.cost, tb.cost, 4)],
    ['Duration', duration(ta.durationMs), duration(tb.durationMs), ta.durationMs !== undefined && tb.durationMs !== undefined ? `${delta(ta.durationMs, tb.durationMs)}${ta.durationMs !== tb.durationMs ? ' ms' : ''}` : ''],
    ['Steps', ta.steps, tb.steps, delta(ta.steps, tb.steps)],
  ];
  return (
    <div className="card cmp-totals" data-testid="cmp-totals">
      <table>
        <thead>
          <tr>
            <th scope="col">Totals</th>
            <th scope="col">
              <RunHead d={a} side="A" />
            </th>
            <th scope="col">
              <RunHead d={b} side="B" />
            </th>
            <th scope="col">B − A</th>
          </tr>
        </thead>
        <tbody>
          {rows.map(([name, va, vb, d]) => (
            <tr key={name} data-testid={`total-${name.toLowerCase()}`}>
              <th scope="row">{name}</th>
              <td>{va}</td>
              <td>{vb}</td>
              <td className="mono">{d}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function StepRow({ pair }: { pair: StepPair }) {
  const { a, b } = pair;
  const note = pair.only ? `only in run ${pair.only.toUpperCase()}` : pair.sameOutput ? 'same output' : 'output differs';
  return (
    <div className={`card cmp-step${pair.only ? ' only' : ''}${!pair.sameOutput && !pair.only ? ' differs' : ''}`} data-testid={`cmp-step-${pair.step}`} data-same={pair.sameOutput}>
      <h2>
        <span className="mono">{pair.step}</span> <span className={`cmp-note${pair.sameOutput ? ' muted' : ''}`}>{note}</span>
      </h2>
      <div className="cmp-grid">
        <Facts s={a} models={pair.modelsA} side="A" edited={pair.editedA} />
        <Facts s={b} models={pair.modelsB} side="B" edited={pair.editedB} />
        {pair.only || pair.sameOutput ? (
          <>
            <Output value={pair.outA} missing={!a} />
            <Output value={pair.outB} missing={!b} />
          </>
        ) : (
          <DiffPair a={pair.outA} b={pair.outB} />
        )}
      </div>
    </div>
  );
}

function Facts({ s, models, side, edited }: { s?: StepDetail; models: string[]; side: string; edited: boolean }) {
  if (!s)
    return (
      <p className="muted small cmp-facts" data-side={side}>
        Run {side} did not reach this step.
      </p>
    );
  return (
    <p className="small cmp-facts" data-side={side}>
      <StatusPill status={s.status} /> {s.tokens.toLocaleString()} tokens · {money(s.usage.cost_usd ?? undefined)} · {duration(s.duration_ms)}
      {s.attempts > 1 && ` · ${s.attempts} attempts`}
      {edited && ' '}
      {edited && (
        <span className="pill s-running" title="The output shown is the edited value the next steps saw">
          edited
        </span>
      )}
      {models.length > 0 && <span className="mono"> · {models.join(', ')}</span>}
      {s.error && <span className="cmp-error"> · {s.error.kind}: {s.error.message}</span>}
    </p>
  );
}

type StepDetail = RunDetail['steps'][number];

/** One side's output, cut until "show all". */
function Output({ value, missing }: { value: unknown; missing?: boolean }) {
  const [all, setAll] = useState(false);
  if (missing) return <div className="cmp-out empty" />;
  const text = canonicalText(value ?? null);
  if (!text) return <p className="muted small">No output.</p>;
  const shown = all ? text : text.slice(0, PREVIEW_CHARS);
  return (
    <div>
      <pre className="output cmp-out" data-testid="cmp-output">
        {shown}
      </pre>
      {shown.length < text.length && (
        <button type="button" onClick={() => setAll(true)}>
          Show all ({text.length.toLocaleString()} characters)
        </button>
      )}
    </div>
  );
}

/** Both outputs with their differences marked; the diff is computed once the pair is in view. */
function DiffPair({ a, b }: { a: unknown; b: unknown }) {
  const ref = useRef<HTMLDivElement>(null);
  const [diff, setDiff] = useState<Diff>();
  const [all, setAll] = useState(false);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const compute = () => {
      timer = setTimeout(() => setDiff(diffValues(a ?? null, b ?? null)), 0);
    };
    if (typeof IntersectionObserver === 'undefined') {
      compute();
      return () => clearTimeout(timer);
    }
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) {
        io.disconnect();
        compute();
      }
    });
    io.observe(el);
    return () => {
      io.disconnect();
      clearTimeout(timer);
    };
  }, [a, b]);
  if (!diff)
    return (
      <div ref={ref} className="cmp-pending">
        <p className="muted small">Computing the differences…</p>
      </div>
    );
  // Cut, each side starts shortly before the first change and stops at the preview's length.
  const side = (op: 'add' | 'del') => {
    const parts = diff.parts.filter((p) => p.op !== op);
    if (all) return { parts, skipped: 0, cut: false };
    const from = fromFirstChange(parts);
    return { ...cutParts(from.parts, PREVIEW_CHARS), skipped: from.skipped };
  };
  const l = side('add');
  const r = side('del');
  return (
    <>
      <Marked parts={l.parts} side="A" skipped={l.skipped} />
      <Marked parts={r.parts} side="B" skipped={r.skipped} />
      <p className="small muted cmp-diffnote" data-testid="cmp-diffnote">
        {diff.removed.toLocaleString()} characters only in A, {diff.added.toLocaleString()} only in B
        {diff.coarse && ' (too different to match in detail: each side is marked whole)'}
        {(l.cut || r.cut || l.skipped > 0) && (
          <>
            {' '}
            <button type="button" onClick={() => setAll(true)}>
              Show all
            </button>
          </>
        )}
      </p>
    </>
  );
}

function Marked({ parts, side, skipped }: { parts: Part[]; side: string; skipped: number }) {
  if (!parts.length) return <p className="muted small">No output.</p>;
  return (
    <pre className="output cmp-out" data-testid="cmp-output" data-side={side}>
      {skipped > 0 && <span className="cmp-skipped">… {skipped.toLocaleString()} characters the same before the first difference …{'\n'}</span>}
      {parts.map((p, i) => (p.op === 'del' ? <del key={i}>{p.text}</del> : p.op === 'add' ? <ins key={i}>{p.text}</ins> : <span key={i}>{p.text}</span>))}
    </pre>
  );
}

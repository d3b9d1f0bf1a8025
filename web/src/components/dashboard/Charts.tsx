// The dashboard's charts: small SVG drawings of our own (no chart library), every value printed
// next to its bar so nothing needs hovering, coloured from the theme's variables (light and
// dark), each chart a focusable figure whose label reads its values out.
import type { Bar, StackedColumn } from '../../lib/dashboard';

/** A figure with a title; `summary` is what a screen reader hears on focus. */
function Figure({ title, summary, children, testid, wide }: { title: string; summary: string; children: React.ReactNode; testid: string; wide?: boolean }) {
  return (
    <figure className={`chart card${wide ? ' wide' : ''}`} tabIndex={0} aria-label={`${title}: ${summary}`} data-testid={testid}>
      <figcaption>{title}</figcaption>
      {children}
    </figure>
  );
}

function Empty({ text }: { text: string }) {
  return <p className="muted small chart-empty">{text}</p>;
}

/** Horizontal bars: the label, the bar (its length against the largest), the value. */
export function BarChart({ title, bars, empty, testid, max }: { title: string; bars: Bar[]; empty: string; testid: string; max?: number }) {
  const top = max ?? Math.max(1, ...bars.map((b) => b.value));
  return (
    <Figure title={title} summary={bars.length ? bars.map((b) => `${b.label} ${b.text}`).join(', ') : empty} testid={testid}>
      {bars.length === 0 ? (
        <Empty text={empty} />
      ) : (
        <div className="bars">
          {bars.map((b) => (
            <div className="bar-row" key={b.label} data-testid="bar">
              <span className="bar-label" title={b.label}>
                {b.label}
              </span>
              <svg className="bar-track" width="100%" height="14" aria-hidden="true">
                <rect className="track" x="0" y="0" width="100%" height="14" rx="3" />
                <rect className={`fill ${b.tone ?? ''}`} x="0" y="0" width={`${Math.max(1, Math.min(100, (b.value / top) * 100))}%`} height="14" rx="3" />
              </svg>
              <span className="bar-value">{b.text}</span>
            </div>
          ))}
        </div>
      )}
    </Figure>
  );
}

/** Pairs of bars (p50 and p95) per row, on one scale. */
export function PairChart({ title, rows, empty, testid }: { title: string; rows: { label: string; p50: Bar; p95: Bar }[]; empty: string; testid: string }) {
  const top = Math.max(1, ...rows.map((r) => r.p95.value));
  return (
    <Figure title={title} summary={rows.length ? rows.map((r) => `${r.label} p50 ${r.p50.text}, p95 ${r.p95.text}`).join('; ') : empty} testid={testid}>
      {rows.length === 0 ? (
        <Empty text={empty} />
      ) : (
        <div className="pairs">
          {rows.map((r) => (
            <div className="pair" key={r.label}>
              <div className="pair-label" title={r.label}>
                {r.label}
              </div>
              {[r.p50, r.p95].map((b) => (
                <div className="bar-row" key={b.label}>
                  <span className="bar-label muted">{b.label}</span>
                  <svg className="bar-track" width="100%" height="10" aria-hidden="true">
                    <rect className="track" x="0" y="0" width="100%" height="10" rx="3" />
                    <rect className={`fill ${b.label === 'p95' ? 'p95' : 'p50'}`} x="0" y="0" width={`${Math.max(1, (b.value / top) * 100)}%`} height="10" rx="3" />
                  </svg>
                  <span className="bar-value">{b.text}</span>
                </div>
              ))}
            </div>
          ))}
        </div>
      )}
    </Figure>
  );
}

/** Columns over time, stacked by status, each total printed above its column. */
export function ColumnsChart({ title, columns, testid }: { title: string; columns: StackedColumn[]; testid: string }) {
  const H = 120;
  const top = Math.max(1, ...columns.map((c) => c.total));
  const n = Math.max(1, columns.length);
  const w = 100 / n;
  const total = columns.reduce((t, c) => t + c.total, 0);
  return (
    <Figure title={title} summary={`${total} runs; ${columns.filter((c) => c.total > 0).map((c) => `${c.label}: ${c.total}`).join(', ') || 'none'}`} testid={testid} wide>
      <svg className="columns" width="100%" height={H + 40} aria-hidden="true">
        <line className="axis" x1="0" x2="100%" y1={H + 16} y2={H + 16} />
        {columns.map((c, i) => {
          let y = H + 16;
          return (
            <g key={i}>
              {c.parts.map((p) => {
                const h = Math.max(2, (p.value / top) * H);
                y -= h;
                return <rect key={p.key} className={`fill s-${p.key}`} x={`${i * w + w * 0.15}%`} y={y} width={`${w * 0.7}%`} height={h} />;
              })}
              {c.total > 0 && (
                <text className="col-value" x={`${i * w + w / 2}%`} y={y - 4} textAnchor="middle">
                  {c.total}
                </text>
              )}
              {(i % 2 === 0 || n <= 6) && (
                <text className="col-label" x={`${i * w + w / 2}%`} y={H + 32} textAnchor="middle">
                  {c.label}
                </text>
              )}
            </g>
          );
        })}
      </svg>
    </Figure>
  );
}

/** One figure, large, with a ring showing it as a share. */
export function RateChart({ title, rate, detail, testid }: { title: string; rate: number | null | undefined; detail: string; testid: string }) {
  const r = 30;
  const c = 2 * Math.PI * r;
  const text = rate == null ? '—' : `${Math.round(rate * 1000) / 10}%`;
  return (
    <Figure title={title} summary={`${text}, ${detail}`} testid={testid}>
      <div className="rate">
        <svg width="80" height="80" viewBox="0 0 80 80" aria-hidden="true">
          <circle className="track-ring" cx="40" cy="40" r={r} />
          {rate != null && (
            <circle className={`ring ${rate >= 0.9 ? 's-succeeded' : rate >= 0.5 ? 's-waiting' : 's-failed'}`} cx="40" cy="40" r={r} strokeDasharray={`${c * rate} ${c}`} transform="rotate(-90 40 40)" />
          )}
        </svg>
        <div>
          <div className="rate-value" data-testid="rate-value">
            {text}
          </div>
          <div className="muted small">{detail}</div>
        </div>
      </div>
    </Figure>
  );
}

// The side panel's structured editors, for values a form fits better than JSON: a switch's
// cases (rows of `when` + `goto`, added, removed and reordered), an ordered list of ids
// picked from a set (a join's priority), and name -> text pairs (a sandbox's environment and
// files, the document's outputs). Each row says when the validator names it.
import { useEffect, useRef, useState } from 'react';

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown) => (typeof v === 'string' ? v : v === undefined || v === null ? '' : JSON.stringify(v));

export interface FormProps {
  id: string;
  /** The field's path (`switch.cases`): rows look up their problems under it. */
  path: string;
  label: string;
  value: unknown;
  readOnly: boolean;
  /** Problems by field path, for the rows. */
  problemsAt: Map<string, string[]>;
  onChange(value: unknown): void;
}

/** Problems of one row: keys `PATH[i]` and below. */
function rowProblems(all: Map<string, string[]>, path: string, i: number, field?: string): string[] {
  const at = `${path}[${i}]`;
  return [...all]
    .filter(([k]) => (field ? k === `${at}.${field}` || k.startsWith(`${at}.${field}.`) : k === at))
    .flatMap(([, v]) => v);
}

function move<T>(list: T[], i: number, by: number): T[] {
  const j = i + by;
  if (j < 0 || j >= list.length) return list;
  const out = [...list];
  [out[i], out[j]] = [out[j], out[i]];
  return out;
}

/** Up, down and remove buttons of row `i`. */
function RowButtons({ what, i, n, readOnly, onMove, onRemove }: { what: string; i: number; n: number; readOnly: boolean; onMove(by: number): void; onRemove(): void }) {
  if (readOnly) return null;
  return (
    <span className="bf-buttons">
      <button type="button" className="icon" aria-label={`Move ${what} up`} title="Move up" disabled={i === 0} onClick={() => onMove(-1)}>
        ↑
      </button>
      <button type="button" className="icon" aria-label={`Move ${what} down`} title="Move down" disabled={i === n - 1} onClick={() => onMove(1)}>
        ↓
      </button>
      <button type="button" className="icon" aria-label={`Remove ${what}`} title="Remove" onClick={onRemove}>
        ✕
      </button>
    </span>
  );
}

/** A switch's cases: tried in order, the first whose `when` holds is taken. */
export function CasesEditor(p: FormProps & { targets: string[] }) {
  const cases = Array.isArray(p.value) ? p.value : [];
  const set = (next: unknown[]) => p.onChange(next);
  const patch = (i: number, k: 'when' | 'goto', v: string) => set(cases.map((c, j) => (j === i ? { ...(isPlain(c) ? c : {}), [k]: v } : c)));
  const options = ['end', ...p.targets];
  return (
    <div className="bf-rows" id={p.id} role="group" aria-label={p.label} data-testid="cases">
      {cases.length === 0 && <p className="muted small">No case yet: the switch always takes its default.</p>}
      {cases.map((c, i) => {
        const row = isPlain(c) ? c : {};
        const when = str(row.when);
        const goto = str(row.goto);
        const bad = { when: rowProblems(p.problemsAt, p.path, i, 'when'), goto: rowProblems(p.problemsAt, p.path, i, 'goto'), row: rowProblems(p.problemsAt, p.path, i) };
        const n = i + 1;
        return (
          <div key={i} className={`bf-row${bad.when.length || bad.goto.length || bad.row.length ? ' invalid' : ''}`} data-testid={`case-${n}`}>
            <span className="bf-n mono small" aria-hidden>
              {n}
            </span>
            <input
              className="mono grow"
              aria-label={`Case ${n}: when`}
              placeholder="expression"
              value={when}
              disabled={p.readOnly}
              aria-invalid={bad.when.length > 0 || undefined}
              onChange={(e) => patch(i, 'when', e.target.value)}
            />
            <select aria-label={`Case ${n}: go to`} value={goto} disabled={p.readOnly} aria-invalid={bad.goto.length > 0 || undefined} onChange={(e) => patch(i, 'goto', e.target.value)}>
              {!options.includes(goto) && <option value={goto}>{goto || '(pick a step)'}</option>}
              {options.map((o) => (
                <option key={o}>{o}</option>
              ))}
            </select>
            <RowButtons what={`case ${n}`} i={i} n={cases.length} readOnly={p.readOnly} onMove={(by) => set(move(cases, i, by))} onRemove={() => set(cases.filter((_, j) => j !== i))} />
          </div>
        );
      })}
      {!p.readOnly && (
        <button type="button" onClick={() => set([...cases, { when: '', goto: p.targets[0] ?? 'end' }])}>
          Add case
        </button>
      )}
    </div>
  );
}

/** An ordered list of ids, each picked from `options` (a join's `priority`: highest first). */
export function IdListEditor(p: FormProps & { options: string[] }) {
  const ids = Array.isArray(p.value) ? p.value.map(str) : [];
  const set = (next: string[]) => p.onChange(next.length ? next : undefined);
  const left = p.options.filter((o) => !ids.includes(o));
  return (
    <div className="bf-rows" id={p.id} role="group" aria-label={p.label}>
      {ids.length === 0 && <p className="muted small">None: document order.</p>}
      {ids.map((x, i) => {
        const bad = rowProblems(p.problemsAt, p.path, i);
        return (
          <div key={`${x}-${i}`} className={`bf-row${bad.length ? ' invalid' : ''}`}>
            <span className="bf-n mono small" aria-hidden>
              {i + 1}
            </span>
            <span className={`mono grow${p.options.includes(x) ? '' : ' bad'}`}>{x}</span>
            <RowButtons what={x} i={i} n={ids.length} readOnly={p.readOnly} onMove={(by) => set(move(ids, i, by))} onRemove={() => set(ids.filter((_, j) => j !== i))} />
          </div>
        );
      })}
      {!p.readOnly && left.length > 0 && (
        <select aria-label={`Add to ${p.label}`} value="" onChange={(e) => e.target.value && set([...ids, e.target.value])}>
          <option value="">Add…</option>
          {left.map((o) => (
            <option key={o}>{o}</option>
          ))}
        </select>
      )}
    </div>
  );
}

type Pair = { k: string; v: string };
const pairsOf = (v: unknown): Pair[] => (isPlain(v) ? Object.entries(v).map(([k, x]) => ({ k, v: str(x) })) : []);
const objectOf = (rows: Pair[]) => Object.fromEntries(rows.map((r) => [r.k, r.v]));

/**
 * Name -> text pairs. The rows are a draft: one with an empty or repeated name is shown with
 * its error and the value is not changed until it is fixed.
 */
export function PairsEditor(p: FormProps & { keyLabel: string; valueLabel: string; multiline?: boolean }) {
  const [rows, setRows] = useState<Pair[]>(() => pairsOf(p.value));
  const [error, setError] = useState<string>();
  const last = useRef(JSON.stringify(p.value ?? null));
  useEffect(() => {
    // An outside change (undo, the YAML tab) replaces the draft.
    const now = JSON.stringify(p.value ?? null);
    if (now !== last.current) {
      last.current = now;
      setRows(pairsOf(p.value));
      setError(undefined);
    }
  }, [p.value]);
  const change = (next: Pair[]) => {
    setRows(next);
    const names = next.map((r) => r.k);
    const empty = names.findIndex((k) => k.trim() === '');
    const twice = names.find((k, i) => names.indexOf(k) !== i);
    const why = empty >= 0 ? `row ${empty + 1} has no ${p.keyLabel.toLowerCase()}` : twice !== undefined ? `\`${twice}\` is named twice` : undefined;
    setError(why);
    if (why) return;
    const value = next.length ? objectOf(next) : undefined;
    last.current = JSON.stringify(value ?? null);
    p.onChange(value);
  };
  const patch = (i: number, r: Partial<Pair>) => change(rows.map((x, j) => (j === i ? { ...x, ...r } : x)));
  return (
    <div className="bf-rows" id={p.id} role="group" aria-label={p.label}>
      {rows.map((r, i) => {
        const bad = [...p.problemsAt].some(([k]) => k.startsWith(`${p.path}.${r.k}`));
        const n = i + 1;
        return (
          <div key={i} className={`bf-row${bad ? ' invalid' : ''}${p.multiline ? ' tall' : ''}`}>
            <input className="mono" aria-label={`${p.keyLabel} ${n}`} placeholder={p.keyLabel} value={r.k} disabled={p.readOnly} onChange={(e) => patch(i, { k: e.target.value })} />
            {p.multiline ? (
              <textarea className="mono grow" rows={3} aria-label={`${p.valueLabel} ${n}`} value={r.v} disabled={p.readOnly} onChange={(e) => patch(i, { v: e.target.value })} spellCheck={false} />
            ) : (
              <input className="mono grow" aria-label={`${p.valueLabel} ${n}`} placeholder={p.valueLabel} value={r.v} disabled={p.readOnly} onChange={(e) => patch(i, { v: e.target.value })} />
            )}
            {!p.readOnly && (
              <button type="button" className="icon" aria-label={`Remove ${r.k || `row ${n}`}`} title="Remove" onClick={() => change(rows.filter((_, j) => j !== i))}>
                ✕
              </button>
            )}
          </div>
        );
      })}
      {error && (
        <p className="field-error" role="alert">
          Not applied: {error}
        </p>
      )}
      {!p.readOnly && (
        <button type="button" onClick={() => setRows([...rows, { k: '', v: '' }])}>
          Add {p.keyLabel.toLowerCase()}
        </button>
      )}
    </div>
  );
}

/** `on_error`: fail (the default), continue, or go to a step of the same list. */
export function OnErrorEditor(p: { id: string; value: unknown; readOnly: boolean; invalid: boolean; described?: string; targets: string[]; onChange(v: unknown): void }) {
  const text = str(p.value).trim();
  const goto = text.startsWith('goto') ? text.slice(4).trim() : undefined;
  const mode = goto !== undefined ? 'goto' : text;
  const known = mode === '' || mode === 'fail' || mode === 'continue' || mode === 'goto';
  const targets = goto && !p.targets.includes(goto) ? [goto, ...p.targets] : p.targets;
  return (
    <span className="bf-pair">
      <select
        id={p.id}
        value={mode === 'fail' ? '' : known ? mode : text}
        disabled={p.readOnly}
        aria-invalid={p.invalid || undefined}
        aria-describedby={p.described}
        onChange={(e) => {
          const m = e.target.value;
          p.onChange(m === '' ? undefined : m === 'goto' ? `goto ${p.targets[0] ?? ''}`.trim() : m);
        }}
      >
        <option value="">fail (default)</option>
        <option value="continue">continue with the next step</option>
        <option value="goto">go to a step</option>
        {!known && <option value={text}>{text}</option>}
      </select>
      {goto !== undefined && (
        <select aria-label="On error: go to" value={goto} disabled={p.readOnly} aria-invalid={p.invalid || undefined} onChange={(e) => p.onChange(`goto ${e.target.value}`)}>
          {!goto && <option value="">(pick a step)</option>}
          {targets.map((t) => (
            <option key={t}>{t}</option>
          ))}
        </select>
      )}
    </span>
  );
}

const INPUT_TYPES = ['string', 'number', 'integer', 'boolean', 'array', 'object'] as const;
type InputRow = { name: string; type: string; dflt: string; description: string; rest: Plain };

const inputRows = (v: unknown): InputRow[] =>
  isPlain(v)
    ? Object.entries(v).map(([name, spec]) => {
        const s = isPlain(spec) ? spec : {};
        const { type, default: d, description, ...rest } = s;
        return { name, type: str(type) || 'string', dflt: d === undefined ? '' : typeof d === 'string' ? d : JSON.stringify(d), description: str(description), rest };
      })
    : [];

/** A default as typed, read for its type: numbers and JSON parsed when they parse (else kept for the validator to name). */
function defaultOf(type: string, text: string): unknown {
  if (text === '') return undefined;
  if (type === 'string') return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The document's inputs: rows of name, type, default and description (an `enum` is kept). */
export function InputsEditor(p: FormProps) {
  const [rows, setRows] = useState<InputRow[]>(() => inputRows(p.value));
  const [error, setError] = useState<string>();
  const last = useRef(JSON.stringify(p.value ?? null));
  useEffect(() => {
    const now = JSON.stringify(p.value ?? null);
    if (now !== last.current) {
      last.current = now;
      setRows(inputRows(p.value));
      setError(undefined);
    }
  }, [p.value]);
  const change = (next: InputRow[]) => {
    setRows(next);
    const names = next.map((r) => r.name);
    const empty = names.findIndex((k) => k.trim() === '');
    const twice = names.find((k, i) => names.indexOf(k) !== i);
    const why = empty >= 0 ? `input ${empty + 1} has no name` : twice !== undefined ? `\`${twice}\` is named twice` : undefined;
    setError(why);
    if (why) return;
    const value = next.length
      ? Object.fromEntries(
          next.map((r) => {
            const spec: Plain = { type: r.type, ...r.rest };
            const d = defaultOf(r.type, r.dflt);
            if (d !== undefined) spec.default = d;
            if (r.description) spec.description = r.description;
            return [r.name, spec];
          }),
        )
      : undefined;
    last.current = JSON.stringify(value ?? null);
    p.onChange(value);
  };
  const patch = (i: number, r: Partial<InputRow>) => change(rows.map((x, j) => (j === i ? { ...x, ...r } : x)));
  return (
    <div className="bf-rows" id={p.id} role="group" aria-label={p.label}>
      {rows.map((r, i) => {
        const bad = [...p.problemsAt].some(([k]) => k === `${p.path}.${r.name}` || k.startsWith(`${p.path}.${r.name}.`));
        const n = i + 1;
        return (
          <div key={i} className={`bf-input${bad ? ' invalid' : ''}`} data-testid={`input-${n}`}>
            <div className="bf-row">
              <input className="mono grow" aria-label={`Input ${n}: name`} placeholder="name" value={r.name} disabled={p.readOnly} onChange={(e) => patch(i, { name: e.target.value })} />
              <select aria-label={`Input ${n}: type`} value={r.type} disabled={p.readOnly} onChange={(e) => patch(i, { type: e.target.value })}>
                {!(INPUT_TYPES as readonly string[]).includes(r.type) && <option>{r.type}</option>}
                {INPUT_TYPES.map((t) => (
                  <option key={t}>{t}</option>
                ))}
              </select>
              {!p.readOnly && (
                <button type="button" className="icon" aria-label={`Remove input ${r.name || n}`} title="Remove" onClick={() => change(rows.filter((_, j) => j !== i))}>
                  ✕
                </button>
              )}
            </div>
            <div className="bf-row">
              {r.type === 'boolean' ? (
                <select className="grow" aria-label={`Input ${n}: default`} value={r.dflt} disabled={p.readOnly} onChange={(e) => patch(i, { dflt: e.target.value })}>
                  <option value="">(required: no default)</option>
                  <option>true</option>
                  <option>false</option>
                </select>
              ) : (
                <input
                  className="mono grow"
                  aria-label={`Input ${n}: default`}
                  placeholder={r.type === 'array' || r.type === 'object' ? 'default as JSON (none: required)' : 'default (none: required)'}
                  value={r.dflt}
                  disabled={p.readOnly}
                  onChange={(e) => patch(i, { dflt: e.target.value })}
                />
              )}
            </div>
            <div className="bf-row">
              <input className="grow" aria-label={`Input ${n}: description`} placeholder="description" value={r.description} disabled={p.readOnly} onChange={(e) => patch(i, { description: e.target.value })} />
            </div>
          </div>
        );
      })}
      {error && (
        <p className="field-error" role="alert">
          Not applied: {error}
        </p>
      )}
      {!p.readOnly && (
        <button type="button" onClick={() => setRows([...rows, { name: '', type: 'string', dflt: '', description: '', rest: {} }])}>
          Add input
        </button>
      )}
    </div>
  );
}

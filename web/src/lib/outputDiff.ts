// The differences between two outputs, for the compare page: text is compared word by word
// (line by line when long), JSON as its indented text with sorted keys (so key order is not a
// difference). Myers' algorithm on what is left once the common start and end are cut, with a
// bound on the work: two big values that differ everywhere come back as one removal and one
// addition (`coarse`) instead of freezing the page.

export type Op = 'same' | 'del' | 'add';
export interface Part {
  op: Op;
  text: string;
}
export interface Diff {
  parts: Part[];
  /** The work bound was hit: the middle is shown as removed then added, not in detail. */
  coarse: boolean;
  /** Characters removed and added. */
  removed: number;
  added: number;
}

/** Sorted keys at every level, so `{"a":1,"b":2}` and `{"b":2,"a":1}` read the same. */
function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v as object).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

/** A value as the compare page compares it: a string as is, anything else as indented JSON with sorted keys. */
export function canonicalText(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  return JSON.stringify(sortKeys(v), null, 2) ?? String(v);
}

/** Outputs the same as values (strings as text, other values as JSON with sorted keys). */
export const sameValue = (a: unknown, b: unknown) => canonicalText(a) === canonicalText(b) && typeof a === typeof b;

/** Words, runs of spaces and single other characters (short text); lines, each with its newline (long text). */
export function tokens(text: string, byLine: boolean): string[] {
  if (byLine) return text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
  return text.match(/\w+|\s+|[^\w\s]/g) ?? [];
}

/** At or below this many characters, text is compared word by word. */
export const WORDS_UP_TO = 20_000;
/** The most work (edit-graph steps) a diff may do. */
export const MAX_WORK = 4_000_000;

/** Myers' shortest edit script of two token lists, or null when it would take over `maxWork` steps. */
function myers(a: string[], b: string[], maxWork: number): Part[] | null {
  const n = a.length;
  const m = b.length;
  const max = n + m;
  const offset = max + 1;
  const v = new Int32Array(2 * max + 3);
  // The frontier before each round d, for k in -d-1..d+1 only (memory grows with d², not d·(n+m)).
  const trace: Int32Array[] = [];
  let work = 0;
  let found = -1;
  outer: for (let d = 0; d <= max; d++) {
    trace.push(v.slice(offset - d - 1, offset + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[offset + k - 1] < v[offset + k + 1]) ? v[offset + k + 1] : v[offset + k - 1] + 1;
      let y = x - k;
      const x0 = x;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[offset + k] = x;
      work += 1 + x - x0 + (2 * d + 3) / (d + 1);
      if (work > maxWork) return null;
      if (x >= n && y >= m) {
        found = d;
        break outer;
      }
    }
  }
  // Walk back through the saved frontiers.
  const rev: Part[] = [];
  let x = n;
  let y = m;
  for (let d = found; d > 0; d--) {
    const vv = trace[d];
    const at = (i: number) => vv[i + d + 1];
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const px = at(prevK);
    const py = px - prevK;
    while (x > px && y > py) rev.push({ op: 'same', text: a[--x] }), y--;
    if (x === px) rev.push({ op: 'add', text: b[--y] });
    else rev.push({ op: 'del', text: a[--x] });
  }
  while (x > 0 && y > 0) rev.push({ op: 'same', text: a[--x] }), y--;
  return rev.reverse();
}

/** Joins neighbouring parts of one kind. */
function merge(parts: Part[]): Part[] {
  const out: Part[] = [];
  for (const p of parts) {
    if (!p.text) continue;
    const last = out[out.length - 1];
    if (last && last.op === p.op) last.text += p.text;
    else out.push({ ...p });
  }
  return out;
}

/** The differences from `a` to `b` (two texts). */
export function diffText(a: string, b: string, maxWork = MAX_WORK): Diff {
  let start = 0;
  const short = Math.min(a.length, b.length);
  while (start < short && a.charCodeAt(start) === b.charCodeAt(start)) start++;
  let end = 0;
  while (end < short - start && a.charCodeAt(a.length - 1 - end) === b.charCodeAt(b.length - 1 - end)) end++;
  // Cut at a token boundary so a word is not split between "same" and a change.
  const wordChar = /\w/;
  while (start > 0 && wordChar.test(a[start - 1]) && (wordChar.test(a[start] ?? '') || wordChar.test(b[start] ?? ''))) start--;
  while (end > 0 && wordChar.test(a[a.length - end]) && (wordChar.test(a[a.length - end - 1] ?? '') || wordChar.test(b[b.length - end - 1] ?? ''))) end--;
  const midA = a.slice(start, a.length - end);
  const midB = b.slice(start, b.length - end);
  const byLine = Math.max(midA.length, midB.length) > WORDS_UP_TO;
  const script = myers(tokens(midA, byLine), tokens(midB, byLine), maxWork);
  const middle: Part[] = script ?? [
    { op: 'del', text: midA },
    { op: 'add', text: midB },
  ];
  const parts = merge([{ op: 'same', text: a.slice(0, start) }, ...middle, { op: 'same', text: a.slice(a.length - end) }]);
  let removed = 0;
  let added = 0;
  for (const p of parts) {
    if (p.op === 'del') removed += p.text.length;
    if (p.op === 'add') added += p.text.length;
  }
  return { parts, coarse: script === null, removed, added };
}

/** The differences between two outputs (text or JSON). */
export const diffValues = (a: unknown, b: unknown, maxWork = MAX_WORK): Diff => diffText(canonicalText(a), canonicalText(b), maxWork);

/**
 * A side's parts starting `context` characters before its first change (when the change is
 * further in than that), so a cut view shows the change, not the same start; and how many
 * characters were skipped.
 */
export function fromFirstChange(parts: Part[], context = 300): { parts: Part[]; skipped: number } {
  const first = parts[0];
  if (!first || first.op !== 'same' || parts.length === 1 || first.text.length <= context * 2) return { parts, skipped: 0 };
  const skipped = first.text.length - context;
  return { parts: [{ op: 'same', text: first.text.slice(skipped) }, ...parts.slice(1)], skipped };
}

/**
 * The first `limit` characters of a diff's parts (what is drawn until "show all"), and
 * whether that cut anything.
 */
export function cutParts(parts: Part[], limit: number): { parts: Part[]; cut: boolean } {
  const out: Part[] = [];
  let left = limit;
  for (const p of parts) {
    if (left <= 0) return { parts: out, cut: true };
    if (p.text.length <= left) {
      out.push(p);
      left -= p.text.length;
    } else {
      out.push({ op: p.op, text: p.text.slice(0, left) });
      return { parts: out, cut: true };
    }
  }
  return { parts: out, cut: false };
}

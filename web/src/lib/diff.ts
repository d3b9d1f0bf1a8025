// A line diff of two texts laid out side by side: the agent registry's "compare two versions".
// The server's diff (`GET /agents/{name}/diff`) gives the changed fields and a unified text;
// the side-by-side rows are computed here from the two versions' files as written.

export type RowKind = 'same' | 'changed' | 'added' | 'removed';

export interface Side {
  /** 1-based line number in its text. */
  n: number;
  text: string;
}

export interface Row {
  kind: RowKind;
  /** The older text's line (absent: an added line). */
  left?: Side;
  /** The newer text's line (absent: a removed line). */
  right?: Side;
}

type Op = { op: 'same' | 'del' | 'add'; a?: number; b?: number };

/** Splits a text into lines (a final newline makes no empty last line). */
export function lines(text: string): string[] {
  if (text === '') return [];
  const l = text.split(/\r?\n/);
  if (l[l.length - 1] === '') l.pop();
  return l;
}

/**
 * The edit script from `a` to `b` (longest common subsequence). Common head and tail lines
 * are matched first, so the quadratic table covers only the part that differs.
 */
function script(a: string[], b: string[]): Op[] {
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const ops: Op[] = [];
  for (let i = 0; i < head; i++) ops.push({ op: 'same', a: i, b: i });
  const am = a.slice(head, a.length - tail);
  const bm = b.slice(head, b.length - tail);
  const n = am.length;
  const m = bm.length;
  // lcs[i][j]: the longest common subsequence of am[i..] and bm[j..].
  const lcs: Uint32Array[] = [];
  for (let i = 0; i <= n; i++) lcs.push(new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = am[i] === bm[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && am[i] === bm[j]) {
      ops.push({ op: 'same', a: head + i++, b: head + j++ });
    } else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) {
      ops.push({ op: 'add', b: head + j++ });
    } else {
      ops.push({ op: 'del', a: head + i++ });
    }
  }
  for (let k = 0; k < tail; k++) ops.push({ op: 'same', a: a.length - tail + k, b: b.length - tail + k });
  return ops;
}

/**
 * The rows of a side-by-side diff: unchanged lines face each other; within a run of changes,
 * removed and added lines are paired as `changed` rows, and what is left over is `removed`
 * (left only) or `added` (right only).
 */
export function sideBySide(older: string, newer: string): Row[] {
  const a = lines(older);
  const b = lines(newer);
  const rows: Row[] = [];
  const ops = script(a, b);
  let k = 0;
  while (k < ops.length) {
    const o = ops[k];
    if (o.op === 'same') {
      rows.push({ kind: 'same', left: { n: o.a! + 1, text: a[o.a!] }, right: { n: o.b! + 1, text: b[o.b!] } });
      k++;
      continue;
    }
    const dels: number[] = [];
    const adds: number[] = [];
    while (k < ops.length && ops[k].op !== 'same') {
      if (ops[k].op === 'del') dels.push(ops[k].a!);
      else adds.push(ops[k].b!);
      k++;
    }
    for (let p = 0; p < Math.max(dels.length, adds.length); p++) {
      const left = p < dels.length ? { n: dels[p] + 1, text: a[dels[p]] } : undefined;
      const right = p < adds.length ? { n: adds[p] + 1, text: b[adds[p]] } : undefined;
      rows.push({ kind: left && right ? 'changed' : left ? 'removed' : 'added', left, right });
    }
  }
  return rows;
}

/** How many lines differ: removed (left side) and added (right side). */
export function diffStats(rows: Row[]): { removed: number; added: number } {
  let removed = 0;
  let added = 0;
  for (const r of rows) {
    if (r.kind === 'same') continue;
    if (r.left) removed++;
    if (r.right) added++;
  }
  return { removed, added };
}

// Two versions of a file side by side: unchanged lines face each other, changed lines are
// marked on both sides, removed lines on the left only and added ones on the right only.
// Long runs of unchanged lines fold to a few lines of context (shown on request).
import { Fragment, useMemo, useState } from 'react';
import { diffStats, sideBySide, type Row } from '../../lib/diff';

const CONTEXT = 3;

type Block = { kind: 'rows'; rows: Row[] } | { kind: 'fold'; rows: Row[]; id: number };

/** Folds runs of unchanged rows longer than twice the context. */
export function fold(rows: Row[], context = CONTEXT): Block[] {
  const blocks: Block[] = [];
  let i = 0;
  let id = 0;
  while (i < rows.length) {
    if (rows[i].kind !== 'same') {
      const start = i;
      while (i < rows.length && rows[i].kind !== 'same') i++;
      blocks.push({ kind: 'rows', rows: rows.slice(start, i) });
      continue;
    }
    const start = i;
    while (i < rows.length && rows[i].kind === 'same') i++;
    const run = rows.slice(start, i);
    const keepHead = start === 0 ? 0 : context;
    const keepTail = i === rows.length ? 0 : context;
    if (run.length <= keepHead + keepTail + 1) {
      blocks.push({ kind: 'rows', rows: run });
    } else {
      if (keepHead) blocks.push({ kind: 'rows', rows: run.slice(0, keepHead) });
      blocks.push({ kind: 'fold', rows: run.slice(keepHead, run.length - keepTail), id: id++ });
      if (keepTail) blocks.push({ kind: 'rows', rows: run.slice(run.length - keepTail) });
    }
  }
  return blocks;
}

export function DiffView({ older, newer, olderLabel, newerLabel }: { older: string; newer: string; olderLabel: string; newerLabel: string }) {
  const rows = useMemo(() => sideBySide(older, newer), [older, newer]);
  const stats = diffStats(rows);
  const [open, setOpen] = useState<Set<number>>(new Set());
  const blocks = useMemo(() => fold(rows), [rows]);
  if (stats.added === 0 && stats.removed === 0) {
    return (
      <p className="muted" data-testid="diff-same">
        {olderLabel} and {newerLabel} are the same file.
      </p>
    );
  }
  return (
    <div className="diff" data-testid="diff">
      <p className="small muted" data-testid="diff-stats">
        {stats.removed} line{stats.removed === 1 ? '' : 's'} removed or changed in {olderLabel}, {stats.added} added or changed in {newerLabel}
      </p>
      <table className="diff-table">
        <colgroup>
          <col className="ln" />
          <col />
          <col className="ln" />
          <col />
        </colgroup>
        <thead>
          <tr>
            <th scope="col" colSpan={2}>
              {olderLabel}
            </th>
            <th scope="col" colSpan={2}>
              {newerLabel}
            </th>
          </tr>
        </thead>
        <tbody>
          {blocks.map((b, bi) =>
            b.kind === 'fold' && !open.has(b.id) ? (
              <tr key={`f${b.id}`} className="d-fold">
                <td colSpan={4}>
                  <button type="button" className="link" onClick={() => setOpen(new Set(open).add(b.id))}>
                    Show {b.rows.length} unchanged lines
                  </button>
                </td>
              </tr>
            ) : (
              <Fragment key={bi}>
                {b.rows.map((r, ri) => (
                  <tr key={ri} className={`d-${r.kind}`} data-kind={r.kind}>
                    <td className="ln">{r.left?.n ?? ''}</td>
                    <td className={r.left && r.kind !== 'same' ? 'd-old' : undefined}>
                      {r.left && r.kind !== 'same' && <span className="sr-only">removed: </span>}
                      <code>{r.left?.text ?? ''}</code>
                    </td>
                    <td className="ln">{r.right?.n ?? ''}</td>
                    <td className={r.right && r.kind !== 'same' ? 'd-new' : undefined}>
                      {r.right && r.kind !== 'same' && <span className="sr-only">added: </span>}
                      <code>{r.right?.text ?? ''}</code>
                    </td>
                  </tr>
                ))}
              </Fragment>
            ),
          )}
        </tbody>
      </table>
    </div>
  );
}

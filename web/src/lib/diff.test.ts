import { describe, expect, it } from 'vitest';
import { diffStats, lines, sideBySide } from './diff';

const kinds = (rows: ReturnType<typeof sideBySide>) => rows.map((r) => r.kind);

describe('sideBySide', () => {
  it('pairs unchanged lines and marks a changed line on both sides', () => {
    const rows = sideBySide('name: a\nrole: old\nmodel: m\n', 'name: a\nrole: new\nmodel: m\n');
    expect(kinds(rows)).toEqual(['same', 'changed', 'same']);
    expect(rows[1]).toEqual({ kind: 'changed', left: { n: 2, text: 'role: old' }, right: { n: 2, text: 'role: new' } });
    expect(diffStats(rows)).toEqual({ removed: 1, added: 1 });
  });

  it('shows added and removed lines on one side only, with each side numbered on its own', () => {
    const rows = sideBySide('a\nb\nc', 'a\nc\nd\ne');
    expect(kinds(rows)).toEqual(['same', 'removed', 'same', 'added', 'added']);
    expect(rows[1].left).toEqual({ n: 2, text: 'b' });
    expect(rows[1].right).toBeUndefined();
    expect(rows[2]).toMatchObject({ left: { n: 3 }, right: { n: 2 } });
    expect(rows[4]).toMatchObject({ left: undefined, right: { n: 4, text: 'e' } });
    expect(diffStats(rows)).toEqual({ removed: 1, added: 2 });
  });

  it('pairs a run of changes and leaves the extra lines unpaired', () => {
    const rows = sideBySide('x\n1\n2\ny', 'x\nA\nB\nC\ny');
    expect(kinds(rows)).toEqual(['same', 'changed', 'changed', 'added', 'same']);
    expect(rows[3].right?.text).toBe('C');
  });

  it('finds the same lines whatever moves around them (longest common subsequence)', () => {
    const a = 'k1\nk2\nk3\nk4\nk5';
    const b = 'k0\nk1\nk3\nk4\nk6\nk5';
    const rows = sideBySide(a, b);
    const same = rows.filter((r) => r.kind === 'same').map((r) => r.left!.text);
    expect(same).toEqual(['k1', 'k3', 'k4', 'k5']);
    // Every line of both texts appears once, in order.
    expect(rows.filter((r) => r.left).map((r) => r.left!.text)).toEqual(lines(a));
    expect(rows.filter((r) => r.right).map((r) => r.right!.text)).toEqual(lines(b));
  });

  it('handles empty texts, identical texts and CRLF', () => {
    expect(sideBySide('', '')).toEqual([]);
    expect(kinds(sideBySide('', 'a\nb'))).toEqual(['added', 'added']);
    expect(kinds(sideBySide('a\r\nb\r\n', 'a\nb'))).toEqual(['same', 'same']);
    expect(diffStats(sideBySide('same\n', 'same\n'))).toEqual({ removed: 0, added: 0 });
  });

  it('diffs two 5,000-line files with one change quickly (the common head and tail are skipped)', () => {
    const big = Array.from({ length: 5000 }, (_, i) => `line ${i}`);
    const changed = [...big];
    changed[2500] = 'line changed';
    const t = performance.now();
    const rows = sideBySide(big.join('\n'), changed.join('\n'));
    expect(performance.now() - t).toBeLessThan(500);
    expect(rows.filter((r) => r.kind !== 'same')).toEqual([{ kind: 'changed', left: { n: 2501, text: 'line 2500' }, right: { n: 2501, text: 'line changed' } }]);
  });
});

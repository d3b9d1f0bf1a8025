import { describe, expect, it } from 'vitest';
import type { EventRecord, RunListItem } from '../api/types';
import { SseParser } from '../api/sse';
import { parseValue } from '../api/client';
import { filterRows, rowOf } from './events';
import { layout, NODE_H, NODE_W, placeGraph, stepHandles } from './layout';
import { preview } from './preview';
import { applyEvent, countByStatus, emptyRun, foldEvents, statusOf } from './runStatus';

const ev = (seq: number, type: string, more: Record<string, unknown> = {}) =>
  ({ run_id: 'r', seq, at_ms: 1000 + seq, type, ...more }) as unknown as EventRecord;

describe('runStatus', () => {
  const events = [
    ev(1, 'run_created', { workflow: 'w', inputs: {} }),
    ev(2, 'run_started', { resumed: false }),
    ev(3, 'step_started', { step: 'draft', attempt: 1, visit: 1, key: 'k' }),
    ev(4, 'step_succeeded', { step: 'draft', output: 'hi', duration_ms: 5, usage: { prompt_tokens: 3, completion_tokens: 4 } }),
    ev(5, 'step_started', { step: 'approve', attempt: 1, visit: 1, key: 'k2' }),
    ev(6, 'human_requested', { step: 'approve', prompt: 'ok?', kind: 'approval' }),
  ];

  it('folds steps to running, waiting and done, with their figures', () => {
    const v = foldEvents(emptyRun(), events);
    expect(v.seq).toBe(6);
    expect(v.status).toBe('waiting');
    expect(v.nodes.draft).toMatchObject({ status: 'done', tokens: 7, durationMs: 5, output: 'hi', attempts: 1 });
    expect(statusOf(v, 'approve')).toBe('waiting');
    expect(statusOf(v, 'publish')).toBe('pending');
  });

  it('ignores events it has already seen (a stream reconnecting)', () => {
    const v = foldEvents(emptyRun(), events);
    expect(applyEvent(v, events[3])).toBe(v);
  });

  it('marks never reached steps skipped and a failure failed once the run ends', () => {
    const v = foldEvents(emptyRun(), [
      ...events,
      ev(7, 'human_responded', { step: 'approve', approved: false }),
      ev(8, 'step_failed', { step: 'approve', error: { kind: 'rejected', message: 'no' }, duration_ms: 1, retry_in_ms: null }),
      ev(9, 'run_failed', { error: 'rejected' }),
    ]);
    expect(v.status).toBe('failed');
    expect(statusOf(v, 'approve')).toBe('failed');
    expect(v.nodes.approve.error?.message).toBe('no');
    expect(statusOf(v, 'publish')).toBe('skipped');
  });

  it('a failure with a retry coming keeps the step running', () => {
    const v = foldEvents(emptyRun(), [ev(1, 'step_started', { step: 'a' }), ev(2, 'step_failed', { step: 'a', error: { kind: 'model', message: 'x' }, retry_in_ms: 100 })]);
    expect(statusOf(v, 'a')).toBe('running');
  });

  it('counts runs by status in a fixed order', () => {
    const runs = ['failed', 'running', 'succeeded', 'running'].map((status, i) => ({ id: `${i}`, status }) as RunListItem);
    expect(countByStatus(runs)).toEqual([
      ['running', 2],
      ['succeeded', 1],
      ['failed', 1],
    ]);
  });
});

describe('layout', () => {
  it('puts each node below its predecessors and ignores edges going back', () => {
    const nodes = ['a', 'b', 'c', 'd'].map((id) => ({ id }));
    const edges = [
      { from: 'a', to: 'b' },
      { from: 'a', to: 'c' },
      { from: 'b', to: 'd' },
      { from: 'c', to: 'd' },
      { from: 'd', to: 'a' },
    ];
    const p = Object.fromEntries(layout(nodes, edges).map((n) => [n.id, n]));
    expect(p.a.y).toBe(0);
    expect(p.b.y).toBe(p.c.y);
    expect(p.b.y).toBeGreaterThan(NODE_H);
    expect(p.d.y).toBeGreaterThan(p.b.y);
    expect(p.b.x).not.toBe(p.c.x);
  });

  it('lays out 2,000 nodes quickly', () => {
    const nodes = Array.from({ length: 2000 }, (_, i) => ({ id: `n${i}` }));
    const edges = nodes.slice(1).map((n, i) => ({ from: `n${Math.floor(i / 2)}`, to: n.id }));
    const t = performance.now();
    expect(layout(nodes, edges)).toHaveLength(2000);
    expect(performance.now() - t).toBeLessThan(500);
  });

  it('puts the step after a container below its branches', () => {
    const nodes = [{ id: 'draft' }, { id: 'checks' }, { id: 'spell', parent: 'checks' }, { id: 'links', parent: 'checks' }, { id: 'approve' }];
    const edges = [
      { from: 'draft', to: 'checks' },
      { from: 'checks', to: 'approve' },
    ];
    const p = Object.fromEntries(layout(nodes, edges).map((n) => [n.id, n]));
    expect(p.spell.y).toBe(p.links.y);
    expect(p.spell.y).toBeGreaterThan(p.checks.y);
    expect(p.approve.y).toBeGreaterThan(p.spell.y);
  });

  it("places the run viewer's nodes where the builder saved them", () => {
    const nodes = ['size', 'big', 'small', 'none'].map((id) => ({ id }));
    const edges = [
      { from: 'size', to: 'big' },
      { from: 'size', to: 'small' },
      { from: 'size', to: 'none' },
    ];
    // examples/laid-out.yaml's layout
    const saved = { size: [260, 0], big: [0, 150], small: [260, 150], none: [520, 150] };
    expect(placeGraph(nodes, edges, saved)).toEqual([
      { id: 'size', x: 260, y: 0 },
      { id: 'big', x: 0, y: 150 },
      { id: 'small', x: 260, y: 150 },
      { id: 'none', x: 520, y: 150 },
    ]);
    // Without a layout (or an empty one): the automatic one.
    expect(placeGraph(nodes, edges, undefined)).toEqual(layout(nodes, edges));
    expect(placeGraph(nodes, edges, {})).toEqual(layout(nodes, edges));
  });

  it('lays out the steps a saved layout does not name below it, and ignores bad entries', () => {
    const nodes = ['a', 'b', 'c'].map((id) => ({ id }));
    const edges = [
      { from: 'a', to: 'b' },
      { from: 'b', to: 'c' },
    ];
    const p = Object.fromEntries(placeGraph(nodes, edges, { a: [100, 40], b: [Number.NaN, 3], gone: [0, 0] }).map((n) => [n.id, n]));
    expect(p.a).toEqual({ id: 'a', x: 100, y: 40 });
    expect(p.b.y).toBeGreaterThan(40 + NODE_H);
    expect(p.c.y).toBeGreaterThan(p.b.y);
    expect(Object.keys(p)).toEqual(['a', 'b', 'c']);
  });

  it("gives each step box its handles where they are drawn, so edges need no measuring", () => {
    const h = stepHandles();
    const centre = (id: string | null, type: string) => {
      const b = h.find((x) => x.id === id && x.type === type);
      if (!b) throw new Error(`no ${type} handle ${id}`);
      return { x: b.x + b.width / 2, y: b.y + b.height / 2, position: b.position };
    };
    expect(centre(null, 'target')).toEqual({ x: NODE_W / 2, y: 0, position: 'top' });
    expect(centre(null, 'source')).toEqual({ x: NODE_W / 2, y: NODE_H, position: 'bottom' });
    expect(centre('back-out', 'source')).toEqual({ x: NODE_W, y: NODE_H / 2, position: 'right' });
    expect(centre('back-in', 'target')).toEqual({ x: NODE_W, y: NODE_H / 2, position: 'right' });
    expect(stepHandles(false)).toHaveLength(2);
  });
});

describe('preview', () => {
  it('cuts long values and says how long they are', () => {
    const p = preview('x'.repeat(10_000), 100);
    expect(p).toMatchObject({ truncated: true, total: 10_000 });
    expect(p.text).toHaveLength(100);
    expect(preview({ a: 1 })).toMatchObject({ truncated: false, text: '{\n  "a": 1\n}' });
  });
});

describe('SseParser', () => {
  it('reads messages split across chunks, with ids, kinds and multi-line data', () => {
    const p = new SseParser();
    expect(p.push('id: 4\nevent: step_started\nda')).toEqual([]);
    expect(p.push('ta: {"a":1}\n\n: keep-alive\n\nevent: model_delta\ndata: x\ndata: y\r\n\r\n')).toEqual([
      { id: '4', event: 'step_started', data: '{"a":1}' },
      { event: 'model_delta', data: 'x\ny' },
    ]);
  });
});

describe('event rows', () => {
  it('summarise each kind and filter by kind and text', () => {
    const rows = [
      rowOf(ev(1, 'step_succeeded', { step: 'draft', output: 'a long\nanswer' })),
      rowOf(ev(2, 'human_requested', { step: 'approve', prompt: 'Publish?' })),
      rowOf(ev(3, 'step_failed', { step: 'check', error: { message: 'boom' } })),
    ];
    expect(rows[0].summary).toBe('a long answer');
    expect(filterRows(rows, 'publish', '').map((r) => r.seq)).toEqual([2]);
    expect(filterRows(rows, '', 'step_failed').map((r) => r.summary)).toEqual(['boom']);
    expect(filterRows(rows, 'DRAFT', '')).toHaveLength(1);
  });

  it('say what the policy decided, by which rule, and why', () => {
    const deny = rowOf(
      ev(4, 'policy_decided', { step: 'code', attempt: 1, call: 2, tool: 'workspace.write', agent: 'coder', decision: 'deny', rule: 'no-secrets', reason: 'path .env is protected' }),
    );
    expect(deny.summary).toBe('DENIED workspace.write for coder by rule no-secrets: path .env is protected');
    const allow = rowOf(ev(5, 'policy_decided', { step: 'run', attempt: 1, tool: 'sandbox.step', decision: 'allow', rule: 'tests' }));
    expect(allow.summary).toBe('allowed sandbox.step by rule tests');
    expect(filterRows([deny, allow], 'denied', '').map((r) => r.seq)).toEqual([4]);
  });
});

describe('parseValue', () => {
  it('reads JSON when it is JSON, else keeps the text', () => {
    expect(parseValue(' {"name": "Ada"} ')).toEqual({ name: 'Ada' });
    expect(parseValue('42')).toBe(42);
    expect(parseValue('Ada Lovelace')).toBe('Ada Lovelace');
  });
});

import { describe, expect, it } from 'vitest';
import type { EventRecord, RunDetail, StepDetail } from '../api/types';
import { delta, modelsByStep, pairSteps, shortId, sideOf, totalsOf } from './compare';
import { canonicalText, cutParts, diffText, fromFirstChange, diffValues, sameValue } from './outputDiff';
import { checkpointsOf, declaredModels, editablesOf, editText, forkModels, forkSet, parseEdit, stateAt } from './timeline';

const ev = (seq: number, type: string, more: Record<string, unknown> = {}) =>
  ({ run_id: 'r', seq, at_ms: 1000 + seq, type, ...more }) as unknown as EventRecord;

const events = [
  ev(1, 'run_created', { workflow: 'w', inputs: { who: 'Ada' } }),
  ev(2, 'agents_resolved', { agents: { writer: { name: 'writer', version: 1, spec: { model: 'scripted/hello' } } } }),
  ev(3, 'run_started', { resumed: false }),
  ev(4, 'step_started', { step: 'draft', attempt: 1, visit: 1, key: 'k' }),
  ev(5, 'step_progress', { step: 'draft', progress: { kind: 'prompt', turn: 1, model: 'scripted/hello' } }),
  ev(6, 'step_succeeded', { step: 'draft', output: 'v1', duration_ms: 5 }),
  ev(7, 'state_set', { key: 'topic', value: { name: 'cats' } }),
  ev(8, 'step_started', { step: 'approve', attempt: 1, visit: 1, key: 'k2' }),
  ev(9, 'human_requested', { step: 'approve', prompt: 'ok?', kind: 'approval' }),
  ev(10, 'human_responded', { step: 'approve', approved: true, value: null, by: 'ada' }),
  ev(11, 'step_succeeded', { step: 'approve', output: { approved: true }, duration_ms: 9 }),
  ev(12, 'state_edited', { target: { kind: 'step_output', step: 'draft' }, value: 'v2', by: 'bob' }),
  ev(13, 'step_started', { step: 'publish', attempt: 1, visit: 1, key: 'k3' }),
  ev(14, 'step_failed', { step: 'publish', attempt: 1, error: { kind: 'execution', message: 'x' }, retry_in_ms: 10, duration_ms: 1 }),
  ev(15, 'step_started', { step: 'publish', attempt: 2, visit: 1, key: 'k4' }),
  ev(16, 'step_succeeded', { step: 'publish', output: 'done', duration_ms: 2 }),
  ev(17, 'run_succeeded', { outputs: {} }),
];

describe('timeline', () => {
  it('lists the checkpoints with their step and what happened', () => {
    const cps = checkpointsOf(events);
    expect(cps.map((c) => c.seq)).toEqual([4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]);
    expect(cps.find((c) => c.seq === 10)).toMatchObject({ kind: 'answered', subject: 'approve', label: 'answered by ada' });
    expect(cps.find((c) => c.seq === 12)).toMatchObject({ kind: 'edit', subject: 'steps.draft.output', label: 'edited by bob' });
    expect(cps.find((c) => c.seq === 14)?.label).toBe('failed, will retry');
    expect(cps.find((c) => c.seq === 15)?.label).toBe('started (attempt 2)');
    expect(cps.at(-1)).toMatchObject({ kind: 'end', label: 'run succeeded' });
  });

  it('folds the state up to a seq, and only up to it', () => {
    const at5 = stateAt(events, 5);
    expect(at5.seq).toBe(5);
    expect(at5.inputs).toEqual({ who: 'Ada' });
    expect(at5.models).toEqual({ writer: 'scripted/hello' });
    expect(at5.steps.draft).toEqual({ status: 'running', hasOutput: false });
    expect(at5.state).toEqual({});

    const at9 = stateAt(events, 9);
    expect(at9.steps.draft).toMatchObject({ status: 'done', output: 'v1' });
    expect(at9.steps.approve.status).toBe('waiting');
    expect(at9.state).toEqual({ topic: { name: 'cats' } });
    expect(at9.steps.publish).toBeUndefined();

    // An edit replaces the step's output from its seq on.
    expect(stateAt(events, 11).steps.draft.output).toBe('v1');
    expect(stateAt(events, 12).steps.draft.output).toBe('v2');
    // A failure that will be retried leaves the step running.
    expect(stateAt(events, 14).steps.publish.status).toBe('running');
    expect(stateAt(events).steps.publish).toMatchObject({ status: 'done', output: 'done' });
    expect(stateAt(events).seq).toBe(17);
  });

  it('offers finished outputs, state keys and inputs for editing', () => {
    expect(editablesOf(stateAt(events, 9)).map((e) => e.path)).toEqual(['steps.draft.output', 'state.topic', 'inputs.who']);
    // A step still running has no output to edit.
    expect(editablesOf(stateAt(events, 5)).map((e) => e.path)).toEqual(['inputs.who']);
  });

  it('builds the fork request from what changed, refusing text that is not JSON', () => {
    const eds = editablesOf(stateAt(events, 9));
    const texts = Object.fromEntries(eds.map((e) => [e.path, editText(e.value)]));
    expect(forkSet(eds, texts)).toEqual({ set: {} });
    expect(forkSet(eds, { ...texts, 'steps.draft.output': '"edited"' })).toEqual({ set: { 'steps.draft.output': 'edited' } });
    // Reformatting the same value is no change.
    expect(forkSet(eds, { ...texts, 'state.topic': '{"name":"cats"}' })).toEqual({ set: {} });
    const bad = forkSet(eds, { ...texts, 'state.topic': '{"name": cats}' });
    expect(bad).toMatchObject({ path: 'state.topic' });
    expect((bad as { error: string }).error).toMatch(/^not JSON.*'c'/);
    // Where the parser says where, the message says the line and column.
    expect(parseEdit('{\n  "a": 1,\n}')).toMatchObject({ ok: false, error: expect.stringMatching(/^not JSON at line 3, column 1/) });
    expect(parseEdit('  ')).toMatchObject({ ok: false });
    expect(parseEdit('[1, 2]')).toEqual({ ok: true, value: [1, 2] });
  });

  it("reads the agents' models from the workflow's header", () => {
    expect(declaredModels({ agents: { a: { model: 'x/1', role: 'r' }, b: { agent: 'reg' } } })).toEqual({ a: 'x/1' });
    expect(declaredModels(undefined)).toEqual({});
  });

  it('sends only the models the user changed', () => {
    expect(forkModels({ a: 'x/1', b: 'y/2' }, { a: 'x/1', b: ' z/3 ' })).toEqual({ b: 'z/3' });
    expect(forkModels({ a: 'x/1' }, { a: '' })).toEqual({});
  });
});

describe('diff', () => {
  const join = (d: ReturnType<typeof diffText>, op: string) => d.parts.filter((p) => p.op === op).map((p) => p.text).join('|');

  it('marks the changed words of a text', () => {
    const d = diffText('about topic: cats and more', 'about topic: dogs and more');
    expect(join(d, 'del')).toBe('cats');
    expect(join(d, 'add')).toBe('dogs');
    expect(d.parts.map((p) => p.text).filter((_, i) => d.parts[i].op !== 'add').join('')).toBe('about topic: cats and more');
    expect(d.parts.map((p) => p.text).filter((_, i) => d.parts[i].op !== 'del').join('')).toBe('about topic: dogs and more');
    expect(d.coarse).toBe(false);
  });

  it('never splits a word between the same and the changed', () => {
    const d = diffText('catalogue', 'category');
    expect(d.parts).toEqual([
      { op: 'del', text: 'catalogue' },
      { op: 'add', text: 'category' },
    ]);
  });

  it('has no change for equal texts and handles one side empty', () => {
    expect(diffText('same', 'same').parts).toEqual([{ op: 'same', text: 'same' }]);
    expect(diffText('', 'new').parts).toEqual([{ op: 'add', text: 'new' }]);
    expect(diffText('old', '').parts).toEqual([{ op: 'del', text: 'old' }]);
  });

  it('compares JSON with sorted keys, so key order is no difference', () => {
    expect(sameValue({ a: 1, b: [1, 2] }, { b: [1, 2], a: 1 })).toBe(true);
    expect(sameValue('1', 1)).toBe(false);
    expect(canonicalText({ b: 1, a: 2 })).toBe('{\n  "a": 2,\n  "b": 1\n}');
    const d = diffValues({ name: 'Ada', n: 1 }, { n: 2, name: 'Ada' });
    expect(join(d, 'del')).toBe('1');
    expect(join(d, 'add')).toBe('2');
  });

  it('compares long text line by line, fast', () => {
    const lines = Array.from({ length: 20_000 }, (_, i) => `line ${i} of the output`);
    const b = lines.slice();
    b[10_000] = 'a changed line';
    const t = performance.now();
    const d = diffText(lines.join('\n'), b.join('\n'));
    expect(performance.now() - t).toBeLessThan(2000);
    const side = (op: string) => d.parts.filter((p) => p.op !== op).map((p) => p.text).join('');
    expect(side('add')).toBe(lines.join('\n'));
    expect(side('del')).toBe(b.join('\n'));
    expect(d.removed).toBeLessThanOrEqual('line 10000 of the output'.length);
    expect(join(d, 'del')).toContain('10000');
  });

  it('gives up on detail, not on time, when two big values differ everywhere', () => {
    const a = Array.from({ length: 50_000 }, (_, i) => `a${i}`).join('\n');
    const b = Array.from({ length: 50_000 }, (_, i) => `b${i}`).join('\n');
    const t = performance.now();
    const d = diffText(a, b);
    expect(performance.now() - t).toBeLessThan(3000);
    expect(d.coarse).toBe(true);
    expect(d.removed).toBe(a.length);
    expect(d.added).toBe(b.length);
  });

  it('starts a cut view shortly before the first change', () => {
    const parts = [
      { op: 'same' as const, text: 'x'.repeat(1000) },
      { op: 'add' as const, text: 'NEW' },
    ];
    expect(fromFirstChange(parts, 100)).toEqual({ parts: [{ op: 'same', text: 'x'.repeat(100) }, parts[1]], skipped: 900 });
    expect(fromFirstChange(parts, 600)).toEqual({ parts, skipped: 0 });
    expect(fromFirstChange([parts[0]], 100).skipped).toBe(0);
  });

  it('cuts what is drawn at a limit', () => {
    const parts = [
      { op: 'same' as const, text: 'abcd' },
      { op: 'add' as const, text: 'efgh' },
    ];
    expect(cutParts(parts, 6)).toEqual({ parts: [parts[0], { op: 'add', text: 'ef' }], cut: true });
    expect(cutParts(parts, 8)).toEqual({ parts, cut: false });
  });
});

describe('compare', () => {
  const step = (s: string, output: unknown, more: Partial<StepDetail> = {}): StepDetail =>
    ({ step: s, status: 'succeeded', duration_ms: 10, tokens: 5, usage: { prompt_tokens: 2, completion_tokens: 3 }, attempts: 1, output, ...more }) as StepDetail;
  const detail = (steps: StepDetail[], more: Partial<RunDetail['run']> = {}): RunDetail =>
    ({
      run: { id: 'x', tenant: 'default', workflow: 'w', status: 'succeeded', inputs: {}, created_at_ms: 1000, updated_at_ms: 3500, last_seq: 9, ...more },
      tokens: steps.reduce((n, s) => n + s.tokens, 0),
      usage: { prompt_tokens: 0, completion_tokens: 0, cost_usd: 0.5 },
      steps,
      sandbox: [],
      waiting: [],
      ambiguous: [],
      joins: [],
    }) as RunDetail;

  it('pairs the steps of both runs, marking those only one has', () => {
    const a = { detail: detail([step('one', 'x'), step('two', { k: 1 }), step('three', 'z')]), models: { two: ['scripted/hello'] }, edits: {} };
    const b = { detail: detail([step('one', 'x'), step('two', { k: 2 }), step('extra', 'e'), step('four', 'f')]), models: { two: ['scripted/other'] }, edits: {} };
    const pairs = pairSteps(a, b);
    expect(pairs.map((p) => p.step)).toEqual(['one', 'two', 'extra', 'four', 'three']);
    expect(pairs.map((p) => p.only ?? '')).toEqual(['', '', 'b', 'b', 'a']);
    expect(pairs.map((p) => p.sameOutput)).toEqual([true, false, false, false, false]);
    expect(pairs[1]).toMatchObject({ modelsA: ['scripted/hello'], modelsB: ['scripted/other'] });
  });

  it("compares a step's edited output, which the next steps saw, not the one it produced", () => {
    const a = sideOf(detail([step('one', 'x')]), []);
    const b = sideOf(detail([step('one', 'x')]), [ev(5, 'state_edited', { target: { kind: 'step_output', step: 'one' }, value: 'y' }), ev(6, 'state_edited', { target: { kind: 'state', key: 'one' }, value: 'z' })]);
    expect(b.edits).toEqual({ one: 'y' });
    expect(pairSteps(a, b)[0]).toMatchObject({ outA: 'x', outB: 'y', editedA: false, editedB: true, sameOutput: false });
  });

  it('totals a run, with no duration while it runs', () => {
    expect(totalsOf(detail([step('one', 'x'), step('two', 'y')]))).toEqual({ status: 'succeeded', tokens: 10, cost: 0.5, durationMs: 2500, steps: 2 });
    expect(totalsOf(detail([], { status: 'running' })).durationMs).toBeUndefined();
    expect(delta(10, 12)).toBe('+2');
    expect(delta(10, 7)).toBe('−3');
    expect(delta(1, 1)).toBe('=');
    expect(delta(undefined, 1)).toBe('');
    expect(shortId('01a244a7aaaa0000000000000000beef')).toBe('01a244a7…beef');
  });

  it('reads the models each step called from the log', () => {
    const m = modelsByStep([
      ...events,
      ev(18, 'step_progress', { step: 'draft', progress: { kind: 'model_reply', model: 'scripted/hello', turn: 1, content: '' } }),
      ev(19, 'step_progress', { step: 'draft', progress: { kind: 'model_reply', model: 'openai/gpt-4o', turn: 2, content: '' } }),
    ]);
    expect(m).toEqual({ draft: ['scripted/hello', 'openai/gpt-4o'] });
  });
});

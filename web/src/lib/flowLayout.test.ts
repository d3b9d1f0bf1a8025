import { act, renderHook } from '@testing-library/react';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { useFlow } from '../components/builder/hooks';
import { flowYaml, parseFlow } from './flow';
import { addStep, removeStep, renameStep } from './flowGraph';
import { display, fitLayout, layoutOf, withLayout, withoutLayout } from './flowLayout';
import { templateVars } from './templateVars';

const DOC = `version: 1
name: laid
steps:
  - { id: a, tool: echo, with: { text: a } }
  - { id: b, tool: echo, with: { text: b } }
`;

describe('saved layout', () => {
  it('writes one `ID: [x, y]` line per step, after the steps, and reads it back', () => {
    const { flow, doc } = parseFlow(DOC);
    const laid = withLayout(flow, new Map([['a', { x: 10.4, y: 20 }], ['b', { x: 300, y: -40.6 }]]));
    const text = flowYaml(laid, doc).text;
    expect(text).toContain('layout:\n  a: [ 10, 20 ]\n  b: [ 300, -41 ]\n');
    expect(text.indexOf('layout:')).toBeGreaterThan(text.indexOf('steps:'));
    expect(layoutOf(parseFlow(text).flow)).toEqual(new Map([['a', { x: 10, y: 20 }], ['b', { x: 300, y: -41 }]]));
    expect(parse(flowYaml(withoutLayout(laid), doc).text).layout).toBeUndefined();
  });

  it('follows renames, forgets deleted steps and places new ones', () => {
    const { flow } = parseFlow(DOC);
    const laid = withLayout(flow, new Map([['a', { x: 1, y: 2 }], ['b', { x: 3, y: 4 }]]));
    const renamed = renameStep(laid, 'a', 'first');
    expect(renamed).not.toBeTypeOf('string');
    expect((renamed as typeof laid).meta.layout).toEqual({ first: [1, 2], b: [3, 4] });
    const auto = new Map([['tool1', { x: 50, y: 60 }]]);
    // A new step goes under the one before it in its list.
    const added = fitLayout(addStep(removeStep(laid, 'b'), 'tool', undefined).flow, auto);
    expect(added.meta.layout).toEqual({ a: [1, 2], tool1: [1, 108] });
    // ... and further down while that place is taken; a first step of nothing gets `auto`'s.
    const crowded = withLayout(flow, new Map([['a', { x: 0, y: 0 }], ['b', { x: 10, y: -106 }]]));
    expect(fitLayout(addStep(crowded, 'tool').flow, auto).meta.layout).toEqual({ a: [0, 0], b: [10, -106], tool1: [10, 106] });
    const lone = { meta: { layout: { gone: [0, 0] } }, steps: [] };
    expect(fitLayout(addStep(lone, 'tool').flow, auto).meta.layout).toEqual({ tool1: [50, 60] });
    // Without a layout nothing is written.
    expect(fitLayout(addStep(flow, 'tool').flow, auto).meta.layout).toBeUndefined();
  });

  it('draws saved positions over automatic ones, keeping unchanged points', () => {
    const { flow } = parseFlow(`${DOC}layout:\n  b: [500, 7]\n  zz: nope\n`);
    const auto = new Map([['a', { x: 0, y: 0 }], ['b', { x: 0, y: 100 }]]);
    const first = display(flow, auto, new Map());
    expect(first.get('a')).toBe(auto.get('a'));
    expect(first.get('b')).toEqual({ x: 500, y: 7 });
    expect(display(flow, auto, first)).toBe(first);
  });

  it('a move is an edit: saved in the YAML, undone and redone', () => {
    const { result } = renderHook(() => useFlow(parseFlow(DOC)));
    const autoB = result.current.positions.get('b');
    expect(parse(result.current.yamlNow()).layout).toBeUndefined();
    act(() => result.current.move('b', 400, 80, false));
    expect(result.current.positions.get('b')).toEqual({ x: 400, y: 80 });
    expect(parse(result.current.yamlNow()).layout).toBeUndefined();
    act(() => result.current.move('b', 420, 90, true));
    expect(parse(result.current.yamlNow()).layout).toEqual({ a: [0, 0], b: [420, 90] });
    act(() => result.current.travel(true));
    expect(result.current.positions.get('b')).toEqual(autoB);
    expect(parse(result.current.yamlNow()).layout).toBeUndefined();
    act(() => result.current.travel(false));
    expect(result.current.positions.get('b')).toEqual({ x: 420, y: 90 });
    // Auto-layout drops the saved layout, as one more undo step.
    act(() => result.current.relayout());
    expect(parse(result.current.yamlNow()).layout).toBeUndefined();
    expect(result.current.positions.get('b')).toEqual(autoB);
    act(() => result.current.travel(true));
    expect(result.current.positions.get('b')).toEqual({ x: 420, y: 90 });
  });

  it('nudges of one step in a row are one undo step', () => {
    const { result } = renderHook(() => useFlow(parseFlow(DOC)));
    const at = result.current.positions.get('a');
    for (let i = 0; i < 3; i++) act(() => result.current.nudge('a', 20, 0));
    expect(result.current.positions.get('a')).toEqual({ x: (at?.x ?? 0) + 60, y: at?.y });
    act(() => result.current.travel(true));
    expect(result.current.positions.get('a')).toEqual(at);
    expect(result.current.hist.past).toHaveLength(0);
  });

  it('a YAML edit of the layout moves the node', () => {
    const { result } = renderHook(() => useFlow(parseFlow(DOC)));
    act(() => void result.current.replace(`${DOC}layout:\n  a: [-30, 15]\n`));
    expect(result.current.positions.get('a')).toEqual({ x: -30, y: 15 });
  });
});

describe('a new document', () => {
  it('fills its empty `steps: []` and `agents: {}` as blocks, one entry a line', async () => {
    const { NEW_WORKFLOW } = await import('./flow');
    const { flow, doc } = parseFlow(NEW_WORKFLOW);
    const one = addStep(addStep({ ...flow, meta: { ...flow.meta, agents: { w: { model: 'scripted/hello' } } } }, 'tool').flow, 'tool').flow;
    const text = flowYaml(one, doc).text;
    expect(text).toContain('steps:\n  - id: tool1\n');
    expect(text).toContain('\n  - id: tool2\n');
    expect(text).toContain('agents:\n  w:');
  });
});

describe('template variables', () => {
  it('offers memory keys written and read, not memory tools, and a map item inside its map', () => {
    const { flow } = parseFlow(`version: 1
name: t
agents:
  a: { model: scripted/hello, tools: [memory.set, memory.get] }
steps:
  - { id: keep, tool: memory.set, with: { key: plan, value: x } }
  - { id: say, agent: a, prompt: "{{ memory.notes }}" }
  - id: each
    map: { over: "[1, 2]", as: n }
    steps:
      - { id: inner, tool: echo, with: { text: x } }
`);
    const inside = templateVars(flow, 'inner');
    expect(inside).toEqual(expect.arrayContaining(['memory.plan', 'memory.notes', 'n', 'loop.index', 'steps.keep.output']));
    expect(inside).not.toContain('memory.set');
    expect(inside).not.toContain('memory.get');
    expect(templateVars(flow, 'say')).not.toContain('n');
  });
});

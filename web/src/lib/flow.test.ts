import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { flowYaml, parseFlow, walk } from './flow';
import { addStep, connect, disconnect, graphOf, locate, removeStep, renameStep, setField } from './flowGraph';
import { push, redo, start, undo } from './history';
import { fieldProblems, place } from '../components/builder/hooks';
import { openTemplate, suggest, templateVars } from './templateVars';

// Every workflow of examples/, read from the repository.
const sources = import.meta.glob('../../../examples/*.yaml', { query: '?raw', import: 'default', eager: true }) as Record<string, string>;
const example = (name: string) => sources[`../../../examples/${name}`];
const files = Object.keys(sources).map((p) => p.split('/').pop() as string);

describe('YAML <-> model', () => {
  it('finds the examples', () => expect(files.length).toBeGreaterThan(10));
  for (const file of files) {
    it(`round-trips examples/${file}`, () => {
      const text = example(file);
      const { doc, flow } = parseFlow(text);
      // Written fresh, and written back into its own document: the same value either way.
      const fresh = flowYaml(flow).text;
      const kept = flowYaml(flow, doc).text;
      expect(parse(fresh)).toEqual(parse(text));
      expect(parse(kept)).toEqual(parse(text));
      // And the model read back is the same model.
      expect(parseFlow(fresh).flow).toEqual(flow);
      // Untouched, the document keeps its comments.
      for (const line of text.split('\n').filter((l: string) => l.trim().startsWith('#'))) expect(kept).toContain(line.trim());
    });
  }

  it('keeps comments and key order of what an edit does not touch', () => {
    const text = example('todo-app.yaml');
    const { doc, flow } = parseFlow(text);
    const edited = setField(flow, 'implement', 'prompt', 'Implement it: {{ steps.requirements.output }}');
    const out = flowYaml(edited, doc).text;
    expect(out).toContain('# Bounded, so that a small model');
    expect(out).toContain('prompt: "Implement it: {{ steps.requirements.output }}"');
    expect(out.indexOf('inputs:')).toBeLessThan(out.indexOf('agents:'));
    expect(parse(out).steps[1].max_visits).toBe(3);
  });

  it('keeps the comments of a renamed step', () => {
    const { doc, flow } = parseFlow('version: 1\nname: t\nsteps:\n  # the first\n  - id: a  # a note\n    tool: echo\n  - { id: b, tool: echo }\n');
    const out = flowYaml(renameStep(flow, 'a', 'first') as typeof flow, doc).text;
    expect(out).toContain('# the first');
    expect(out).toContain('# a note');
    expect(parse(out).steps.map((x: { id: string }) => x.id)).toEqual(['first', 'b']);
  });

  it('refuses what is not a workflow', () => {
    expect(() => parseFlow('a: [1')).toThrow();
    expect(() => parseFlow('- 1\n- 2\n')).toThrow(/not a mapping/);
    expect(() => parseFlow('version: 1\nsteps: 3\n')).toThrow(/not a list/);
  });
});

describe('canvas edits', () => {
  const base = parseFlow('version: 1\nname: t\nagents: { a: { model: scripted/hello } }\nsteps: []\n').flow;

  it('adds, connects, renames and removes steps', () => {
    let f = addStep(base, 'agent').flow;
    f = addStep(f, 'tool').flow;
    const p = addStep(f, 'parallel');
    f = addStep(p.flow, 'human', p.id).flow;
    expect(walk(f.steps).map((s) => s.step.id)).toEqual(['agent1', 'tool1', 'parallel1', 'human1']);
    expect(f.steps[0].fields.agent).toBe('a');
    const g = graphOf(f);
    expect(g.edges.map((e) => `${e.from}-${e.kind}-${e.to}`)).toEqual(['agent1-sequence-tool1', 'tool1-sequence-parallel1', 'parallel1-branch-human1']);
    expect(g.nodes.find((n) => n.id === 'human1')?.parent).toBe('parallel1');
    f = connect(f, 'parallel1', 'agent1') as typeof f;
    expect(f.steps[2].fields.next).toBe('agent1');
    expect(connect(f, 'agent1', 'human1')).toMatch(/same list/);
    f = renameStep(f, 'agent1', 'greet') as typeof f;
    expect(f.steps[2].fields.next).toBe('greet');
    expect(renameStep(f, 'greet', 'tool1')).toMatch(/already used/);
    f = removeStep(f, 'greet');
    expect(f.steps[1].fields.next).toBeUndefined();
    const seq = graphOf(f).edges.find((e) => e.kind === 'sequence');
    f = disconnect(f, seq!);
    expect(f.steps[0].fields.next).toBe('end');
  });

  it('connects an if to then, then else', () => {
    let f = addStep(base, 'if').flow;
    f = addStep(f, 'tool').flow;
    f = addStep(f, 'human').flow;
    f = connect(f, 'if1', 'human1') as typeof f;
    f = connect(f, 'if1', 'tool1') as typeof f;
    expect(f.steps[0].fields).toMatchObject({ then: 'human1', else: 'tool1' });
    expect(parse(flowYaml(f).text).steps[0]).toEqual({ id: 'if1', if: 'true', then: 'human1', else: 'tool1' });
  });
});

describe('diagnostics to nodes', () => {
  const { flow } = parseFlow(example('contracts.yaml'));
  it('maps a path to its step and field', () => {
    expect(locate(flow, 'steps[0].parallel[1].steps[1].with.verdict')).toEqual({ step: 'style_notes', field: 'with.verdict' });
    expect(locate(flow, 'steps[0].parallel[0].tool')).toEqual({ step: 'security', field: 'tool' });
    expect(locate(flow, 'steps[0]')).toEqual({ step: 'review', field: '' });
    expect(locate(flow, 'steps[0].join.strategy')).toEqual({ step: 'review', field: 'join.strategy' });
    expect(locate(flow, 'contracts.verdict')).toEqual({ field: 'contracts.verdict' });
    expect(locate(flow, 'steps[9].agent')).toEqual({ step: undefined, field: '[9].agent' });
  });
  it('puts each problem on its field, a missing field included', () => {
    const d = (path: string, message: string) => ({ d: { level: 'error', file: '<inline>', line: 1, column: 1, path, message }, step: locate(flow, path).step });
    const problems = [d('steps[0].parallel[0].with.verdict', 'bad'), d('steps[0].parallel[1].steps[0]', 'tool step `lint` needs a `tool`'), d('contracts.x', 'no')];
    expect([...fieldProblems(problems, flow, 'security')]).toEqual([['with.verdict', ['bad']]]);
    expect([...fieldProblems(problems, flow, 'lint')]).toEqual([['tool', ['tool step `lint` needs a `tool`']]]);
    expect([...fieldProblems(problems, flow)]).toEqual([['', ['no']]]);
  });
});

describe('undo/redo', () => {
  it('goes back and forth, grouping edits of one field', () => {
    let h = start(1);
    h = push(h, 2, 'a', 0);
    h = push(h, 3, 'a', 500);
    h = push(h, 4, 'b', 600);
    expect(h.past).toEqual([1, 3]);
    h = undo(h);
    expect(h.present).toBe(3);
    h = undo(h);
    expect(h.present).toBe(1);
    h = undo(h);
    expect(h.present).toBe(1);
    h = redo(redo(h));
    expect(h.present).toBe(4);
    h = undo(h);
    h = push(h, 5);
    expect(h.future).toEqual([]);
  });
});

describe('positions', () => {
  it('lays out new steps, keeps moved ones, and keeps a removed step\'s place for its undo', () => {
    const f = parseFlow('version: 1\nname: t\nsteps:\n  - { id: a, tool: echo }\n  - { id: b, tool: echo }\n').flow;
    const p = place(f, new Map([['a', { x: 500, y: 500 }]]));
    expect(p.get('a')).toEqual({ x: 500, y: 500 });
    expect(p.get('b')?.y).toBeGreaterThan(0);
    const without = place(removeStep(f, 'b'), p);
    expect(without.get('b')).toEqual(p.get('b'));
    expect(place(f, p, true).get('a')).toEqual({ x: 0, y: 0 });
  });
});

describe('template suggestions', () => {
  const { flow } = parseFlow(example('todo-app.yaml'));
  it('lists inputs and steps, and completes what is typed after {{', () => {
    const vars = templateVars(flow, 'test');
    expect(vars).toContain('inputs.idea');
    expect(vars).toContain('steps.implement.output');
    expect(vars).not.toContain('steps.test.output');
    expect(openTemplate('Test {{ steps.im', 16)).toEqual({ start: 8, typed: 'steps.im' });
    expect(openTemplate('{{ a }} b', 9)).toBeUndefined();
    expect(suggest(vars, 'steps.im')).toEqual(['steps.implement.output']);
  });
});

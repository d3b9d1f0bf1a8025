import { act, cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { useState } from 'react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AgentVersion } from '../../api/adminTypes';
import type { Diagnostic } from '../../api/types';
import { parseFlow, walk, type Flow } from '../../lib/flow';
import { renameAgent, setField, setMeta } from '../../lib/flowGraph';
import { freeName, inlineOf, type RegistrySource } from './AgentsEditor';
import { fieldProblems } from './hooks';
import { StepPanel } from './StepPanel';

afterEach(cleanup);

const DOC = `version: 1
name: team
agents:
  writer: { model: scripted/hello, role: writer }
steps:
  - { id: draft, agent: writer, prompt: "Write about {{ inputs.topic }}" }
  - { id: review, agent: reviewer, prompt: "Review {{ steps.draft.output }}" }
  - { id: pinned, agent: reviewer@2, prompt: "Again" }
  - id: vote
    parallel:
      - { id: a, agent: writer, prompt: "a", wait_for: { from: writer } }
    join: { strategy: judge, judge: writer }
`;

const version = (v: number, spec: Record<string, unknown>, def = 1): AgentVersion =>
  ({ name: 'reviewer', version: v, latest: 2, default_version: def, spec, source: '', format: 'yaml', created_at_ms: 0 }) as unknown as AgentVersion;

const REGISTRY: RegistrySource = {
  names: ['reviewer'],
  versions: vi.fn(async () => [
    version(1, { model: 'scripted/hello', role: 'reviewer', instructions: 'Be kind.', tools: [], temperature: null, output: null }),
    version(2, { model: 'scripted/typist', role: 'strict reviewer', tools: ['echo'], output: { schema: { type: 'object', required: ['ok'] } } }),
  ]),
};

/** The builder's side panel over a model that keeps every edit, like Builder.tsx does. */
function Host({ initial, step, problems, spy }: { initial: Flow; step?: string; problems?: Map<string, string[]>; spy?(f: Flow): void }) {
  const [flow, setFlow] = useState(initial);
  const set = (f: Flow) => (setFlow(f), spy?.(f));
  const s = step ? walk(flow.steps).find((p) => p.step.id === step)?.step : undefined;
  return (
    <StepPanel
      flow={flow}
      step={s}
      targets={[]}
      agents={['writer', 'reviewer']}
      vars={['inputs.topic']}
      problems={problems ?? new Map()}
      docProblems={problems ?? new Map()}
      readOnly={false}
      registry={REGISTRY}
      onField={(path, v) => set(step ? setField(flow, step, path, v) : setMeta(flow, path, v))}
      onEditFlow={(fn) => set(fn(flow))}
      onRenameAgent={(from, to) => {
        const r = renameAgent(flow, from, to);
        if (typeof r === 'string') return r;
        set(r);
        return undefined;
      }}
      onRename={() => undefined}
      onDelete={() => {}}
      onClose={() => {}}
    />
  );
}

const agentsOf = (f: Flow) => f.meta.agents as Record<string, Record<string, unknown>>;

describe("the workflow's own agents", () => {
  it('edits an agent as a form: model, role, instructions, tools, output schema and limits', () => {
    const spy = vi.fn();
    render(<Host initial={parseFlow(DOC).flow} spy={spy} />);
    // One agent: its form is open.
    const form = screen.getByTestId('agent-form-writer');
    fireEvent.change(within(form).getByLabelText('Model'), { target: { value: 'scripted/typist' } });
    fireEvent.change(within(form).getByLabelText('Role'), { target: { value: 'author' } });
    fireEvent.change(within(form).getByLabelText('Instructions (system prompt)'), { target: { value: 'You write short answers.' } });
    fireEvent.change(within(form).getByLabelText('Tools'), { target: { value: 'echo, memory.set' } });
    fireEvent.change(within(form).getByLabelText('Output schema (JSON Schema)'), { target: { value: '{"type": "object"}' } });
    fireEvent.change(within(form).getByLabelText('Tokens'), { target: { value: '5000' } });
    fireEvent.change(within(form).getByLabelText('Max tool turns'), { target: { value: '3' } });
    const last = spy.mock.lastCall?.[0] as Flow;
    expect(agentsOf(last).writer).toEqual({
      model: 'scripted/typist',
      role: 'author',
      instructions: 'You write short answers.',
      tools: ['echo', 'memory.set'],
      output: { schema: { type: 'object' } },
      budget: { tokens: 5000 },
      max_tool_turns: 3,
    });
    // A tool added by its button joins the list; clearing the list removes the key.
    fireEvent.click(within(form).getByRole('button', { name: 'message.send' }));
    expect(agentsOf(spy.mock.lastCall?.[0] as Flow).writer.tools).toEqual(['echo', 'memory.set', 'message.send']);
    fireEvent.change(within(form).getByLabelText('Tools'), { target: { value: '' } });
    expect(agentsOf(spy.mock.lastCall?.[0] as Flow).writer).not.toHaveProperty('tools');
  });

  it('adds an agent by a name it checks, and removes one', () => {
    const spy = vi.fn();
    render(<Host initial={parseFlow(DOC).flow} spy={spy} />);
    const add = screen.getByRole('button', { name: 'Add agent' });
    fireEvent.click(add);
    expect(screen.getByRole('alert').textContent).toContain('give the agent a name');
    fireEvent.change(screen.getByLabelText('New agent'), { target: { value: 'bad name' } });
    fireEvent.click(add);
    expect(screen.getByRole('alert').textContent).toContain('ASCII letters');
    fireEvent.change(screen.getByLabelText('New agent'), { target: { value: 'writer' } });
    fireEvent.click(add);
    expect(screen.getByRole('alert').textContent).toContain('already has an agent `writer`');
    expect(spy).not.toHaveBeenCalled();
    fireEvent.change(screen.getByLabelText('New agent'), { target: { value: 'critic' } });
    fireEvent.click(add);
    expect(Object.keys(agentsOf(spy.mock.lastCall?.[0] as Flow))).toEqual(['writer', 'critic']);
    // The new agent's form is open, asking for its model.
    fireEvent.change(within(screen.getByTestId('agent-form-critic')).getByLabelText('Model'), { target: { value: 'scripted/hello' } });
    expect(agentsOf(spy.mock.lastCall?.[0] as Flow).critic).toEqual({ model: 'scripted/hello' });
    fireEvent.click(screen.getByRole('button', { name: 'Remove agent critic' }));
    expect(Object.keys(agentsOf(spy.mock.lastCall?.[0] as Flow))).toEqual(['writer']);
  });

  it('renames an agent and every step naming it follows', () => {
    const spy = vi.fn();
    render(<Host initial={parseFlow(DOC).flow} spy={spy} />);
    const name = within(screen.getByTestId('agent-form-writer')).getByLabelText('Name');
    fireEvent.change(name, { target: { value: 'not ok' } });
    fireEvent.blur(name);
    expect(screen.getByRole('alert').textContent).toContain('ASCII letters');
    fireEvent.change(name, { target: { value: 'author' } });
    fireEvent.keyDown(name, { key: 'Enter' });
    const f = spy.mock.lastCall?.[0] as Flow;
    expect(Object.keys(agentsOf(f))).toEqual(['author']);
    const steps = Object.fromEntries(walk(f.steps).map((p) => [p.step.id, p.step.fields]));
    expect(steps.draft.agent).toBe('author');
    expect(steps.review.agent).toBe('reviewer');
    expect(steps.a.agent).toBe('author');
    expect(steps.a.wait_for).toEqual({ from: 'author' });
    expect(steps.vote.join).toEqual({ strategy: 'judge', judge: 'author' });
    expect(screen.getByTestId('agent-form-author')).toBeTruthy();
  });

  it('copies a registry version into the workflow (the default first), under a free name', async () => {
    const spy = vi.fn();
    render(<Host initial={parseFlow(DOC).flow} spy={spy} />);
    const box = screen.getByTestId('copy-registry');
    const copy = within(box).getByRole('button', { name: 'Copy into this workflow' }) as HTMLButtonElement;
    expect(copy.disabled).toBe(true);
    fireEvent.change(within(box).getByLabelText('Registry agent'), { target: { value: 'reviewer' } });
    await waitFor(() => expect((within(box).getByLabelText('Version') as HTMLSelectElement).value).toBe('1'));
    expect(within(box).getByText(/scripted\/hello · reviewer/)).toBeTruthy();
    fireEvent.change(within(box).getByLabelText('Version'), { target: { value: '2' } });
    fireEvent.click(copy);
    expect(agentsOf(spy.mock.lastCall?.[0] as Flow).reviewer).toEqual({
      model: 'scripted/typist',
      role: 'strict reviewer',
      tools: ['echo'],
      output: { schema: { type: 'object', required: ['ok'] } },
    });
    expect(screen.getByTestId('agent-copied').textContent).toContain('Copied reviewer v2 as `reviewer`');
    // Copied again: a name not taken.
    fireEvent.click(copy);
    expect(Object.keys(agentsOf(spy.mock.lastCall?.[0] as Flow))).toEqual(['writer', 'reviewer', 'reviewer-2']);
  });

  it("shows the validator's problems on the agent and field they name", () => {
    const { flow } = parseFlow(DOC);
    const d = (path: string, message: string) => ({ d: { level: 'error', path, message } as Diagnostic, step: undefined });
    const problems = fieldProblems([d('agents.writer.model', 'unknown provider `scripted2`'), d('agents.writer.tools[0]', 'unknown tool `ech`')], flow, undefined);
    expect([...problems.keys()]).toEqual(['agents.writer.model', 'agents.writer.tools[0]']);
    render(<Host initial={flow} problems={problems} />);
    const form = screen.getByTestId('agent-form-writer');
    const model = within(form).getByLabelText('Model');
    expect(model.getAttribute('aria-invalid')).toBe('true');
    expect(within(form).getAllByRole('alert').map((a) => a.textContent)).toEqual(['unknown provider `scripted2`', 'unknown tool `ech`']);
    expect(screen.getByText('· has problems')).toBeTruthy();
  });
});

describe("an agent step's panel", () => {
  it("edits the workflow's agent the step picked", () => {
    const spy = vi.fn();
    render(<Host initial={parseFlow(DOC).flow} step="draft" spy={spy} />);
    const box = screen.getByTestId('step-agent');
    expect(box.textContent).toContain('writer');
    fireEvent.change(within(box).getByLabelText('Role'), { target: { value: 'poet' } });
    expect(agentsOf(spy.mock.lastCall?.[0] as Flow).writer).toEqual({ model: 'scripted/hello', role: 'poet' });
  });

  it('copies the registry agent the step picked, pinned or not', async () => {
    const spy = vi.fn();
    const { unmount } = render(<Host initial={parseFlow(DOC).flow} step="review" spy={spy} />);
    expect(screen.queryByTestId('step-agent')).toBeNull();
    const copy = screen.getByRole('button', { name: 'Copy into this workflow to edit it' });
    await waitFor(() => expect((copy as HTMLButtonElement).disabled).toBe(false));
    await act(async () => fireEvent.click(copy));
    let f = spy.mock.lastCall?.[0] as Flow;
    // Copied under the name the step uses: the step now runs the inline agent (its default version).
    expect(agentsOf(f).reviewer.role).toBe('reviewer');
    expect(walk(f.steps).find((p) => p.step.id === 'review')?.step.fields.agent).toBe('reviewer');
    expect(screen.getByTestId('step-agent').textContent).toContain('reviewer');
    unmount();
    render(<Host initial={parseFlow(DOC).flow} step="pinned" spy={spy} />);
    const copy2 = screen.getByRole('button', { name: 'Copy into this workflow to edit it' });
    await waitFor(() => expect((copy2 as HTMLButtonElement).disabled).toBe(false));
    fireEvent.click(copy2);
    f = spy.mock.lastCall?.[0] as Flow;
    expect(walk(f.steps).find((p) => p.step.id === 'pinned')?.step.fields.agent).toBe('reviewer');
  });
});

describe('agent helpers', () => {
  it('strips empty keys of a registry spec and finds free names', () => {
    expect(inlineOf(version(1, { model: 'm', role: null, tools: [], output: { schema: { default: null }, max_retries: null } }))).toEqual({ model: 'm', output: { schema: { default: null } } });
    expect(freeName('a', [])).toBe('a');
    expect(freeName('a', ['a', 'a-2'])).toBe('a-3');
    const { flow } = parseFlow(DOC);
    expect(renameAgent(setMeta(flow, 'agents.critic', { model: 'm' }), 'writer', 'critic')).toContain('already has an agent `critic`');
    expect(renameAgent(flow, 'nobody', 'x')).toContain('no agent `nobody`');
    expect(renameAgent(flow, 'writer', 'writer')).toBe(flow);
  });
});

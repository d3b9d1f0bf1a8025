import { cleanup, fireEvent, render, screen, within } from '@testing-library/react';
import { useState } from 'react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Field, type FieldDef } from './Fields';
import { StepPanel } from './StepPanel';
import { parseFlow } from '../../lib/flow';

afterEach(cleanup);

const base = { problems: [], readOnly: false, targets: ['low', 'high'], agents: [], vars: [] };
const CASES: FieldDef = { path: 'switch.cases', label: 'Cases', type: 'cases' };

/** A field that keeps what it is given, like the builder does. */
function Host({ def, initial, spy, problemsAt }: { def: FieldDef; initial: unknown; spy(v: unknown): void; problemsAt?: Map<string, string[]> }) {
  const [v, setV] = useState<unknown>(initial);
  return <Field {...base} def={def} value={v} problemsAt={problemsAt} onChange={(x) => (setV(x), spy(x))} />;
}

describe('switch cases form', () => {
  it('adds, edits, reorders and removes cases', () => {
    const spy = vi.fn();
    render(<Host def={CASES} initial={[]} spy={spy} />);
    expect(screen.getByText(/No case yet/)).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'Add case' }));
    expect(spy).toHaveBeenLastCalledWith([{ when: '', goto: 'low' }]);
    fireEvent.change(screen.getByLabelText('Case 1: when'), { target: { value: 'inputs.n > 3' } });
    fireEvent.change(screen.getByLabelText('Case 1: go to'), { target: { value: 'high' } });
    fireEvent.click(screen.getByRole('button', { name: 'Add case' }));
    fireEvent.change(screen.getByLabelText('Case 2: when'), { target: { value: 'true' } });
    fireEvent.change(screen.getByLabelText('Case 2: go to'), { target: { value: 'end' } });
    expect(spy).toHaveBeenLastCalledWith([
      { when: 'inputs.n > 3', goto: 'high' },
      { when: 'true', goto: 'end' },
    ]);
    expect((screen.getByRole('button', { name: 'Move case 1 up' }) as HTMLButtonElement).disabled).toBe(true);
    fireEvent.click(screen.getByRole('button', { name: 'Move case 2 up' }));
    expect(spy).toHaveBeenLastCalledWith([
      { when: 'true', goto: 'end' },
      { when: 'inputs.n > 3', goto: 'high' },
    ]);
    fireEvent.click(screen.getByRole('button', { name: 'Remove case 1' }));
    expect(spy).toHaveBeenLastCalledWith([{ when: 'inputs.n > 3', goto: 'high' }]);
  });

  it('marks the row and the control the validator names, and keeps an unknown target visible', () => {
    const problemsAt = new Map([['switch.cases[1].goto', ['`goto` refers to unknown step `hgh`; did you mean `high`?']]]);
    render(
      <Field
        {...base}
        def={CASES}
        value={[{ when: 'true', goto: 'low' }, { when: 'false', goto: 'hgh' }]}
        problems={['`goto` refers to unknown step `hgh`; did you mean `high`?']}
        problemsAt={problemsAt}
        onChange={() => {}}
      />,
    );
    expect(screen.getByTestId('case-2').className).toContain('invalid');
    expect(screen.getByTestId('case-1').className).not.toContain('invalid');
    const goto = screen.getByLabelText('Case 2: go to') as HTMLSelectElement;
    expect(goto.getAttribute('aria-invalid')).toBe('true');
    expect(goto.value).toBe('hgh');
    expect(screen.getByRole('alert').textContent).toContain('did you mean `high`');
  });
});

describe('other forms', () => {
  it('name/text pairs refuse a repeated name until it is fixed', () => {
    const spy = vi.fn();
    const def: FieldDef = { path: 'sandbox.env', label: 'Environment', type: 'pairs', keyLabel: 'Variable', valueLabel: 'Value' };
    render(<Host def={def} initial={{ A: '1' }} spy={spy} />);
    fireEvent.click(screen.getByRole('button', { name: 'Add variable' }));
    fireEvent.change(screen.getByLabelText('Variable 2'), { target: { value: 'A' } });
    expect(screen.getByRole('alert').textContent).toContain('`A` is named twice');
    expect(spy).not.toHaveBeenCalled();
    fireEvent.change(screen.getByLabelText('Variable 2'), { target: { value: 'B' } });
    fireEvent.change(screen.getByLabelText('Value 2'), { target: { value: 'two' } });
    expect(spy).toHaveBeenLastCalledWith({ A: '1', B: 'two' });
    fireEvent.click(screen.getByRole('button', { name: 'Remove A' }));
    expect(spy).toHaveBeenLastCalledWith({ B: 'two' });
  });

  it('on_error picks fail, continue or a step to go to', () => {
    const spy = vi.fn();
    const def: FieldDef = { path: 'on_error', label: 'On error', type: 'onerror' };
    render(<Host def={def} initial={undefined} spy={spy} />);
    const mode = screen.getByLabelText('On error') as HTMLSelectElement;
    expect(mode.value).toBe('');
    fireEvent.change(mode, { target: { value: 'goto' } });
    expect(spy).toHaveBeenLastCalledWith('goto low');
    fireEvent.change(screen.getByLabelText('On error: go to'), { target: { value: 'high' } });
    expect(spy).toHaveBeenLastCalledWith('goto high');
    fireEvent.change(mode, { target: { value: 'continue' } });
    expect(spy).toHaveBeenLastCalledWith('continue');
    expect(screen.queryByLabelText('On error: go to')).toBeNull();
    fireEvent.change(mode, { target: { value: '' } });
    expect(spy).toHaveBeenLastCalledWith(undefined);
  });

  it('inputs are rows of name, type, default and description; an enum is kept', () => {
    const spy = vi.fn();
    const def: FieldDef = { path: 'inputs', label: 'Inputs', type: 'inputs' };
    render(<Host def={def} initial={{ mood: { type: 'string', enum: ['happy', 'sad'], default: 'happy' } }} spy={spy} />);
    expect((screen.getByLabelText('Input 1: default') as HTMLInputElement).value).toBe('happy');
    fireEvent.change(screen.getByLabelText('Input 1: description'), { target: { value: 'How it feels' } });
    expect(spy).toHaveBeenLastCalledWith({ mood: { type: 'string', enum: ['happy', 'sad'], default: 'happy', description: 'How it feels' } });
    fireEvent.click(screen.getByRole('button', { name: 'Add input' }));
    fireEvent.change(screen.getByLabelText('Input 2: name'), { target: { value: 'n' } });
    fireEvent.change(screen.getByLabelText('Input 2: type'), { target: { value: 'integer' } });
    fireEvent.change(screen.getByLabelText('Input 2: default'), { target: { value: '3' } });
    expect(spy).toHaveBeenLastCalledWith(expect.objectContaining({ n: { type: 'integer', default: 3 } }));
    // What does not parse is kept as typed, for the validator to name.
    fireEvent.change(screen.getByLabelText('Input 2: default'), { target: { value: 'three' } });
    expect(spy).toHaveBeenLastCalledWith(expect.objectContaining({ n: { type: 'integer', default: 'three' } }));
    fireEvent.change(screen.getByLabelText('Input 2: type'), { target: { value: 'boolean' } });
    fireEvent.change(screen.getByLabelText('Input 2: default'), { target: { value: 'false' } });
    expect(spy).toHaveBeenLastCalledWith(expect.objectContaining({ n: { type: 'boolean', default: false } }));
    fireEvent.change(screen.getByLabelText('Input 2: name'), { target: { value: 'mood' } });
    expect(screen.getByRole('alert').textContent).toContain('`mood` is named twice');
  });

  it('a join priority picks branches in order', () => {
    const spy = vi.fn();
    const def: FieldDef = { path: 'join.priority', label: 'Priority', type: 'ids' };
    function IdsHost() {
      const [v, setV] = useState<unknown>(undefined);
      return <Field {...base} def={def} value={v} ids={['x', 'y', 'z']} onChange={(n) => (setV(n), spy(n))} />;
    }
    render(<IdsHost />);
    fireEvent.change(screen.getByLabelText('Add to Priority'), { target: { value: 'z' } });
    fireEvent.change(screen.getByLabelText('Add to Priority'), { target: { value: 'x' } });
    expect(spy).toHaveBeenLastCalledWith(['z', 'x']);
    fireEvent.click(screen.getByRole('button', { name: 'Move x up' }));
    expect(spy).toHaveBeenLastCalledWith(['x', 'z']);
  });

  it('the step panel edits retry as fields and shows no raw JSON for a switch', () => {
    const { flow } = parseFlow('version: 1\nname: s\nsteps:\n  - id: pick\n    switch: { cases: [{ when: "true", goto: low }] }\n    retry: { max: 2 }\n  - { id: low, tool: echo }\n');
    const onField = vi.fn();
    render(
      <StepPanel
        flow={flow}
        step={flow.steps[0]}
        targets={['low']}
        agents={[]}
        vars={[]}
        problems={new Map([['retry', ['missing field `max`']]])}
        readOnly={false}
        onField={onField}
        onRename={() => undefined}
        onDelete={() => {}}
        onClose={() => {}}
      />,
    );
    const retry = screen.getByRole('group', { name: 'Retry' });
    expect((within(retry).getByLabelText('Max retries') as HTMLInputElement).value).toBe('2');
    expect(within(retry).getByRole('alert').textContent).toContain('missing field');
    fireEvent.change(within(retry).getByLabelText('Backoff'), { target: { value: '1s' } });
    expect(onField).toHaveBeenLastCalledWith('retry.backoff', '1s');
    expect(screen.getByLabelText('Case 1: when')).toBeTruthy();
    expect(document.querySelectorAll('textarea.mono')).toHaveLength(0);
  });
});

import { cleanup, fireEvent, render, screen } from '@testing-library/react';
import { useState } from 'react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Field, type FieldDef } from './Fields';

afterEach(cleanup);

const base = { problems: [], readOnly: false, targets: ['b', 'c'], agents: ['writer'], vars: ['inputs.idea', 'steps.plan.output', 'state.score'] };

describe('builder fields', () => {
  it('shows a huge value cut and read-only until "Edit all"', () => {
    const def: FieldDef = { path: 'prompt', label: 'Prompt', type: 'template' };
    render(<Field {...base} def={def} value={'p'.repeat(60_000)} onChange={() => {}} />);
    expect(screen.queryByRole('textbox')).toBeNull();
    fireEvent.click(screen.getByRole('button', { name: /Edit all \(60,000 characters\)/ }));
    expect((screen.getByRole('textbox') as HTMLTextAreaElement).value).toHaveLength(60_000);
  });

  it('suggests template variables after {{ and inserts the one picked', () => {
    const onChange = vi.fn();
    const def: FieldDef = { path: 'prompt', label: 'Prompt', type: 'template' };
    function Host() {
      const [v, setV] = useState<unknown>('');
      return <Field {...base} def={def} value={v} onChange={(x) => (setV(x), onChange(x))} />;
    }
    render(<Host />);
    fireEvent.change(screen.getByLabelText('Prompt'), { target: { value: 'Plan {{ st' } });
    const options = screen.getAllByRole('option').map((o) => o.textContent);
    expect(options).toEqual(['steps.plan.output', 'state.score']);
    fireEvent.click(screen.getByRole('button', { name: 'steps.plan.output' }));
    expect(onChange).toHaveBeenLastCalledWith('Plan {{ steps.plan.output }}');
  });

  it('keeps JSON that does not parse as a draft, with its error, and applies JSON that does', () => {
    const onChange = vi.fn();
    const def: FieldDef = { path: 'with', label: 'Arguments', type: 'json' };
    render(<Field {...base} def={def} value={{ text: 'a' }} onChange={onChange} />);
    const box = screen.getByLabelText('Arguments');
    fireEvent.change(box, { target: { value: '{"text": ' } });
    expect(screen.getByRole('alert').textContent).toMatch(/^JSON: /);
    expect(onChange).not.toHaveBeenCalled();
    fireEvent.change(box, { target: { value: '{"text": "b"}' } });
    expect(onChange).toHaveBeenCalledWith({ text: 'b' });
    expect(screen.queryByRole('alert')).toBeNull();
  });

  it('marks a field the validator names, and offers the steps of its list as targets', () => {
    const def: FieldDef = { path: 'next', label: 'Next', type: 'target' };
    render(<Field {...base} def={def} value="c" problems={['`next` refers to unknown step']} onChange={() => {}} />);
    expect(screen.getByLabelText('Next').getAttribute('aria-invalid')).toBe('true');
    expect(screen.getAllByRole('option').map((o) => o.textContent)).toEqual(['(the next step)', 'end', 'b', 'c']);
    expect(screen.getByRole('alert').textContent).toContain('unknown step');
  });
});

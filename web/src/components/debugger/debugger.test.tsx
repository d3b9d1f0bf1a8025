import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../../api/client';
import type { EventRecord } from '../../api/types';
import { rowOf } from '../../lib/events';
import { inspectedOf } from './api';
import { BreakpointDot } from './BreakpointToggle';
import { stepIdsOf } from './StartRunDialog';
import { ValueEditor } from './StateInspector';

afterEach(cleanup);

function editor(value: unknown, onSave = vi.fn(async () => {})) {
  render(<ValueEditor path="steps.draft.output" value={value} onSave={onSave} />);
  fireEvent.click(screen.getByRole('button', { name: 'Edit steps.draft.output' }));
  return { onSave, box: screen.getByLabelText('steps.draft.output') as HTMLTextAreaElement, save: screen.getByRole('button', { name: 'Save' }) };
}

describe('the state inspector', () => {
  it('refuses text that is not JSON in place, with where and why, and sends nothing', () => {
    const { onSave, box, save } = editor('draft');
    expect(box.value).toBe('"draft"');
    fireEvent.change(box, { target: { value: '"EDITED' } });
    expect(screen.getByRole('alert').textContent).toMatch(/^not JSON/);
    expect(box.getAttribute('aria-invalid')).toBe('true');
    expect((save as HTMLButtonElement).disabled).toBe(true);
    fireEvent.submit(box.closest('form')!);
    expect(onSave).not.toHaveBeenCalled();
    fireEvent.change(box, { target: { value: '{\n  "a": 1,\n}' } });
    expect(screen.getByRole('alert').textContent).toMatch(/^not JSON at line 3, column 1/);
    fireEvent.change(box, { target: { value: '   ' } });
    expect(screen.getByRole('alert').textContent).toMatch(/^empty/);
  });

  it('sends the parsed value and closes the editor once saved', async () => {
    const { onSave, box, save } = editor({ n: 1 });
    fireEvent.change(box, { target: { value: '{"n": 2, "tags": ["x"]}' } });
    expect(screen.queryByRole('alert')).toBeNull();
    expect((save as HTMLButtonElement).disabled).toBe(false);
    await act(async () => fireEvent.click(save));
    expect(onSave).toHaveBeenCalledWith({ n: 2, tags: ['x'] });
    expect(screen.queryByLabelText('steps.draft.output')).toBeNull();
  });

  it("shows the server's refusal beside the value and keeps the text", async () => {
    const refuse = vi.fn(async () => {
      throw new ApiError(409, 'conflict', 'run r is running, not paused');
    });
    const { box, save } = editor('x', refuse);
    fireEvent.change(box, { target: { value: '"y"' } });
    await act(async () => fireEvent.click(save));
    expect(screen.getByRole('alert').textContent).toContain('not paused');
    expect((screen.getByLabelText('steps.draft.output') as HTMLTextAreaElement).value).toBe('"y"');
  });

  it('cuts a big value with show all', () => {
    render(<ValueEditor path="state.big" value={'x'.repeat(50_000)} onSave={async () => {}} />);
    const all = screen.getByRole('button', { name: /Show all \(50,000 characters\)/ });
    expect(screen.getByTestId('value').textContent!.length).toBeLessThan(50_000);
    fireEvent.click(all);
    expect(screen.getByTestId('value').textContent!.length).toBe(50_000);
  });

  it("reads finished steps' outputs and the shared state, and refuses another shape", () => {
    const st = inspectedOf({ state: { note: 'n' }, steps: { a: { output: 'A', error: null }, b: { output: null, error: { kind: 'tool', message: 'x' } } } });
    expect(st).toEqual({ state: { note: 'n' }, outputs: { a: 'A' } });
    expect(() => inspectedOf({ state: {} })).toThrow(/no `steps`/);
  });
});

describe('breakpoints', () => {
  it('toggle as buttons with aria-pressed', () => {
    const onToggle = vi.fn();
    render(<BreakpointDot step="review" on={false} onToggle={onToggle} />);
    const dot = screen.getByRole('button', { name: 'Breakpoint before review' });
    expect(dot.getAttribute('aria-pressed')).toBe('false');
    fireEvent.click(dot);
    expect(onToggle).toHaveBeenCalledWith('review');
  });

  it("lists a workflow's step ids, nested ones included", () => {
    const yaml = 'version: 1\nname: w\nsteps:\n  - { id: a, tool: echo }\n  - id: p\n    parallel:\n      - { id: b, tool: echo }\n';
    expect(stepIdsOf(yaml)).toEqual(['a', 'p', 'b']);
  });
});

describe('the event log', () => {
  it('summarises breakpoint changes and state edits', () => {
    const ev = (type: string, more: Record<string, unknown>) => ({ run_id: 'r', seq: 1, at_ms: 1, type, ...more }) as unknown as EventRecord;
    expect(rowOf(ev('breakpoints_set', { breakpoints: ['a', 'b'] })).summary).toBe('pauses before a, b');
    expect(rowOf(ev('breakpoints_set', { breakpoints: [] })).summary).toBe('no breakpoints');
    expect(rowOf(ev('state_edited', { target: { kind: 'step_output', step: 'draft' }, value: 'EDITED' })).summary).toBe('steps.draft.output = EDITED');
  });
});

import { act, renderHook } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Api } from '../../api/client';
import { addStep, setField } from '../../lib/flowGraph';
import { parseFlow, type Flow } from '../../lib/flow';
import { useFlow, useValidation } from './hooks';

afterEach(() => vi.useRealTimers());

/** A workflow of `n` echo steps, as the builder's 200-node bench opens. */
const big = (n: number) => `version: 1\nname: big\nsteps:\n${Array.from({ length: n }, (_, i) => `  - { id: s${i}, tool: echo, with: { text: "${i}" } }\n`).join('')}`;

describe('the YAML text is written lazily', () => {
  it('only while the YAML tab shows it; save and export write it on demand', () => {
    const { result, rerender } = renderHook(({ shown }) => useFlow(parseFlow(big(200)), shown), { initialProps: { shown: false } });
    expect(result.current.yaml).toBeUndefined();
    act(() => void result.current.edit(setField(result.current.flow, 's3', 'with.text', 'changed')));
    expect(result.current.yaml).toBeUndefined();
    expect(result.current.yamlNow()).toMatch(/text: "?changed/);
    rerender({ shown: true });
    expect(result.current.yaml).toMatch(/text: "?changed/);
    // The tab's text follows the canvas while shown.
    act(() => void result.current.edit(addStep(result.current.flow, 'tool').flow));
    expect(result.current.yaml).toContain('id: tool1');
    rerender({ shown: false });
    expect(result.current.yaml).toBeUndefined();
  });

  it('edits of a 200-step canvas do not serialise the document each time', () => {
    const { result } = renderHook(() => useFlow(parseFlow(big(200))));
    const t = performance.now();
    for (let i = 0; i < 50; i++) act(() => void result.current.edit(setField(result.current.flow, 's10', 'with.text', `v${i}`), 's10:with.text'));
    const editMs = (performance.now() - t) / 50;
    const t2 = performance.now();
    for (let i = 0; i < 10; i++) result.current.yamlNow();
    const yamlMs = (performance.now() - t2) / 10;
    // Printed for the record; the guard is that no edit waits for a serialisation.
    console.log(`200-step canvas: ${editMs.toFixed(1)} ms an edit, ${yamlMs.toFixed(1)} ms a YAML serialisation`);
    expect(result.current.yaml).toBeUndefined();
  });

  it('the validator gets the YAML once, after the edits stop, and never the same text twice', async () => {
    vi.useFakeTimers();
    const validate = vi.fn(async () => ({ valid: true, diagnostics: [] }));
    const api = { validate } as unknown as Api;
    const { result } = renderHook(() => {
      const st = useFlow(parseFlow(big(5)));
      const v = useValidation(api, st.yamlNow, st.flow);
      return { st, v };
    });
    const edit = (f: (x: Flow) => Flow) => act(() => void result.current.st.edit(f(result.current.st.flow)));
    await act(async () => void vi.advanceTimersByTime(400));
    expect(validate).toHaveBeenCalledTimes(1);
    for (let i = 0; i < 5; i++) {
      edit((f) => setField(f, 's1', 'with.text', `t${i}`));
      await act(async () => void vi.advanceTimersByTime(100));
    }
    expect(validate).toHaveBeenCalledTimes(1);
    await act(async () => void vi.advanceTimersByTime(400));
    expect(validate).toHaveBeenCalledTimes(2);
    expect((validate.mock.calls[1] as unknown as [string])[0]).toMatch(/text: "?t4/);
    // An edit and its undo: the same text as last checked is not sent again.
    edit((f) => setField(f, 's1', 'with.text', 'x'));
    act(() => result.current.st.travel(true));
    await act(async () => void vi.advanceTimersByTime(400));
    expect(validate).toHaveBeenCalledTimes(2);
  });
});

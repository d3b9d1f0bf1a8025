import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { Api } from '../../api/client';
import type { RunDetail, StepDetail, Whoami } from '../../api/types';
import Compare from '../../pages/Compare';
import { SessionContext } from '../../session';
import { windowOf } from './WindowList';

afterEach(cleanup);

const me = { tenant: 'default', key_id: 'k', role: 'admin', may: { start_runs: true, answer_approvals: true, operate_runs: true, edit_workflows: true, admin: true, platform: true } } as Whoami;

const step = (s: string, output: unknown): StepDetail =>
  ({ step: s, status: 'succeeded', duration_ms: 10, tokens: 5, usage: { prompt_tokens: 2, completion_tokens: 3 }, attempts: 1, output }) as StepDetail;
const detail = (id: string, steps: StepDetail[]): RunDetail =>
  ({
    run: { id, tenant: 'default', workflow: 'big', status: 'succeeded', inputs: {}, created_at_ms: 1000, updated_at_ms: 3500, last_seq: 9 },
    tokens: steps.length * 5,
    usage: { prompt_tokens: 0, completion_tokens: 0, cost_usd: 0 },
    steps,
    sandbox: [],
    waiting: [],
    ambiguous: [],
    joins: [],
  }) as RunDetail;

/** A server with two finished runs `a` and `b` (no events): what the compare page reads. */
function api(runs: Record<string, RunDetail>) {
  return new Api('k', async (input) => {
    const path = String(input);
    const m = /\/api\/v1\/runs\/([^/?]+)(\/events)?/.exec(path);
    const run = m && runs[m[1]];
    if (!run) return new Response(JSON.stringify({ error: { code: 'not_found', message: 'no such run' } }), { status: 404 });
    return new Response(JSON.stringify(m[2] ? [] : run), { status: 200, headers: { 'content-type': 'application/json' } });
  });
}

describe('windowOf', () => {
  it('finds the items overlapping a range and the padding around them', () => {
    const h = [100, 100, 100, 100, 100];
    expect(windowOf(h, 150, 320)).toEqual({ from: 1, to: 4, before: 100, after: 100 });
    expect(windowOf(h, -500, 50)).toEqual({ from: 0, to: 1, before: 0, after: 400 });
    expect(windowOf(h, 900, 1000)).toEqual({ from: 4, to: 5, before: 400, after: 0 });
    expect(windowOf([], 0, 100)).toEqual({ from: 0, to: 0, before: 0, after: 0 });
  });
});

describe('Compare, large', () => {
  it('opens two runs of 1,500 steps with big outputs drawing only the steps in view, and cuts the outputs', async () => {
    const big = (w: string) => Array.from({ length: 20_000 }, (_, i) => (i === 10_000 ? w : `w${i % 50}`)).join(' ');
    const steps = (w: string) => Array.from({ length: 1500 }, (_, i) => step(`s${i + 1}`, i % 10 === 0 ? big(w) : `step ${i + 1}`));
    const runs = { aaaa: detail('aaaa', steps('alpha')), bbbb: detail('bbbb', [...steps('beta'), step('extra', 'only in b')]) };
    const t = performance.now();
    const { container } = render(
      <SessionContext.Provider value={{ api: api(runs), me, signOut() {} }}>
        <Compare a="aaaa" b="bbbb" />
      </SessionContext.Provider>,
    );
    await screen.findByTestId('cmp-summary', undefined, { timeout: 10_000 });
    const ms = performance.now() - t;
    expect(screen.getByTestId('cmp-summary').textContent).toContain('1501 steps');
    // Only a window of the 1,501 steps is drawn (jsdom: a 768 px viewport, estimated heights).
    const drawn = container.querySelectorAll('[data-testid^="cmp-step-"]').length;
    expect(drawn).toBeGreaterThan(0);
    expect(drawn).toBeLessThan(40);
    expect(ms).toBeLessThan(5000);
    // The list's padding stands for the steps not drawn.
    const list = container.querySelector('ol.cmp-steps') as HTMLOListElement;
    expect(parseFloat(list.style.paddingBottom)).toBeGreaterThan(1000 * 100);
    // The first step's outputs differ in one word: each side is cut, with "show all".
    const first = screen.getByTestId('cmp-step-s1');
    await act(async () => {
      await new Promise((r) => setTimeout(r, 20));
    });
    const outs = first.querySelectorAll('[data-testid="cmp-output"]');
    expect(outs).toHaveLength(2);
    for (const o of outs) expect(o.textContent!.length).toBeLessThan(5000);
    fireEvent.click(screen.getByRole('button', { name: 'Show all' }));
    expect(first.querySelector('[data-testid="cmp-output"]')!.textContent!.length).toBeGreaterThan(70_000);
    // Scrolled to the end, the last steps are drawn instead of the first.
    await act(async () => {
      Object.defineProperty(list, 'getBoundingClientRect', { value: () => ({ top: -parseFloat(list.style.paddingBottom) - 2000, bottom: 0, left: 0, right: 0, width: 0, height: 0 }) });
      window.dispatchEvent(new Event('scroll'));
      await new Promise((r) => setTimeout(r, 50));
    });
    expect(screen.queryByTestId('cmp-step-s1')).toBeNull();
    expect(screen.getByTestId('cmp-step-extra')).toBeTruthy();
    expect(container.querySelectorAll('[data-testid^="cmp-step-"]').length).toBeLessThan(40);
  }, 20_000);
});

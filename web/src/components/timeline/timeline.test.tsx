import { cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { Api } from '../../api/client';
import type { EventRecord, Graph, RunDetail, Whoami } from '../../api/types';
import { SessionContext } from '../../session';
import { TimeTravel } from './TimeTravel';

afterEach(cleanup);

const ev = (seq: number, type: string, more: Record<string, unknown> = {}) =>
  ({ run_id: 'r', seq, at_ms: 1000 + seq, type, ...more }) as unknown as EventRecord;

function events(steps: number): EventRecord[] {
  const out = [ev(1, 'run_created', { workflow: 'w', inputs: {} })];
  for (let i = 0; i < steps; i++) {
    out.push(ev(out.length + 1, 'step_started', { step: `s${i}`, attempt: 1, visit: 1, key: 'k' }));
    out.push(ev(out.length + 1, 'step_succeeded', { step: `s${i}`, output: `out ${i}`, duration_ms: 1 }));
  }
  out.push(ev(out.length + 1, 'run_succeeded', { outputs: {} }));
  return out;
}

function renderTimeTravel(evs: EventRecord[], startRuns = true) {
  const me = { tenant: 'default', key_id: 'k', role: startRuns ? 'admin' : 'viewer', may: { start_runs: startRuns } } as unknown as Whoami;
  const run = { run: { id: 'r', workflow: 'w', status: 'succeeded' }, steps: [] } as unknown as RunDetail;
  const graph = { header: { agents: {} }, nodes: [], edges: [] } as unknown as Graph;
  return render(
    <SessionContext.Provider value={{ api: new Api('k'), me, signOut() {} }}>
      <TimeTravel run={run} graph={graph} events={evs} />
    </SessionContext.Provider>,
  );
}

describe('TimeTravel', () => {
  it('moves through the checkpoints with the keyboard and shows the state then', () => {
    renderTimeTravel(events(3));
    const list = screen.getByTestId('timeline');
    fireEvent.keyDown(list, { key: 'Home' });
    expect(screen.getByTestId('tt-state').textContent).toContain('At seq 2');
    fireEvent.keyDown(list, { key: 'ArrowDown' });
    fireEvent.keyDown(list, { key: 'ArrowDown' });
    // s0 finished, s1 started: s0's output is there, s1 has none yet, s2 is not reached.
    expect(list.getAttribute('aria-activedescendant')).toBe('cp-4');
    expect(screen.getByTestId('tt-step-s0').textContent).toContain('out 0');
    expect(screen.getByTestId('tt-step-s1').textContent).toContain('No output yet');
    expect(screen.queryByTestId('tt-step-s2')).toBeNull();
    fireEvent.keyDown(list, { key: 'End' });
    expect(screen.getByTestId('tt-state').textContent).toContain('run succeeded');
    expect(screen.getByRole('button', { name: 'Fork from here' })).toBeTruthy();
  });

  it('renders only the checkpoints in view of a long run', () => {
    const { container } = renderTimeTravel(events(2000));
    expect(screen.getByText(/4001 checkpoints/)).toBeTruthy();
    expect(container.querySelectorAll('[data-testid="checkpoint"]').length).toBeLessThan(60);
    const list = screen.getByTestId('timeline');
    fireEvent.keyDown(list, { key: 'End' });
    // The list scrolled the picked row into view (a browser sends the scroll event itself).
    expect(list.scrollTop).toBeGreaterThan(100_000);
    fireEvent.scroll(list);
    expect(container.querySelector('[aria-selected="true"]')?.textContent).toContain('run succeeded');
  });

  it('offers no fork to a key that may not start runs', () => {
    renderTimeTravel(events(1), false);
    fireEvent.keyDown(screen.getByTestId('timeline'), { key: 'Home' });
    expect(screen.queryByRole('button', { name: 'Fork from here' })).toBeNull();
  });
});

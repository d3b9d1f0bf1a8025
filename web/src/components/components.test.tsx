import { act, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { cleanup } from '@testing-library/react';
import { Api } from '../api/client';
import { rowOf } from '../lib/events';
import type { EventRecord } from '../api/types';
import { SignIn } from '../pages/SignIn';
import { EventLog } from './EventLog';
import { Big } from './NodePanel';

afterEach(cleanup);

describe('Big', () => {
  it('shows a large output cut, and all of it on request', () => {
    render(<Big value={'y'.repeat(50_000)} />);
    expect(screen.getByTestId('output').textContent).toHaveLength(4000);
    fireEvent.click(screen.getByRole('button', { name: /Show all \(50,000 characters\)/ }));
    expect(screen.getByTestId('output').textContent).toHaveLength(50_000);
  });
});

describe('EventLog', () => {
  it('renders only the rows in view of a long log, and filters', () => {
    const rows = Array.from({ length: 5000 }, (_, i) =>
      rowOf({ run_id: 'r', seq: i + 1, at_ms: 0, type: i % 2 ? 'step_started' : 'step_succeeded', step: `s${i}`, output: 'o' } as unknown as EventRecord),
    );
    const { container } = render(<EventLog rows={rows} />);
    expect(container.querySelectorAll('.row').length).toBeLessThan(60);
    fireEvent.change(screen.getByLabelText('Event kind'), { target: { value: 'step_started' } });
    expect(screen.getByTestId('log-count').textContent).toBe('2500 of 5000');
    fireEvent.change(screen.getByLabelText('Filter events'), { target: { value: 's4999' } });
    expect(screen.getByTestId('log-count').textContent).toBe('1 of 5000');
  });
});

describe('SignIn', () => {
  it("says why a key was refused, in the server's words", async () => {
    const fetcher = vi.fn(async () => new Response(JSON.stringify({ error: { code: 'unauthenticated', message: 'unknown key' } }), { status: 401 }));
    vi.stubGlobal('fetch', fetcher);
    const signedIn = vi.fn();
    render(<SignIn onSignedIn={signedIn} />);
    fireEvent.change(screen.getByLabelText('API key'), { target: { value: 'bk_bad' } });
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    });
    expect(screen.getByRole('alert').textContent).toBe('That key was not accepted: unknown key');
    expect(signedIn).not.toHaveBeenCalled();
    vi.unstubAllGlobals();
  });

  it('says when the server cannot be reached', async () => {
    const api = new Api('k', async () => {
      throw new TypeError('Failed to fetch');
    });
    await expect(api.me()).rejects.toMatchObject({ status: 0, code: 'unreachable' });
  });
});

import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Api } from '../../api/client';
import type { AgentInfo } from '../../api/types';
import type { Delivery, KeyInfo } from '../../api/adminTypes';
import { SessionContext, type Session } from '../../session';
import { auditQuery } from '../../pages/AdminAudit';
import { keyState } from '../../pages/AdminKeys';
import { lastAnswer } from '../../pages/AdminWebhooks';
import { filterAgents } from '../../pages/Agents';
import { AgentEditor, offsetOf } from './AgentEditor';
import { ConfirmButton, CutText, SecretOnce } from './Common';
import { DiffView, fold } from './DiffView';
import { sideBySide } from '../../lib/diff';

afterEach(cleanup);

describe('DiffView', () => {
  it('marks changed lines on both sides and folds long unchanged runs until asked', () => {
    const older = Array.from({ length: 30 }, (_, i) => `line ${i + 1}`);
    const newer = [...older];
    newer[14] = 'line fifteen';
    const { container } = render(<DiffView older={older.join('\n')} newer={newer.join('\n')} olderLabel="v1" newerLabel="v2" />);
    const changed = container.querySelectorAll('tr[data-kind="changed"]');
    expect(changed).toHaveLength(1);
    expect(changed[0].querySelector('.d-old')?.textContent).toContain('line 15');
    expect(changed[0].querySelector('.d-new')?.textContent).toContain('line fifteen');
    // 3 lines of context either side; the rest folded.
    expect(container.querySelectorAll('tr[data-kind="same"]')).toHaveLength(6);
    const buttons = screen.getAllByRole('button', { name: /Show \d+ unchanged lines/ });
    expect(buttons.map((b) => b.textContent)).toEqual(['Show 11 unchanged lines', 'Show 12 unchanged lines']);
    fireEvent.click(buttons[0]);
    expect(container.querySelectorAll('tr[data-kind="same"]')).toHaveLength(17);
    expect(screen.getByTestId('diff-stats').textContent).toContain('1 line removed or changed in v1, 1 added or changed in v2');
  });

  it('says when two versions are the same file', () => {
    render(<DiffView older="a: 1" newer="a: 1" olderLabel="v1" newerLabel="v2" />);
    expect(screen.getByTestId('diff-same').textContent).toBe('v1 and v2 are the same file.');
  });

  it('keeps a short unchanged run whole', () => {
    const blocks = fold(sideBySide('a\nb\nc\nd\ne', 'a\nb\nX\nd\ne'));
    expect(blocks.every((b) => b.kind === 'rows')).toBe(true);
  });
});

describe('CutText', () => {
  it('shows the first lines of a big definition, and all of it on request', () => {
    const text = Array.from({ length: 500 }, (_, i) => `l${i}`).join('\n');
    render(<CutText text={text} testId="src" />);
    expect(screen.getByTestId('src').textContent?.split('\n')).toHaveLength(40);
    fireEvent.click(screen.getByRole('button', { name: 'Show all (500 lines)' }));
    expect(screen.getByTestId('src').textContent).toBe(text);
  });
});

describe('SecretOnce and ConfirmButton', () => {
  it('copies the secret and says so', async () => {
    const writeText = vi.fn(async () => {});
    Object.defineProperty(navigator, 'clipboard', { value: { writeText }, configurable: true });
    const done = vi.fn();
    render(<SecretOnce label="The new key" secret="bk_1_secret" onDone={done} />);
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Copy' }));
    });
    expect(writeText).toHaveBeenCalledWith('bk_1_secret');
    expect(screen.getByRole('status').textContent).toBe('Copied');
    fireEvent.click(screen.getByRole('button', { name: 'I have copied it' }));
    expect(done).toHaveBeenCalled();
  });

  it('asks before acting, and Cancel does nothing', () => {
    const act1 = vi.fn();
    render(<ConfirmButton label="Revoke" question="Revoke k1?" onConfirm={act1} />);
    fireEvent.click(screen.getByRole('button', { name: 'Revoke' }));
    fireEvent.click(screen.getByRole('button', { name: 'Cancel' }));
    expect(act1).not.toHaveBeenCalled();
    fireEvent.click(screen.getByRole('button', { name: 'Revoke' }));
    expect(screen.getByRole('group', { name: 'Revoke k1?' })).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'Yes, revoke' }));
    expect(act1).toHaveBeenCalledOnce();
  });
});

describe('AgentEditor', () => {
  it("shows the server's diagnostics with their field and line, and goes to the line", async () => {
    const body = {
      error: {
        code: 'invalid',
        message: 'invalid agent',
        details: { diagnostics: [{ level: 'error', file: '<request>', line: 2, column: 14, path: 'temperature', message: '`temperature` must be a number' }] },
      },
    };
    const fetcher = vi.fn(async () => new Response(JSON.stringify(body), { status: 422 }));
    const session: Session = {
      api: new Api('k', fetcher as unknown as typeof fetch),
      me: { tenant: 't', key_id: 'k', role: 'editor', may: { start_runs: true, answer_approvals: true, operate_runs: true, edit_workflows: true, admin: false, platform: false } },
      signOut() {},
    };
    const saved = vi.fn();
    const text = 'name: a\ntemperature: hot\nmodel: x/y\n';
    render(
      <SessionContext.Provider value={session}>
        <AgentEditor title="New agent" initial={text} onSaved={saved} onCancel={() => {}} />
      </SessionContext.Provider>,
    );
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Save version' }));
    });
    expect(fetcher).toHaveBeenCalledWith('/api/v1/agents', expect.objectContaining({ method: 'POST', body: text }));
    const problems = screen.getByTestId('agent-problems');
    expect(problems.textContent).toContain('line 2, column 14');
    expect(problems.querySelector('.field-name')?.textContent).toBe('temperature');
    expect(screen.getByLabelText('Agent file').getAttribute('aria-invalid')).toBe('true');
    fireEvent.click(screen.getByRole('button', { name: 'Go to line 2' }));
    const area = screen.getByLabelText('Agent file') as HTMLTextAreaElement;
    expect(text.slice(area.selectionStart, area.selectionEnd)).toBe('hot');
    expect(saved).not.toHaveBeenCalled();
  });

  it('finds a line and column in a text', () => {
    expect(offsetOf('ab\ncd\nef', 2, 2)).toBe(4);
    expect(offsetOf('ab', 9, 1)).toBe(2);
  });
});

describe('page logic', () => {
  const agent = (name: string, model: string, role?: string) => ({ name, model, role, latest: 1, default_version: 1, created_at_ms: 0, updated_at_ms: 0 }) as AgentInfo;
  it('searches agents by every word over name, model and role', () => {
    const all = [agent('writer', 'openai/gpt-4o', 'copy writer'), agent('reviewer', 'scripted/reviewer', 'code reviewer'), agent('bare', 'local/smollm2')];
    expect(filterAgents(all, '').length).toBe(3);
    expect(filterAgents(all, 'REVIEW').map((a) => a.name)).toEqual(['reviewer']);
    expect(filterAgents(all, 'writer gpt').map((a) => a.name)).toEqual(['writer']);
    expect(filterAgents(all, 'smollm2').map((a) => a.name)).toEqual(['bare']);
    expect(filterAgents(all, 'writer scripted')).toEqual([]);
  });

  it('builds the audit query from the filter and the page', () => {
    expect(auditQuery({ action: '', keyId: '', since: '' }, 0)).toBe('limit=50');
    const q = new URLSearchParams(auditQuery({ action: ' key.create ', keyId: 'abc', since: '2026-01-02T03:04' }, 50));
    expect(q.get('after')).toBe('50');
    expect(q.get('action')).toBe('key.create');
    expect(q.get('key_id')).toBe('abc');
    expect(q.get('since')).toBe(new Date('2026-01-02T03:04').toISOString());
  });

  it("says a key's state", () => {
    const k = { id: 'a', tenant: 't', role: 'viewer', created_at_ms: 0 } as KeyInfo;
    expect(keyState(k)).toBe('active');
    expect(keyState({ ...k, expires_at_ms: 10 }, 20)).toBe('expired');
    expect(keyState({ ...k, revoked_at_ms: 5, expires_at_ms: 10 }, 20)).toBe('revoked');
  });

  it("says a delivery's last answer", () => {
    const d = { id: 'm', event_type: 'run.succeeded', status: 'pending', created_at_ms: 0, attempts: [], payload: {} } as Delivery;
    expect(lastAnswer(d)).toBe('not tried yet');
    expect(lastAnswer({ ...d, attempts: [{ n: 1, at_ms: 0, duration_ms: 3, status_code: 500 }, { n: 2, at_ms: 0, duration_ms: 3, error: 'refused: 10.0.0.1' }] })).toBe('refused: 10.0.0.1');
    expect(lastAnswer({ ...d, status: 'succeeded', attempts: [{ n: 1, at_ms: 0, duration_ms: 3, status_code: 204 }] })).toBe('HTTP 204');
  });
});

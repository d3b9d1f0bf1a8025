// The event log's rows: a one-line summary of each event, and the filter over them.
import type { EventRecord } from '../api/types';
import { pathOf } from './timeline';

export interface Row {
  seq: number;
  at: number;
  kind: string;
  step: string;
  summary: string;
}

const MAX_SUMMARY = 160;

function short(v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v) ?? '';
  const line = s.replace(/\s+/g, ' ').trim();
  return line.length > MAX_SUMMARY ? `${line.slice(0, MAX_SUMMARY)}…` : line;
}

export function rowOf(e: EventRecord): Row {
  const ev = e as EventRecord & Record<string, unknown>;
  const step = typeof ev.step === 'string' ? ev.step : '';
  let summary = '';
  switch (ev.type) {
    case 'step_succeeded':
      summary = short(ev.output);
      break;
    case 'step_failed':
      summary = short((ev.error as { message?: string } | undefined)?.message);
      break;
    case 'step_progress': {
      const p = ev.progress as { kind?: string; content?: unknown; model?: string } | undefined;
      summary = `${p?.kind ?? ''}${p?.model ? ` (${p.model})` : ''}${p?.content ? `: ${short(p.content)}` : ''}`;
      break;
    }
    case 'human_requested':
      summary = short(ev.prompt);
      break;
    case 'human_responded':
      summary = `${ev.approved === false ? 'rejected' : 'answered'}${ev.comment ? `: ${short(ev.comment)}` : ''}`;
      break;
    case 'tool_call_started':
    case 'tool_call_finished':
      summary = `${String(ev.tool ?? '')} ${short(ev.type === 'tool_call_started' ? ev.arguments : ev.output)}`;
      break;
    case 'run_failed':
      summary = short((ev.error as { message?: string } | undefined)?.message ?? ev.error);
      break;
    case 'run_created':
      summary = short(ev.inputs);
      break;
    case 'message_sent':
      summary = `${String(ev.from ?? '')} → ${ev.channel ? `#${String(ev.channel)}` : Array.isArray(ev.to) ? ev.to.join(', ') : ''}: ${short(ev.content)}`;
      break;
    case 'messages_delivered':
      summary = `${String(ev.count ?? 0)} message(s) into turn ${String(ev.turn ?? '?')}`;
      break;
    case 'memory_written':
      summary = `${String(ev.agent ?? '')} ${String(ev.op ?? 'set')} ${String(ev.key ?? '')}: ${short(ev.value)}`;
      break;
    case 'channel_subscribed':
      summary = `${String(ev.agent ?? '')} subscribed to #${String(ev.channel ?? '')}`;
      break;
    case 'breakpoints_set': {
      const ids = (ev.breakpoints as string[] | undefined) ?? [];
      summary = ids.length ? `pauses before ${ids.join(', ')}` : 'no breakpoints';
      break;
    }
    case 'policy_decided':
      summary = `${ev.decision === 'deny' ? 'DENIED' : 'allowed'} ${String(ev.tool ?? '')}${ev.agent ? ` for ${String(ev.agent)}` : ''} by rule ${String(ev.rule ?? '?')}${ev.reason ? `: ${short(ev.reason)}` : ''}`;
      break;
    case 'state_edited':
      summary = `${pathOf(ev.target)} = ${short(ev.value)}`;
      break;
  }
  return { seq: e.seq, at: e.at_ms, kind: ev.type, step, summary };
}

/** Rows whose kind is `kind` (or any, when empty) and whose step, kind or summary contain `text`. */
export function filterRows(rows: Row[], text: string, kind: string): Row[] {
  const t = text.trim().toLowerCase();
  return rows.filter(
    (r) => (!kind || r.kind === kind) && (!t || r.step.toLowerCase().includes(t) || r.kind.includes(t) || r.summary.toLowerCase().includes(t)),
  );
}

// A run's agents as a team, for the run viewer's Team panel: the messages they sent (from the
// run's `message_sent` events, numbered as the server numbers them: from 1, in log order),
// each receiver's delivery (still in its inbox, as `GET /runs/{id}`'s `team.inboxes` says, or
// delivered), and when the team last changed (the kinds after which the panel reads it again).
import type { EventRecord, TeamView } from '../api/types';

export interface SentMessage {
  /** Position among the run's messages, from 1 (the `id` of `team.inboxes`' messages). */
  id: number;
  seq: number;
  at: number;
  step: string;
  from: string;
  to: string[];
  channel?: string;
  content: string;
}

/** Event kinds after which an agent's state, an inbox, a channel or the memory may differ. */
export const TEAM_KINDS = new Set([
  'step_started',
  'step_succeeded',
  'step_failed',
  'step_cancelled',
  'step_woke',
  'human_requested',
  'human_responded',
  'agent_controlled',
  'message_sent',
  'messages_delivered',
  'channel_subscribed',
  'memory_written',
  'paused',
  'resumed',
  'run_succeeded',
  'run_failed',
  'run_cancelled',
]);

type Ev = EventRecord & Record<string, unknown>;

export function messagesOf(events: EventRecord[]): SentMessage[] {
  const out: SentMessage[] = [];
  for (const e of events as Ev[]) {
    if (e.type !== 'message_sent') continue;
    out.push({
      id: out.length + 1,
      seq: e.seq,
      at: e.at_ms,
      step: String(e.step ?? ''),
      from: String(e.from ?? ''),
      to: Array.isArray(e.to) ? e.to.map(String) : [],
      channel: typeof e.channel === 'string' ? e.channel : undefined,
      content: String(e.content ?? ''),
    });
  }
  return out;
}

/** The receivers of message `id` that have not been given it yet. */
export function undeliveredTo(team: TeamView | undefined | null, id: number): string[] {
  return Object.entries(team?.inboxes ?? {})
    .filter(([, inbox]) => inbox.some((m) => m.id === id))
    .map(([agent]) => agent)
    .sort();
}

/** The seq of the newest event that may have changed the team (0: none). */
export function lastTeamSeq(events: EventRecord[]): number {
  for (let i = events.length - 1; i >= 0; i--) if (TEAM_KINDS.has(events[i].type)) return events[i].seq;
  return 0;
}

/** `12s`, `4m 05s`, `2h 10m`: how long an agent has been in its state. */
export function since(ms: number, now: number): string {
  const s = Math.max(0, Math.floor((now - ms) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

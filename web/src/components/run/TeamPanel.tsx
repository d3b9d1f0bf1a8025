// The run's agents as a team, live: each agent's state and for how long, the channels and who
// subscribes to them, the shared memory (key, value cut, who wrote it) and the messages the
// agents sent (from the run's events), each with the receivers still waiting for it (from
// `GET /runs/{id}`'s `team`). The team is read again, at most a few times a second, after
// each event that may change it; runs without agents get an empty state.
import { useEffect, useMemo, useRef, useState } from 'react';
import type { ApiError } from '../../api/client';
import type { EventRecord, TeamView } from '../../api/types';
import { stepIdOf } from '../../lib/deltas';
import { preview } from '../../lib/preview';
import { lastTeamSeq, messagesOf, since, undeliveredTo, type SentMessage } from '../../lib/team';
import { useSession } from '../../session';
import { Big } from '../NodePanel';
import { ErrorBanner } from '../Status';

const SHOWN = 100;
const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
const REREAD_MS = 300;

export function TeamPanel({ runId, team: initial, events, live, onStep }: { runId: string; team?: TeamView | null; events: EventRecord[]; live: boolean; onStep?(step: string): void }) {
  const { api } = useSession();
  const [team, setTeam] = useState(initial ?? undefined);
  const [error, setError] = useState<ApiError>();
  const seq = lastTeamSeq(events);
  const timer = useRef<ReturnType<typeof setTimeout>>(undefined);
  const first = useRef(seq);
  useEffect(() => setTeam(initial ?? undefined), [initial]);
  // Read the team again after an event that may have changed it (not for the events the page
  // opened with: `initial` has them).
  const hasTeam = team !== undefined;
  useEffect(() => {
    // A run without agents never has a team: nothing to read again.
    if (seq === first.current || !hasTeam) return;
    clearTimeout(timer.current);
    timer.current = setTimeout(() => {
      api.run(runId).then(
        (d) => {
          setTeam(d.team ?? undefined);
          setError(undefined);
        },
        (e: ApiError) => setError(e),
      );
    }, REREAD_MS);
  }, [api, runId, seq, hasTeam]);
  useEffect(() => () => clearTimeout(timer.current), []);
  const messages = useMemo(() => messagesOf(events), [events]);

  return (
    <section className="card rv-team" aria-labelledby="team-title" data-testid="team-panel">
      <header>
        <h2 id="team-title">Team</h2>
        {team && (
          <span className="muted small">
            {count(Object.keys(team.agents).length, 'agent')} · {count(messages.length, 'message')} · {count(Object.keys(team.memory ?? {}).length, 'memory key')}
          </span>
        )}
      </header>
      <ErrorBanner error={error} />
      {!team ? (
        <p className="muted" data-testid="team-empty">
          This run has no agents. Workflows that declare <span className="mono">agents:</span> show here each agent's state, their messages and channels, and the shared memory.
        </p>
      ) : (
        <div className="rv-team-grid">
          <div>
            <Agents team={team} live={live} />
            <Channels team={team} messages={messages} />
          </div>
          <div>
            <Memory team={team} onStep={onStep} />
          </div>
          <Messages team={team} messages={messages} onStep={onStep} />
        </div>
      )}
    </section>
  );
}

function Agents({ team, live }: { team: TeamView; live: boolean }) {
  const [now, setNow] = useState(Date.now);
  useEffect(() => {
    setNow(Date.now());
    if (!live) return;
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, [live, team]);
  const agents = Object.entries(team.agents).sort(([a], [b]) => a.localeCompare(b));
  return (
    <>
      <h3>Agents</h3>
      <table className="rv-table" data-testid="team-agents">
        <thead>
          <tr>
            <th scope="col">Agent</th>
            <th scope="col">State</th>
            <th scope="col">Since</th>
          </tr>
        </thead>
        <tbody>
          {agents.map(([name, a]) => (
            <tr key={name} data-testid={`agent-${name}`} data-state={a.state}>
              <td className="mono">{name}</td>
              <td>
                <span className={`pill a-${a.state}`}>{a.state}</span>
                {a.by && <span className="muted small"> by {a.by}</span>}
              </td>
              <td className="small" title={new Date(a.since_ms).toLocaleString()}>
                {live ? `${since(a.since_ms, now)}` : new Date(a.since_ms).toLocaleTimeString()}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

function Channels({ team, messages }: { team: TeamView; messages: SentMessage[] }) {
  const channels = Object.entries(team.channels ?? {}).sort(([a], [b]) => a.localeCompare(b));
  return (
    <>
      <h3>Channels</h3>
      {channels.length === 0 ? (
        <p className="muted small">No channels.</p>
      ) : (
        <ul className="rv-channels" data-testid="team-channels">
          {channels.map(([name, subs]) => (
            <li key={name} data-testid={`channel-${name}`}>
              <span className="mono">#{name}</span> <span className="muted small">· {count(messages.filter((m) => m.channel === name).length, 'message')} · subscribers:</span>{' '}
              <span className="small">{subs.length ? subs.join(', ') : <span className="muted">none</span>}</span>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

function Memory({ team, onStep }: { team: TeamView; onStep?(step: string): void }) {
  const [all, setAll] = useState(false);
  const every = Object.entries(team.memory ?? {}).sort(([a], [b]) => a.localeCompare(b));
  const entries = all ? every : every.slice(0, SHOWN);
  return (
    <>
      <h3>Shared memory</h3>
      {entries.length === 0 ? (
        <p className="muted small">Nothing written yet.</p>
      ) : (
        <ul className="rv-memory" data-testid="team-memory">
          {entries.map(([key, m]) => {
            const p = preview(m.value, 160);
            return (
              <li key={key} data-testid={`memory-${key}`}>
                <div>
                  <span className="mono">{key}</span>{' '}
                  <span className="muted small">
                    · v{m.version} · by {m.by} in{' '}
                    {onStep ? (
                      <button type="button" className="link mono" onClick={() => onStep(stepIdOf(m.step))}>
                        {m.step}
                      </button>
                    ) : (
                      <span className="mono">{m.step}</span>
                    )}
                  </span>
                </div>
                {p.truncated ? (
                  <details>
                    <summary className="rv-value mono small">{p.text.replace(/\s+/g, ' ')}…</summary>
                    <Big value={m.value} />
                  </details>
                ) : (
                  <div className="rv-value mono small">{p.text.replace(/\s+/g, ' ')}</div>
                )}
              </li>
            );
          })}
        </ul>
      )}
      {!all && every.length > SHOWN && (
        <button type="button" onClick={() => setAll(true)}>
          Show all {every.length} keys (the first {SHOWN} are shown)
        </button>
      )}
    </>
  );
}

function Messages({ team, messages, onStep }: { team: TeamView; messages: SentMessage[]; onStep?(step: string): void }) {
  const [all, setAll] = useState(false);
  const shown = all ? messages : messages.slice(-SHOWN);
  return (
    <div className="rv-messages">
      <h3>
        Messages <span className="muted small">· {messages.length} sent</span>
      </h3>
      {messages.length === 0 ? (
        <p className="muted small">No message sent yet.</p>
      ) : (
        <>
          {!all && messages.length > SHOWN && (
            <button type="button" onClick={() => setAll(true)}>
              Show all {messages.length} messages (the newest {SHOWN} are shown)
            </button>
          )}
          <ol className="rv-msglist" data-testid="team-messages">
            {shown.map((m) => {
              const waiting = undeliveredTo(team, m.id);
              const got = m.to.filter((a) => !waiting.includes(a));
              const p = preview(m.content, 400);
              return (
                <li key={m.id} data-testid="team-message">
                  <div className="small">
                    <span className="muted mono">#{m.id}</span> <strong>{m.from}</strong> →{' '}
                    {m.channel ? <span className="mono">#{m.channel}</span> : m.to.join(', ')}
                    <span className="muted">
                      {' '}
                      · {new Date(m.at).toLocaleTimeString()} · from{' '}
                      {onStep ? (
                        <button type="button" className="link mono" onClick={() => onStep(stepIdOf(m.step))}>
                          {m.step}
                        </button>
                      ) : (
                        m.step
                      )}
                    </span>
                  </div>
                  <div className="rv-msg">
                    {p.text}
                    {p.truncated && '…'}
                  </div>
                  <div className="small" data-testid="delivery">
                    {got.length > 0 && <span className="rv-ok">delivered to {got.join(', ')}</span>}
                    {got.length > 0 && waiting.length > 0 && ' · '}
                    {waiting.length > 0 && <span className="rv-warn">waiting in the inbox of {waiting.join(', ')}</span>}
                    {m.to.length === 0 && <span className="muted">no receiver (no other subscriber)</span>}
                  </div>
                </li>
              );
            })}
          </ol>
        </>
      )}
    </div>
  );
}

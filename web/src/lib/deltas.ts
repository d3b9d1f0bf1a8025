// A running model's output as it streams: the `model_delta` messages of one run's WebSocket
// subscription (`/api/v1/ws`, `{"subscribe": {"run": ID, "after": SEQ}}`), kept per step
// instance outside React. A component showing one step's text subscribes to that step only,
// so a delta re-renders that text and nothing else of the page.
//
// The socket's messages are documented in docs/api.md (`GET /api/v1/ws`); they are not in the
// OpenAPI document, so the fields read here are named once, below.
import { KEY_PROTOCOL_PREFIX, PROTOCOL, backoff, socketUrl, type LiveDeps, type SocketLike } from './live';

/** A `model_delta`'s fields this client reads (see `ModelDelta` in crates/types/src/event.rs). */
export interface Delta {
  /** The step instance (`id`, or `id[2]` inside a map). */
  step: string;
  agent: string;
  /** The model turn within the step (1, then one more after each round of tool calls). */
  turn: number;
  text: string;
}

/** What one step instance's model has streamed in its current turn. */
export interface Streamed {
  step: string;
  agent: string;
  turn: number;
  text: string;
  /** Deltas received for this turn (changes with every delta: a snapshot's identity). */
  count: number;
  /** The turn's prompt came through the subscription before its first delta: the text is
   * whole. Otherwise the page started following mid-answer and the start may be missing. */
  whole: boolean;
}

/** The id of the workflow step a step instance path is of (`review[2]` -> `review`). */
export function stepIdOf(path: string): string {
  const i = path.indexOf('[');
  return i < 0 ? path : path.slice(0, i);
}

/** The events after which a step streams no more (until it starts again). */
const ENDS = new Set(['step_succeeded', 'step_failed', 'step_cancelled']);

export class DeltaStore {
  /** `step#turn` of the turns whose prompt the subscription delivered. */
  private readonly prompted = new Set<string>();
  private readonly byStep = new Map<string, Streamed>();
  private readonly listeners = new Map<string, Set<() => void>>();
  private readonly empty: Streamed[] = [];
  private readonly cached = new Map<string, Streamed[]>();

  /** Appends a delta to its step instance's text; a new turn starts a new text. */
  add(d: Delta): void {
    const prev = this.byStep.get(d.step);
    const next: Streamed =
      prev && prev.turn === d.turn
        ? { ...prev, text: prev.text + d.text, count: prev.count + 1 }
        : { step: d.step, agent: d.agent, turn: d.turn, text: d.text, count: 1, whole: this.prompted.has(`${d.step}#${d.turn}`) };
    this.byStep.set(d.step, next);
    const id = stepIdOf(d.step);
    this.cached.delete(id);
    for (const l of this.listeners.get(id) ?? []) l();
  }

  /** An event of the subscription: a turn's prompt means its deltas will all come; a step
   * that ended has its whole output in the log, so its streamed text is dropped. */
  event(e: { type?: string; step?: unknown; progress?: { kind?: string; turn?: unknown } }): void {
    if (typeof e.step !== 'string') return;
    if (e.type === 'step_progress' && e.progress?.kind === 'prompt') this.prompted.add(`${e.step}#${String(e.progress.turn)}`);
    else if (e.type && ENDS.has(e.type) && this.byStep.delete(e.step)) {
      for (const k of this.prompted) if (k.startsWith(`${e.step}#`)) this.prompted.delete(k);
      const id = stepIdOf(e.step);
      this.cached.delete(id);
      for (const l of this.listeners.get(id) ?? []) l();
    }
  }

  /** The instances of workflow step `id` that streamed, in the order they first did. A new
   * array only when one of them changed (a stable snapshot for `useSyncExternalStore`). */
  of(id: string): Streamed[] {
    const hit = this.cached.get(id);
    if (hit) return hit;
    const out = [...this.byStep.values()].filter((s) => stepIdOf(s.step) === id);
    const snap = out.length ? out : this.empty;
    this.cached.set(id, snap);
    return snap;
  }

  /** Calls `l` on every delta of workflow step `id` (any of its instances). */
  subscribe(id: string, l: () => void): () => void {
    let set = this.listeners.get(id);
    if (!set) this.listeners.set(id, (set = new Set()));
    set.add(l);
    return () => {
      set.delete(l);
      if (!set.size) this.listeners.delete(id);
    };
  }
}

const browserDeps: LiveDeps = {
  open: (url, protocols) => new WebSocket(url, protocols) as unknown as SocketLike,
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
};

/**
 * Follows one run's `model_delta`s into `store` over its own WebSocket until `stop()`:
 * subscribes from `after()` (the events the page already has), reads of the events only the
 * turns' prompts (the page reads the events from its event stream) and reconnects with a doubling backoff if the socket
 * drops. Deltas are not logged: those streamed while it was down are not sent again (the
 * step's logged `model_reply` holds the whole answer).
 */
export function followDeltas(key: string, run: string, after: () => number, store: DeltaStore, deps: LiveDeps = browserDeps, url = socketUrl(location)): () => void {
  let socket: SocketLike | null = null;
  let timer: unknown = null;
  let failures = 0;
  let stopped = false;
  const connect = () => {
    timer = null;
    let s: SocketLike;
    try {
      s = deps.open(url, [PROTOCOL, KEY_PROTOCOL_PREFIX + key]);
    } catch {
      retry();
      return;
    }
    socket = s;
    s.onopen = () => s.send(JSON.stringify({ subscribe: { run, after: after() } }));
    s.onmessage = (m) => {
      let msg: { type?: string; delta?: Delta; event?: Parameters<DeltaStore['event']>[0]; error?: unknown };
      try {
        msg = JSON.parse(String(m.data));
      } catch {
        return;
      }
      if (msg.type === 'subscribed') failures = 0;
      else if (msg.type === 'event' && msg.event) store.event(msg.event);
      else if (msg.type === 'model_delta' && msg.delta && typeof msg.delta.step === 'string' && typeof msg.delta.text === 'string') store.add(msg.delta);
    };
    s.onerror = () => {};
    s.onclose = () => {
      if (socket !== s) return;
      socket = null;
      retry();
    };
  };
  const retry = () => {
    if (stopped) return;
    timer = deps.setTimer(connect, backoff(failures++));
  };
  connect();
  return () => {
    stopped = true;
    if (timer !== null) deps.clearTimer(timer);
    const s = socket;
    socket = null;
    if (s) {
      s.onclose = null;
      s.close();
    }
  };
}

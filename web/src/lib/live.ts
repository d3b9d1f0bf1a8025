// The tenant's run events over one WebSocket (`/api/v1/ws`, `{"subscribe_tenant": {}}`), shared
// by the pages of a signed-in tab. A browser's WebSocket cannot send the key header, so the key
// goes as the subprotocol `baton.key.KEY` next to `baton.v1` (the server answers `baton.v1`
// only; the key is never put in the URL, where logs would keep it).
//
// The socket reconnects with a doubling backoff (0.5 s, 1 s, 2 s ... at most 10 s). Its state:
// `connecting` (the first try), `live` (subscribed), `reconnecting` (it was up and dropped, or
// the first tries failed fewer than FALLBACK_AFTER times) and `polling` (it could not connect
// FALLBACK_AFTER times in a row: the pages poll, and the socket keeps trying in the background).
// Every time it becomes `live` again the pages reload once: events sent while it was down are
// not replayed by a tenant subscription.
import type { EventRecord } from '../api/types';

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'polling' | 'closed';

export const PROTOCOL = 'baton.v1';
export const KEY_PROTOCOL_PREFIX = 'baton.key.';
export const BACKOFF_MS = 500;
export const BACKOFF_MAX_MS = 10_000;
/** Failed connections in a row before the pages fall back to polling. */
export const FALLBACK_AFTER = 3;

/** The delay before reconnection attempt `n` (0-based). */
export function backoff(n: number): number {
  return Math.min(BACKOFF_MS * 2 ** Math.min(n, 20), BACKOFF_MAX_MS);
}

/** The subset of the browser's WebSocket this client uses (tests give a fake). */
export interface SocketLike {
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(): void;
}

export interface LiveDeps {
  open(url: string, protocols: string[]): SocketLike;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(t: unknown): void;
}

const browserDeps: LiveDeps = {
  open: (url, protocols) => new WebSocket(url, protocols) as unknown as SocketLike,
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
};

/** The socket's URL for a page served from `loc` (ws: for http:, wss: for https:). */
export function socketUrl(loc: { protocol: string; host: string }): string {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/api/v1/ws`;
}

export type EventListener = (e: EventRecord) => void;
export type StateListener = (s: LiveState) => void;

export class LiveSocket {
  private socket: SocketLike | null = null;
  private timer: unknown = null;
  /** Failed connections since the last time it was live. */
  private failures = 0;
  private stateNow: LiveState = 'connecting';
  private readonly events = new Set<EventListener>();
  private readonly states = new Set<StateListener>();
  private readonly resyncs = new Set<() => void>();

  constructor(
    private readonly url: string,
    private readonly key: string,
    private readonly deps: LiveDeps = browserDeps,
  ) {}

  get state(): LiveState {
    return this.stateNow;
  }

  /** Starts connecting (once). */
  start(): void {
    if (this.socket || this.timer !== null || this.stateNow === 'closed') return;
    this.connect();
  }

  /** Closes the socket for good (sign-out, the tab's app unmounting). */
  stop(): void {
    this.setState('closed');
    if (this.timer !== null) this.deps.clearTimer(this.timer);
    this.timer = null;
    const s = this.socket;
    this.socket = null;
    if (s) {
      s.onclose = null;
      s.close();
    }
  }

  onEvent(l: EventListener): () => void {
    this.events.add(l);
    return () => this.events.delete(l);
  }

  /** `l` runs each time the subscription starts (again) or events were dropped: what the
   * pages show may have missed events, so they reload it once. */
  onResync(l: () => void): () => void {
    this.resyncs.add(l);
    return () => this.resyncs.delete(l);
  }

  onState(l: StateListener): () => void {
    this.states.add(l);
    return () => this.states.delete(l);
  }

  private setState(s: LiveState) {
    if (s === this.stateNow) return;
    this.stateNow = s;
    for (const l of this.states) l(s);
  }

  private connect() {
    this.timer = null;
    let s: SocketLike;
    try {
      s = this.deps.open(this.url, [PROTOCOL, KEY_PROTOCOL_PREFIX + this.key]);
    } catch {
      this.failed();
      return;
    }
    this.socket = s;
    let opened = false;
    s.onopen = () => {
      opened = true;
      s.send(JSON.stringify({ subscribe_tenant: {} }));
    };
    s.onmessage = (m) => {
      let msg: { type?: string; event?: EventRecord; error?: unknown };
      try {
        msg = JSON.parse(String(m.data));
      } catch {
        return;
      }
      if (msg.type === 'subscribed') {
        this.failures = 0;
        this.setState('live');
        this.resync();
      } else if (msg.type === 'event' && msg.event) {
        for (const l of this.events) l(msg.event);
      } else if (msg.type === 'lagged') {
        // Events were dropped for this socket: the pages reload as after a reconnection.
        this.resync();
      } else if (msg.error) {
        // The subscription was refused (a runner key follows only its own runs): poll, for
        // good (trying again would be refused again).
        s.onclose = null;
        s.close();
        this.socket = null;
        this.setState('polling');
      }
    };
    s.onerror = () => {};
    s.onclose = () => {
      if (this.socket !== s) return;
      this.socket = null;
      // A socket that was up and dropped starts the backoff again; one that never opened adds
      // to the failures in a row.
      this.failures = opened ? 1 : this.failures + 1;
      this.setState(this.failures >= FALLBACK_AFTER ? 'polling' : 'reconnecting');
      this.schedule();
    };
  }

  private failed() {
    this.failures++;
    this.setState(this.failures >= FALLBACK_AFTER ? 'polling' : 'reconnecting');
    this.schedule();
  }

  private schedule() {
    if (this.stateNow === 'closed') return;
    this.timer = this.deps.setTimer(() => this.connect(), backoff(this.failures - 1));
  }

  private resync() {
    for (const l of this.resyncs) l();
  }
}

/** What the pages do while the socket is in `state`: follow events, or poll. */
export function polling(state: LiveState): boolean {
  return state === 'reconnecting' || state === 'polling';
}

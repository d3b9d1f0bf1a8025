// The tab's one live socket (src/lib/live.ts) for the pages of a signed-in session, and the
// hook that keeps a resource fresh with it: reloaded when a live event concerns it, polled only
// while the socket is down.
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, useSyncExternalStore, type ReactNode } from 'react';
import { ApiError } from '../../api/client';
import type { EventRecord } from '../../api/types';
import { LiveSocket, polling, socketUrl, type LiveState } from '../../lib/live';
import { useSession } from '../../session';

const LiveContext = createContext<LiveSocket | null>(null);

export function LiveProvider({ children }: { children: ReactNode }) {
  const { api } = useSession();
  const socket = useMemo(() => new LiveSocket(socketUrl(window.location), api.key), [api.key]);
  useEffect(() => {
    socket.start();
    return () => socket.stop();
  }, [socket]);
  return <LiveContext.Provider value={socket}>{children}</LiveContext.Provider>;
}

export function useLiveSocket(): LiveSocket | null {
  return useContext(LiveContext);
}

/** The socket's state (`polling` without a provider). */
export function useLiveState(): LiveState {
  const s = useContext(LiveContext);
  return useSyncExternalStore(
    useCallback((cb: () => void) => (s ? s.onState(cb) : () => {}), [s]),
    () => s?.state ?? 'polling',
  );
}

/** Calls `fn` with each live event (the latest `fn`; no re-subscription when it changes). */
export function useLiveEvents(fn: (e: EventRecord) => void) {
  const s = useContext(LiveContext);
  const ref = useRef(fn);
  ref.current = fn;
  useEffect(() => (s ? s.onEvent((e) => ref.current(e)) : undefined), [s]);
}

export interface LiveResource<T> {
  data?: T;
  error?: ApiError;
  reload(): void;
}

/**
 * Loads now; then, while the socket is live, again when an event `relevant` arrives (at most
 * once every `gapMs`, and never two loads at once) or the subscription restarts; while it is
 * not, every `pollMs`. The last good data stays shown while an error is reported.
 */
export function useLiveResource<T>(
  load: (signal: AbortSignal) => Promise<T>,
  opts: { key: string; pollMs: number; relevant: (type: string) => boolean; gapMs?: number },
): LiveResource<T> {
  const socket = useContext(LiveContext);
  const state = useLiveState();
  const [data, setData] = useState<T>();
  const [error, setError] = useState<ApiError>();
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const relevantRef = useRef(opts.relevant);
  relevantRef.current = opts.relevant;
  const { key, pollMs, gapMs = 300 } = opts;
  const poll = polling(state);
  // Whether the socket is connecting still: load once, neither poll nor follow yet.
  const connecting = state === 'connecting';

  useEffect(() => {
    let stopped = false;
    let busy = false;
    let again = false;
    let last = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ctrl = new AbortController();
    const run = async () => {
      timer = undefined;
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      last = Date.now();
      try {
        const d = await loadRef.current(ctrl.signal);
        if (!stopped) {
          setData(d);
          setError(undefined);
        }
      } catch (e) {
        if (!stopped && (e as Error).name !== 'AbortError') setError(e instanceof ApiError ? e : new ApiError(0, 'client', String(e)));
      }
      busy = false;
      if (stopped) return;
      if (again) {
        again = false;
        request();
      } else if (poll) timer = setTimeout(run, pollMs);
    };
    const request = () => {
      if (stopped || timer !== undefined) return;
      if (busy) {
        again = true;
        return;
      }
      timer = setTimeout(run, Math.max(0, last + gapMs - Date.now()));
    };
    void run();
    const offs: (() => void)[] = [];
    if (socket && !poll && !connecting) {
      offs.push(socket.onEvent((e) => relevantRef.current(e.type) && request()));
      offs.push(socket.onResync(request));
    }
    return () => {
      stopped = true;
      clearTimeout(timer);
      ctrl.abort();
      for (const off of offs) off();
    };
  }, [key, pollMs, gapMs, poll, connecting, socket, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, reload };
}

import { useCallback, useEffect, useRef, useState } from 'react';
import { ApiError } from './api/client';

export interface Polled<T> {
  data?: T;
  error?: ApiError;
  reload(): void;
}

/**
 * Loads now and again every `ms` (after the previous load ends, so a slow server is never
 * asked twice at once); the last good data stays shown while an error is reported.
 */
export function usePoll<T>(load: (signal: AbortSignal) => Promise<T>, ms: number, key: string): Polled<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<ApiError>();
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ctrl = new AbortController();
    const run = async () => {
      try {
        const d = await loadRef.current(ctrl.signal);
        if (stopped) return;
        setData(d);
        setError(undefined);
      } catch (e) {
        if (stopped || (e as Error).name === 'AbortError') return;
        setError(e instanceof ApiError ? e : new ApiError(0, 'client', String(e)));
      }
      if (!stopped) timer = setTimeout(run, ms);
    };
    void run();
    return () => {
      stopped = true;
      clearTimeout(timer);
      ctrl.abort();
    };
  }, [key, ms, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, reload };
}

// The run viewer's debugger state: the run's breakpoints (as the server last answered, until
// the run's detail is read again), toggling one, and continuing with or without stepping.
// Only for roles that may operate runs, and only while the run is not finished.
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type { ApiError } from '../../api/client';
import { useSession } from '../../session';
import { changeBreakpoints, resumeRun, type DebugView } from './api';

export interface Debugger {
  /** The user may operate this run and it can still stop somewhere. */
  active: boolean;
  debug?: DebugView;
  breakpoints: ReadonlySet<string>;
  toggle(step: string): void;
  resume(stepping: boolean): Promise<void>;
  busy: boolean;
  error?: ApiError;
  clearError(): void;
}

export function useDebugger(runId: string, debug: DebugView | null | undefined, finished: boolean, refresh: () => void): Debugger {
  const { api, me } = useSession();
  // The server's last answer to a change; while the change is queued for the process running
  // the run, a detail read before it applied it would show the old breakpoints.
  const [answered, setAnswered] = useState<{ list: string[]; queued: boolean }>();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  // A fresh detail is the truth again, once it has the queued change (`breakpoints_set`).
  useEffect(() => {
    setAnswered((a) => (a && a.queued && debug && !sameList(a.list, debug.breakpoints) ? a : undefined));
  }, [debug]);
  const list = answered?.list ?? debug?.breakpoints;
  const breakpoints = useMemo(() => new Set(list ?? []), [list]);
  const current = useRef(breakpoints);
  current.current = breakpoints;

  // Stable, so the graph's nodes are not rebuilt on every render.
  const toggle = useCallback(
    (step: string) => {
      const on = current.current.has(step);
      setError(undefined);
      changeBreakpoints(api, runId, on ? { remove: [step] } : { add: [step] }).then(
        (r) => {
          setAnswered({ list: r.breakpoints, queued: r.queued });
          refresh();
        },
        (e: ApiError) => setError(e),
      );
    },
    [api, runId, refresh],
  );

  const resume = useCallback(
    async (stepping: boolean) => {
      setBusy(true);
      setError(undefined);
      try {
        await resumeRun(api, runId, stepping);
        refresh();
      } catch (e) {
        setError(e as ApiError);
      } finally {
        setBusy(false);
      }
    },
    [api, runId, refresh],
  );

  return {
    active: me.may.operate_runs && !finished && !!debug,
    debug: debug ?? undefined,
    breakpoints,
    toggle,
    resume,
    busy,
    error,
    clearError: () => setError(undefined),
  };
}

const sameList = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

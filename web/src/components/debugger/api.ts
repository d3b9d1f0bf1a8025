// The debugger's calls, all documented /api/v1 routes: breakpoints, state edits, resume with
// stepping, a run started with breakpoints, and a paused run's engine state.
import type { Api } from '../../api/client';
import type { components } from '../../api/schema';

type S = components['schemas'];
export type DebugView = S['DebugView'];
export type BreakpointChange = S['BreakpointChange'];
export type BreakpointsChanged = S['BreakpointsChanged'];
export type StartRun = S['StartRun'];
export type RunStarted = S['RunStarted'];

const runPath = (id: string) => `/runs/${encodeURIComponent(id)}`;

/** `POST /runs/{id}/breakpoints`: add, remove or set the steps the run pauses before. */
export function changeBreakpoints(api: Api, id: string, change: BreakpointChange): Promise<BreakpointsChanged> {
  return api.request('POST', `${runPath(id)}/breakpoints`, change);
}

/** `POST /runs/{id}/edit`: a paused run's state, `steps.ID.output` or `state.KEY` to a JSON value. */
export function editRun(api: Api, id: string, set: Record<string, unknown>): Promise<unknown> {
  return api.request('POST', `${runPath(id)}/edit`, { set });
}

/** `POST /runs/{id}/resume`: continue; `stepping` pauses again before the next step. */
export function resumeRun(api: Api, id: string, stepping: boolean): Promise<unknown> {
  return api.request('POST', `${runPath(id)}/resume`, { stepping });
}

/** `POST /runs` with breakpoints and stepping. */
export function startRun(api: Api, body: Partial<StartRun>): Promise<RunStarted> {
  return api.request('POST', '/runs', body);
}

/** What the inspector shows of `GET /runs/{id}/state` (documented without a schema: read defensively). */
export interface InspectedState {
  state: Record<string, unknown>;
  /** Finished steps' outputs, by step id (a failed step has none to edit). */
  outputs: Record<string, unknown>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads the engine state's shared keys and finished steps' outputs; anything else is an error. */
export function inspectedOf(raw: unknown): InspectedState {
  if (!isObject(raw) || !isObject(raw.steps)) throw new Error('the run state has no `steps` object');
  const outputs: Record<string, unknown> = {};
  for (const [id, s] of Object.entries(raw.steps)) {
    if (isObject(s) && (s.error === null || s.error === undefined) && 'output' in s) outputs[id] = s.output;
  }
  return { state: isObject(raw.state) ? raw.state : {}, outputs };
}

export async function runState(api: Api, id: string, signal?: AbortSignal): Promise<InspectedState> {
  return inspectedOf(await api.request<unknown>('GET', `${runPath(id)}/state`, undefined, signal));
}

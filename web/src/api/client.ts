// The one way the app talks to the server: the documented `/api/v1` routes, with the key of
// the signed-in user. Every failure becomes an `ApiError` whose message a page can show as is.
import type { AgentInfo, Approval, EventRecord, ForkBody, Graph, RunDetail, RunListItem, RunStarted, StepTrace, Validation, Whoami, WorkflowInfo, WorkflowVersion } from './types';

export const KEY_STORAGE = 'baton.key';

export class ApiError extends Error {
  /** HTTP status; 0 when the server could not be reached. */
  readonly status: number;
  /** The error body's `code` (`unreachable` when there was no answer). */
  readonly code: string;
  /** The error body's `details` (an invalid workflow's `diagnostics`...). */
  readonly details?: unknown;
  constructor(status: number, code: string, message: string, details?: unknown) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** Turns a failed answer into an ApiError, reading the standard error body when there is one. */
export async function errorOf(resp: Response): Promise<ApiError> {
  let code = `http_${resp.status}`;
  let message = `${resp.status} ${resp.statusText}`.trim();
  let details: unknown;
  try {
    const body = (await resp.json()) as { error?: { code?: string; message?: string; details?: unknown } };
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message;
    details = body.error?.details;
  } catch {
    // Not the error body (a proxy's page): the status says enough.
  }
  return new ApiError(resp.status, code, message, details);
}

export const UNREACHABLE =
  'The Baton server cannot be reached (is baton serve running?). Retrying…';

export class Api {
  readonly key: string;
  private readonly fetcher: typeof fetch;
  constructor(key: string, fetcher: typeof fetch = (...a) => fetch(...a)) {
    this.key = key;
    this.fetcher = fetcher;
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return { authorization: `Bearer ${this.key}`, ...extra };
  }

  async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const json = body === undefined ? undefined : { type: 'application/json', text: JSON.stringify(body) };
    return this.send<T>(method, path, json, signal);
  }

  /** A request whose body is a document (YAML or JSON text) as is. */
  requestText<T>(method: string, path: string, text: string, signal?: AbortSignal): Promise<T> {
    return this.send<T>(method, path, { type: 'application/yaml', text }, signal);
  }

  private async send<T>(method: string, path: string, body?: { type: string; text: string }, signal?: AbortSignal): Promise<T> {
    let resp: Response;
    try {
      resp = await this.fetcher(`/api/v1${path}`, {
        method,
        headers: this.headers(body === undefined ? {} : { 'content-type': body.type }),
        body: body?.text,
        signal,
      });
    } catch (e) {
      if ((e as Error).name === 'AbortError') throw e;
      throw new ApiError(0, 'unreachable', UNREACHABLE);
    }
    if (!resp.ok) throw await errorOf(resp);
    if (resp.status === 204) return undefined as T; // No content (a delete).
    return (await resp.json()) as T;
  }

  me(): Promise<Whoami> {
    return this.request('GET', '/me');
  }
  runs(limit = 50): Promise<{ runs: RunListItem[] }> {
    return this.request('GET', `/runs?limit=${limit}`);
  }
  run(id: string): Promise<RunDetail> {
    return this.request('GET', `/runs/${encodeURIComponent(id)}`);
  }
  graph(id: string): Promise<Graph> {
    return this.request('GET', `/runs/${encodeURIComponent(id)}/graph`);
  }
  events(id: string, after = 0, limit = 1000): Promise<EventRecord[]> {
    return this.request('GET', `/runs/${encodeURIComponent(id)}/events?after=${after}&limit=${limit}`);
  }
  stepTrace(id: string, step: string): Promise<StepTrace> {
    return this.request('GET', `/runs/${encodeURIComponent(id)}/steps/${encodeURIComponent(step)}`);
  }
  approvals(): Promise<{ approvals: Approval[] }> {
    return this.request('GET', '/approvals');
  }
  operate(id: string, action: 'pause' | 'resume' | 'cancel'): Promise<unknown> {
    return this.request('POST', `/runs/${encodeURIComponent(id)}/${action}`, {});
  }
  answer(id: string, step: string, approve: boolean, comment?: string): Promise<unknown> {
    const body: Record<string, string> = { step };
    if (comment) body.comment = comment;
    return this.request('POST', `/runs/${encodeURIComponent(id)}/${approve ? 'approve' : 'reject'}`, body);
  }
  workflows(): Promise<{ workflows: WorkflowInfo[] }> {
    return this.request('GET', '/workflows');
  }
  workflow(name: string): Promise<WorkflowVersion> {
    return this.request('GET', `/workflows/${encodeURIComponent(name)}`);
  }
  validate(text: string, signal?: AbortSignal): Promise<Validation> {
    return this.requestText('POST', '/workflows/validate', text, signal);
  }
  /** Stores a document as version 1 of its name, or (`name` given) as the next version of `name`. */
  saveWorkflow(text: string, name?: string): Promise<WorkflowVersion> {
    return name ? this.requestText('PUT', `/workflows/${encodeURIComponent(name)}`, text) : this.requestText('POST', '/workflows', text);
  }
  startRun(workflow: string): Promise<{ id: string }> {
    return this.request('POST', '/runs', { workflow });
  }
  agents(): Promise<{ agents: AgentInfo[] }> {
    return this.request('GET', '/agents');
  }
  /** Answers a `human` step of `kind: input` with a value. */
  input(id: string, step: string, value: unknown, comment?: string): Promise<unknown> {
    const body: Record<string, unknown> = { step, value };
    if (comment) body.comment = comment;
    return this.request('POST', `/runs/${encodeURIComponent(id)}/input`, body);
  }
  /** Time travel: a new run from a point of this run's log, with values edited or agents on other models. */
  fork(id: string, body: ForkBody): Promise<RunStarted> {
    return this.request('POST', `/runs/${encodeURIComponent(id)}/fork`, body);
  }
  /** Every event of a run, read page by page. */
  async allEvents(id: string, signal?: AbortSignal, page = 1000): Promise<EventRecord[]> {
    let all: EventRecord[] = [];
    for (let after = 0; ; ) {
      const got = await this.request<EventRecord[]>('GET', `/runs/${encodeURIComponent(id)}/events?after=${after}&limit=${page}`, undefined, signal);
      all = all.concat(got);
      if (got.length < page) return all;
      after = got[got.length - 1].seq;
    }
  }
  /** The served models (`GET /v1/models`, the documented OpenAI-compatible list), by id. */
  async models(signal?: AbortSignal): Promise<string[]> {
    let resp: Response;
    try {
      resp = await this.fetcher('/v1/models', { headers: this.headers(), signal });
    } catch (e) {
      if ((e as Error).name === 'AbortError') throw e;
      throw new ApiError(0, 'unreachable', UNREACHABLE);
    }
    if (!resp.ok) throw await errorOf(resp);
    const body = (await resp.json()) as { data?: { id?: unknown }[] };
    return (body.data ?? []).map((m) => m.id).filter((id): id is string => typeof id === 'string');
  }
}

/** What a user typed as an input step's value: JSON when it parses as JSON, else the text. */
export function parseValue(text: string): unknown {
  const t = text.trim();
  try {
    return JSON.parse(t);
  } catch {
    return t;
  }
}

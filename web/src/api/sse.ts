// A run's event stream (`GET /api/v1/runs/{id}/stream`). EventSource cannot send the key
// header, so the stream is read with fetch; a dropped connection reconnects with
// `Last-Event-ID`, so no event is missed or repeated (the server resumes after that seq).
import { Api, ApiError, errorOf } from './client';
import type { EventRecord } from './types';

export interface SseMessage {
  id?: string;
  event: string;
  data: string;
}

/** Splits a text/event-stream body into messages; keeps the unfinished tail for the next chunk. */
export class SseParser {
  private buf = '';
  push(chunk: string): SseMessage[] {
    this.buf += chunk.replace(/\r\n?/g, '\n');
    const out: SseMessage[] = [];
    let end: number;
    while ((end = this.buf.indexOf('\n\n')) >= 0) {
      const block = this.buf.slice(0, end);
      this.buf = this.buf.slice(end + 2);
      const msg: SseMessage = { event: 'message', data: '' };
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line === '' || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') data.push(value);
        else if (field === 'event') msg.event = value;
        else if (field === 'id') msg.id = value;
      }
      if (data.length === 0 && msg.id === undefined) continue;
      msg.data = data.join('\n');
      out.push(msg);
    }
    return out;
  }
}

export interface StreamHandlers {
  onEvent(e: EventRecord): void;
  /** A connection failed; the stream retries by itself. */
  onError?(e: ApiError): void;
  /** Connected (again). */
  onOpen?(): void;
}

const END = new Set(['run_succeeded', 'run_failed', 'run_cancelled']);

/** Follows a run's events from `after` until the run ends or `signal` aborts. */
export async function followRun(api: Api, id: string, after: number, h: StreamHandlers, signal: AbortSignal) {
  let last = after;
  let delay = 500;
  while (!signal.aborted) {
    try {
      const resp = await fetch(`/api/v1/runs/${encodeURIComponent(id)}/stream?deltas=false&after=${last}`, {
        headers: api.headers({ accept: 'text/event-stream' }),
        signal,
      });
      if (!resp.ok || !resp.body) {
        const err = await errorOf(resp);
        h.onError?.(err);
        // A client error will not go away by retrying.
        if (resp.status >= 400 && resp.status < 500 && resp.status !== 429) return;
      } else {
        h.onOpen?.();
        delay = 500;
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        const parser = new SseParser();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const m of parser.push(value)) {
            if (m.id === undefined) continue;
            const rec = JSON.parse(m.data) as EventRecord;
            last = Math.max(last, Number(m.id));
            h.onEvent(rec);
            if (END.has(m.event)) return;
          }
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      h.onError?.(new ApiError(0, 'unreachable', 'The event stream was cut; reconnecting…'));
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 8000);
  }
}

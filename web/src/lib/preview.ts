// Large values (a model's long answer, a tool's big output) are shown cut at a limit with a
// "show all", so a details panel never renders megabytes at once and freezes the page.

export const PREVIEW_CHARS = 4000;

/**
 * A run id cut for a table or a title: its first 8 characters (the time) and last 4 (random),
 * as two runs started in the same minute share their first 8.
 */
export const shortId = (id: string) => (id.length > 14 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id);

export interface Preview {
  text: string;
  /** The whole text's length. */
  total: number;
  truncated: boolean;
}

export function asText(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

export function preview(value: unknown, limit = PREVIEW_CHARS): Preview {
  const text = asText(value);
  if (text.length <= limit) return { text, total: text.length, truncated: false };
  return { text: text.slice(0, limit), total: text.length, truncated: true };
}

export function duration(ms: number | undefined): string {
  if (ms === undefined || ms === null) return '–';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function ago(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return new Date(ms).toLocaleDateString();
}

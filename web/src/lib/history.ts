// Undo/redo over immutable values. Edits of one field in a row (same `group`, within a
// second) are one step, so undo goes back a word or a field, not a keystroke.
export interface History<T> {
  past: T[];
  present: T;
  future: T[];
  group?: string;
  at: number;
}

const LIMIT = 200;

export function start<T>(present: T): History<T> {
  return { past: [], present, future: [], at: 0 };
}

export function push<T>(h: History<T>, next: T, group?: string, now = Date.now()): History<T> {
  if (next === h.present) return h;
  if (group && group === h.group && now - h.at < 1000) return { ...h, present: next, future: [], at: now };
  return { past: [...h.past, h.present].slice(-LIMIT), present: next, future: [], group, at: now };
}

export function undo<T>(h: History<T>): History<T> {
  const prev = h.past.at(-1);
  if (prev === undefined) return h;
  return { past: h.past.slice(0, -1), present: prev, future: [h.present, ...h.future], at: 0 };
}

export function redo<T>(h: History<T>): History<T> {
  const [next, ...rest] = h.future;
  if (next === undefined) return h;
  return { past: [...h.past, h.present], present: next, future: rest, at: 0 };
}

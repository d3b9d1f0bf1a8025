// Where the builder draws each step, kept in the document as `layout: { STEP_ID: [x, y] }`
// (the engine ignores it; the validator refuses keys that are not step ids). A document
// without `layout` is laid out automatically; once a step is moved, every step's position is
// written, so the arrangement reopens exactly as it was saved.
import { walk, type Flow, type Placed, type Plain } from './flow';
import { NODE_H, NODE_W } from './layout';

export type Point = { x: number; y: number };
export type Pos = Map<string, Point>;

const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v);
const isPoint = (v: unknown): v is [number, number] =>
  Array.isArray(v) && v.length === 2 && v.every((n) => typeof n === 'number' && Number.isFinite(n));

/** The positions the document saves (entries that are not `[x, y]` numbers are left out). */
export function layoutOf(f: Flow): Pos {
  const out: Pos = new Map();
  const l = f.meta.layout;
  if (!isPlain(l)) return out;
  for (const [id, v] of Object.entries(l)) if (isPoint(v)) out.set(id, { x: v[0], y: v[1] });
  return out;
}

export const hasLayout = (f: Flow) => isPlain(f.meta.layout) && Object.keys(f.meta.layout).length > 0;

/** The model with `layout` set to `pos` for every step, in document order (whole pixels). */
export function withLayout(f: Flow, pos: Pos): Flow {
  const layout: Record<string, [number, number]> = {};
  for (const { step } of walk(f.steps)) {
    const p = pos.get(step.id);
    if (p) layout[step.id] = [Math.round(p.x), Math.round(p.y)];
  }
  return { ...f, meta: { ...f.meta, layout } };
}

/** The model without `layout` (auto-layout again). */
export function withoutLayout(f: Flow): Flow {
  if (!('layout' in f.meta)) return f;
  const meta = { ...f.meta };
  delete meta.layout;
  return { ...f, meta };
}

const STEP_Y = NODE_H + 50;

/**
 * Where a new step goes in an arranged canvas: under the step before it in its list (or its
 * container), moved further down while it would cover a placed step.
 */
function spot(placed: Placed, pos: Pos): Point | undefined {
  const above = placed.index > 0 ? placed.list[placed.index - 1] : placed.parent;
  const from = above && pos.get(above.id);
  if (!from) return undefined;
  const at = { x: from.x, y: from.y + STEP_Y };
  const covers = () => [...pos.values()].some((p) => Math.abs(p.x - at.x) < NODE_W && Math.abs(p.y - at.y) < NODE_H);
  for (let n = 0; n < 1000 && covers(); n++) at.y += STEP_Y;
  return at;
}

/**
 * After an edit of a document that has a layout: the entries of steps that are gone are
 * dropped and new steps get a place (under the step before them, else `auto`'s), so the saved
 * layout always covers every step and names nothing else. Returns `f` itself when nothing
 * changes.
 */
export function fitLayout(f: Flow, auto: Pos): Flow {
  if (!hasLayout(f)) return f;
  const saved = f.meta.layout as Plain;
  const all = walk(f.steps);
  const ids = all.map((p) => p.step.id);
  const known = new Set(ids);
  const stale = Object.keys(saved).some((k) => !known.has(k));
  const missing = ids.some((id) => !(id in saved));
  if (!stale && !missing) return f;
  const pos = layoutOf(f);
  for (const p of all) {
    if (p.step.id in saved) continue;
    const at = spot(p, pos) ?? auto.get(p.step.id);
    if (at) pos.set(p.step.id, at);
  }
  // Entries the validator would refuse (not `[x, y]`) are kept as written for it to name.
  const next = withLayout(f, pos);
  const layout = next.meta.layout as Plain;
  for (const id of ids) if (id in saved && !(id in layout)) layout[id] = saved[id];
  return next;
}

/** Display positions: the saved one, else `auto`'s; unchanged points keep their object. */
export function display(f: Flow, auto: Pos, prev: Pos): Pos {
  const saved = layoutOf(f);
  const out: Pos = new Map();
  let changed = false;
  for (const { step } of walk(f.steps)) {
    const want = saved.get(step.id) ?? auto.get(step.id);
    if (!want) continue;
    const old = prev.get(step.id);
    if (old && old.x === want.x && old.y === want.y) out.set(step.id, old);
    else {
      out.set(step.id, want);
      changed = true;
    }
  }
  return changed || out.size !== prev.size ? out : prev;
}

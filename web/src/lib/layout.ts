// Positions for a workflow graph: each node in the layer after the longest chain of forward
// edges leading to it (edges back to an earlier step, loops and `on_error` retries, do not
// push nodes down), side by side within a layer in document order. Linear in nodes + edges,
// so a graph of hundreds of steps lays out at once.
import type { GraphEdge, GraphNode } from '../api/types';

export const NODE_W = 200;
export const NODE_H = 56;
const GAP_X = 40;
const GAP_Y = 50;

export interface Placed {
  id: string;
  x: number;
  y: number;
}

export function layout(nodes: Pick<GraphNode, 'id' | 'parent'>[], edges: Pick<GraphEdge, 'from' | 'to'>[]): Placed[] {
  const index = new Map(nodes.map((n, i) => [n.id, i]));
  const parentOf = new Map(nodes.filter((n) => n.parent).map((n) => [n.id, n.parent as string]));
  const incoming = new Map<string, string[]>();
  const add = (from: string, to: string) => {
    const a = index.get(from);
    const b = index.get(to);
    // Forward edges only (document order is a topological order of them).
    if (a === undefined || b === undefined || a >= b) return;
    incoming.set(to, [...(incoming.get(to) ?? []), from]);
  };
  for (const e of edges) add(e.from, e.to);
  for (const n of nodes) if (n.parent) add(n.parent, n.id);
  // What follows a container (parallel, map, group) goes below its branches or body, not
  // beside them: its forward edges also count from every step inside it (for layers only).
  const inside = new Map<string, string[]>();
  for (const n of nodes) {
    for (let p = n.parent, hops = 0; p && hops < nodes.length; p = parentOf.get(p), hops++) inside.set(p, [...(inside.get(p) ?? []), n.id]);
  }
  for (const e of edges) {
    const within = inside.get(e.from);
    // An edge into its own body (a group's first step) is not one that leaves it.
    if (within && !within.includes(e.to)) for (const d of within) add(d, e.to);
  }
  const layer = new Map<string, number>();
  for (const n of nodes) {
    const preds = incoming.get(n.id) ?? [];
    layer.set(n.id, preds.length ? Math.max(...preds.map((p) => (layer.get(p) ?? 0) + 1)) : 0);
  }
  const rows = new Map<number, string[]>();
  for (const n of nodes) {
    const l = layer.get(n.id) ?? 0;
    rows.set(l, [...(rows.get(l) ?? []), n.id]);
  }
  const widest = Math.max(1, ...[...rows.values()].map((r) => r.length));
  const out: Placed[] = [];
  for (const [l, ids] of rows) {
    // Centred under the widest layer.
    const offset = ((widest - ids.length) * (NODE_W + GAP_X)) / 2;
    ids.forEach((id, i) => out.push({ id, x: offset + i * (NODE_W + GAP_X), y: l * (NODE_H + GAP_Y) }));
  }
  return out;
}

/**
 * Where the run viewer draws each node: the workflow's saved `layout` (the builder's
 * `{ STEP_ID: [x, y] }`, kept with the document) where it names the step, so a run looks like
 * the canvas it was made on; steps it does not name (or a workflow without one) are laid out
 * automatically, below the saved arrangement when there is one.
 */
export function placeGraph(
  nodes: Pick<GraphNode, 'id' | 'parent'>[],
  edges: Pick<GraphEdge, 'from' | 'to'>[],
  saved?: Record<string, readonly number[]> | null,
): Placed[] {
  const at = new Map<string, { x: number; y: number }>();
  for (const n of nodes) {
    const p = saved?.[n.id];
    if (p && p.length === 2 && p.every((v) => Number.isFinite(v))) at.set(n.id, { x: p[0], y: p[1] });
  }
  if (!at.size) return layout(nodes, edges);
  const rest = nodes.filter((n) => !at.has(n.id));
  const below = Math.max(...[...at.values()].map((p) => p.y)) + NODE_H + GAP_Y;
  const left = Math.min(...[...at.values()].map((p) => p.x));
  const auto = new Map(layout(rest, edges).map((p) => [p.id, { x: left + p.x, y: below + p.y }]));
  return nodes.map((n) => ({ id: n.id, ...(at.get(n.id) ?? auto.get(n.id) ?? { x: left, y: below }) }));
}

/** A handle as React Flow takes it on a node (`node.handles`). */
export interface HandleBox {
  id: string | null;
  type: 'source' | 'target';
  position: 'top' | 'bottom' | 'left' | 'right';
  x: number;
  y: number;
  width: number;
  height: number;
}

const HANDLE = 6;

/**
 * The handles of a step box of NODE_W x NODE_H, where its CSS draws them (centred on the
 * edge): target on top, source at the bottom, and the pair on the right that edges back to
 * an earlier step use. Given to React Flow with each node, its edges are drawn from these at
 * once instead of after the node has been measured: a node re-created by a status change (or
 * not rendered yet because it is out of view) never leaves its edges undrawn.
 */
export function stepHandles(back = true): HandleBox[] {
  const h = HANDLE / 2;
  const out: HandleBox[] = [
    { id: null, type: 'target', position: 'top', x: NODE_W / 2 - h, y: -h, width: HANDLE, height: HANDLE },
    { id: null, type: 'source', position: 'bottom', x: NODE_W / 2 - h, y: NODE_H - h, width: HANDLE, height: HANDLE },
  ];
  if (back) {
    out.push(
      { id: 'back-out', type: 'source', position: 'right', x: NODE_W - h, y: NODE_H / 2 - h, width: HANDLE, height: HANDLE },
      { id: 'back-in', type: 'target', position: 'right', x: NODE_W - h, y: NODE_H / 2 - h, width: HANDLE, height: HANDLE },
    );
  }
  return out;
}

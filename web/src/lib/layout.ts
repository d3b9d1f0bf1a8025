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

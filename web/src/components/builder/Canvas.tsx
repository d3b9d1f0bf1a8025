// The builder's canvas: every step as a node (containers with their branches or body below
// them), the control flow as edges. Drag a kind from the palette onto it (onto a parallel,
// map or group node to add it inside), drag from a node's bottom handle to another node to
// connect them, move nodes, click an edge to select it and Delete to cut it. Node objects are
// kept while their data stays the same, so a drag or an edit re-renders only what changed.
import {
  Background,
  Controls,
  Handle,
  MarkerType,
  MiniMap,
  Position,
  ReactFlow,
  useNodesInitialized,
  useReactFlow,
  type Edge,
  type Node,
  type NodeChange,
  type NodeHandle,
  type NodeProps,
} from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import { memo, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type { Kind, Step } from '../../lib/flow';
import type { FlowEdge, FlowNode } from '../../lib/flowGraph';
import { NODE_H, NODE_W, stepHandles } from '../../lib/layout';

export const DRAG_TYPE = 'application/x-baton-step';

type BoxData = { kind: Kind; summary: string; broken: boolean; selected: boolean; container: boolean; readOnly: boolean };
type BoxNode = Node<BoxData, 'box'>;

const Box = memo(function Box({ id, data }: NodeProps<BoxNode>) {
  const cls = `bstep k-${data.kind}${data.selected ? ' selected' : ''}${data.broken ? ' broken' : ''}${data.container ? ' container' : ''}`;
  return (
    <>
      <Handle type="target" position={Position.Top} isConnectable={!data.readOnly} />
      <div className={cls} style={{ width: NODE_W, height: NODE_H }} data-testid={`bnode-${id}`} data-kind={data.kind} data-broken={data.broken || undefined}>
        <span className="step-id">{id}</span>
        <span className="step-meta">
          {data.kind}
          {data.summary && ` · ${data.summary}`}
        </span>
      </div>
      <Handle type="source" position={Position.Bottom} isConnectable={!data.readOnly} />
      <Handle type="source" id="back-out" position={Position.Right} isConnectable={false} />
      <Handle type="target" id="back-in" position={Position.Right} isConnectable={false} />
    </>
  );
});

const nodeTypes = { box: Box };
/** Box's handles, known up front: edges are drawn without waiting for a node to be measured. */
const HANDLES = stepHandles() as unknown as NodeHandle[];
const FIT = { maxZoom: 1.1, padding: 0.2 };
/** Graphs up to this many steps open fitted whole; larger ones on their first steps. */
const FIT_WHOLE = 30;
const CONTAINERS = new Set<Kind>(['parallel', 'map', 'group']);

/** One line saying what a step does, shown under its id. */
export function summary(s: Step): string {
  const f = s.fields as Record<string, unknown>;
  const sub = (k: string) => (f[k] && typeof f[k] === 'object' ? (f[k] as Record<string, unknown>) : {});
  const text = (v: unknown) => (typeof v === 'string' ? v : v === undefined ? '' : JSON.stringify(v)).slice(0, 40);
  switch (s.kind) {
    case 'agent':
      return text(f.agent);
    case 'tool':
      return text(f.tool);
    case 'if':
      return text(f.if);
    case 'parallel':
      return `${text(sub('join').strategy) || 'all'} · ${s.children?.length ?? 0} branches`;
    case 'map':
      return text(sub('map').over);
    case 'human':
      return text(sub('human').kind) || 'approval';
    case 'sandbox':
      return text(sub('sandbox').tier) || 'process';
    default:
      return s.children ? `${s.children.length} steps` : '';
  }
}

function edgeOf(e: FlowEdge, back: boolean, selected: boolean, readOnly: boolean): Edge {
  const nested = e.kind === 'branch' || e.kind === 'body';
  return {
    id: e.id,
    source: e.from,
    target: e.to,
    sourceHandle: back ? 'back-out' : undefined,
    targetHandle: back ? 'back-in' : undefined,
    type: back ? 'smoothstep' : 'default',
    pathOptions: back ? { offset: 40 } : undefined,
    label: e.kind === 'sequence' || nested ? undefined : e.kind === 'case' ? `case ${(e.index ?? 0) + 1}` : e.kind.replace('_', ' '),
    markerEnd: nested ? undefined : { type: MarkerType.ArrowClosed },
    className: `edge-${e.kind}`,
    // Edges inside a container say where they belong; they are not cut like a jump.
    selectable: !readOnly && !nested,
    selected,
    data: { back },
  } as Edge;
}

/** Whether a straight, mostly vertical edge would pass under another node's box. */
function hidden(e: FlowEdge, positions: Map<string, { x: number; y: number }>): boolean {
  if (e.kind === 'sequence' || e.kind === 'branch' || e.kind === 'body') return false;
  const a = positions.get(e.from);
  const b = positions.get(e.to);
  if (!a || !b || b.y - a.y < 2 * NODE_H || Math.abs(b.x - a.x) > NODE_W / 2) return false;
  const x = (a.x + b.x) / 2 + NODE_W / 2;
  for (const [id, n] of positions) {
    if (id === e.from || id === e.to) continue;
    if (n.y > a.y + NODE_H / 2 && n.y + NODE_H < b.y + NODE_H / 2 && x > n.x && x < n.x + NODE_W) return true;
  }
  return false;
}

export interface CanvasProps {
  nodes: FlowNode[];
  edges: FlowEdge[];
  steps: Map<string, Step>;
  positions: Map<string, { x: number; y: number }>;
  selected?: string;
  selectedEdge?: string;
  broken: Set<string>;
  readOnly: boolean;
  focus?: { id: string; n: number };
  onSelect(id?: string): void;
  onSelectEdge(id?: string): void;
  onMove(id: string, x: number, y: number, done: boolean): void;
  onConnect(from: string, to: string): void;
  onDrop(kind: Kind, x: number, y: number, into?: string): void;
  onReady(): void;
}

export function Canvas(p: CanvasProps) {
  const cache = useRef(new Map<string, BoxNode>());
  const rfNodes: BoxNode[] = useMemo(() => {
    const next = new Map<string, BoxNode>();
    const out = p.nodes.map((n) => {
      const step = p.steps.get(n.id);
      const pos = p.positions.get(n.id) ?? { x: 0, y: 0 };
      const data: BoxData = {
        kind: n.kind,
        summary: step ? summary(step) : '',
        broken: p.broken.has(n.id),
        selected: n.id === p.selected,
        container: CONTAINERS.has(n.kind),
        readOnly: p.readOnly,
      };
      const prev = cache.current.get(n.id);
      const same = prev && prev.position === pos && Object.entries(data).every(([k, v]) => prev.data[k as keyof BoxData] === v);
      const node: BoxNode = same ? prev : { id: n.id, type: 'box', position: pos, width: NODE_W, height: NODE_H, handles: HANDLES, data, draggable: !p.readOnly, selected: n.id === p.selected };
      next.set(n.id, node);
      return node;
    });
    cache.current = next;
    return out;
  }, [p.nodes, p.steps, p.positions, p.broken, p.selected, p.readOnly]);

  // Edges too keep their objects unless their shape changes, so a drag redraws only its own.
  const edgeCache = useRef(new Map<string, Edge>());
  const rfEdges: Edge[] = useMemo(() => {
    const next = new Map<string, Edge>();
    const out = p.edges.map((e) => {
      // Back edges, and forward ones that would run under a step between their ends, go
      // around by the right side, so neither the line nor its label is hidden.
      const back = (p.positions.get(e.to)?.y ?? 0) <= (p.positions.get(e.from)?.y ?? 0) || hidden(e, p.positions);
      const selected = e.id === p.selectedEdge;
      const prev = edgeCache.current.get(e.id);
      const edge = prev && prev.data?.back === back && prev.selected === selected && prev.selectable === !p.readOnly ? prev : edgeOf(e, back, selected, p.readOnly);
      next.set(e.id, edge);
      return edge;
    });
    edgeCache.current = next;
    return out;
  }, [p.edges, p.positions, p.readOnly, p.selectedEdge]);

  const { onMove } = p;
  // Decided once, when the canvas opens.
  // An empty canvas is not fitted when its first step comes: the view would jump away from
  // where that step was dropped.
  const [fitAtOpen] = useState(() => p.nodes.length > 0);
  const [fit] = useState(() => (p.nodes.length > FIT_WHOLE ? { ...FIT, minZoom: 0.6, nodes: p.nodes.slice(0, 5).map((n) => ({ id: n.id })) } : FIT));
  const onNodesChange = useCallback(
    (changes: NodeChange<BoxNode>[]) => {
      for (const c of changes) if (c.type === 'position' && c.position) onMove(c.id, c.position.x, c.position.y, !c.dragging);
    },
    [onMove],
  );

  return (
    <div
      className="graph builder-canvas"
      data-testid="canvas"
      onDragOver={(e) => {
        if (!p.readOnly && e.dataTransfer.types.includes(DRAG_TYPE)) {
          e.preventDefault();
          e.dataTransfer.dropEffect = 'copy';
        }
      }}
    >
      {p.nodes.length === 0 && (
        <p className="canvas-empty muted" data-testid="canvas-empty">
          {p.readOnly ? 'This workflow has no steps.' : 'No steps yet: drag a kind from the palette here, or press one to add it.'}
        </p>
      )}
      <ReactFlow
        nodes={rfNodes}
        edges={rfEdges}
        nodeTypes={nodeTypes}
        onNodesChange={onNodesChange}
        onNodeClick={(_, n) => p.onSelect(n.id)}
        onEdgeClick={(_, e) => p.onSelectEdge(e.id)}
        onPaneClick={() => p.onSelect(undefined)}
        onConnect={(c) => c.source && c.target && p.onConnect(c.source, c.target)}
        nodesDraggable={!p.readOnly}
        nodesConnectable={!p.readOnly}
        deleteKeyCode={null}
        // The builder's own keys select steps (arrows) and delete them; React Flow's would
        // move the selected node instead.
        disableKeyboardA11y
        selectionKeyCode={null}
        multiSelectionKeyCode={null}
        fitView={fitAtOpen}
        fitViewOptions={fit}
        colorMode="system"
        proOptions={{ hideAttribution: true }}
        minZoom={0.05}
      >
        <Background />
        <Controls showInteractive={false} />
        <MiniMap pannable zoomable ariaLabel="Overview of the workflow" />
        <Dropper onDrop={p.onDrop} readOnly={p.readOnly} steps={p.steps} />
        <Focus focus={p.focus} />
        <Ready onReady={p.onReady} />
      </ReactFlow>
    </div>
  );
}

/** Turns a drop from the palette into a step at the drop point (inside the container under it). */
function Dropper({ onDrop, readOnly, steps }: { onDrop: CanvasProps['onDrop']; readOnly: boolean; steps: Map<string, Step> }) {
  const { screenToFlowPosition } = useReactFlow();
  useEffect(() => {
    const pane = document.querySelector('.builder-canvas');
    if (!pane || readOnly) return;
    const drop = (ev: Event) => {
      const e = ev as DragEvent;
      const kind = e.dataTransfer?.getData(DRAG_TYPE) as Kind | undefined;
      if (!kind) return;
      e.preventDefault();
      const under = document.elementsFromPoint(e.clientX, e.clientY).map((el) => el.closest('.react-flow__node')?.getAttribute('data-id'));
      const into = under.find((id) => id && CONTAINERS.has(steps.get(id)?.kind ?? 'unknown')) ?? undefined;
      const at = screenToFlowPosition({ x: e.clientX, y: e.clientY });
      onDrop(kind, at.x - NODE_W / 2, at.y - NODE_H / 2, into);
    };
    pane.addEventListener('drop', drop);
    return () => pane.removeEventListener('drop', drop);
  }, [onDrop, readOnly, steps, screenToFlowPosition]);
  return null;
}

/** Centres the view on a node when asked (a problem clicked, the arrow keys, a step added by a press). */
function Focus({ focus }: { focus?: { id: string; n: number } }) {
  const { getNode, setCenter, getZoom } = useReactFlow();
  useEffect(() => {
    if (!focus) return;
    const centre = () => {
      const n = getNode(focus.id);
      if (n) void setCenter(n.position.x + NODE_W / 2, n.position.y + NODE_H / 2, { zoom: Math.max(getZoom(), 0.8), duration: 200 });
      return !!n;
    };
    // A step just added reaches the graph library's store a frame later.
    if (centre()) return;
    const f = requestAnimationFrame(centre);
    return () => cancelAnimationFrame(f);
  }, [focus, getNode, setCenter, getZoom]);
  return null;
}

/** Says once when every node has been drawn and measured (the open-time figure ends there). */
function Ready({ onReady }: { onReady(): void }) {
  const ready = useNodesInitialized();
  const told = useRef(false);
  useEffect(() => {
    if (ready && !told.current) {
      told.current = true;
      onReady();
    }
  }, [ready, onReady]);
  return null;
}

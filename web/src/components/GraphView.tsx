// A run's workflow graph with each node's live status. Nodes are not draggable and only the
// visible ones are rendered, so graphs of hundreds of steps stay smooth; each node is a button
// (Tab to it, Enter opens its details).
import { Background, Controls, Handle, MarkerType, Position, ReactFlow, useReactFlow, type Edge, type Node, type NodeProps } from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import { memo, useCallback, useEffect, useMemo, useRef } from 'react';
import type { Graph } from '../api/types';
import { NODE_H, NODE_W, placeGraph } from '../lib/layout';
import type { NodeStatus } from '../lib/runStatus';
import { BreakpointDot } from './debugger/BreakpointToggle';
import { Reveal } from './run/Reveal';

type StepData = { label: string; kind: string; status: NodeStatus; selected: boolean; onOpen(id: string): void; breakpoint?: boolean; onBreakpoint?(id: string): void };
type StepNode = Node<StepData, 'step'>;

const StepBox = memo(function StepBox({ id, data }: NodeProps<StepNode>) {
  return (
    <>
      <Handle type="target" position={Position.Top} isConnectable={false} />
      <button
        type="button"
        className={`step s-${data.status}${data.selected ? ' selected' : ''}`}
        style={{ width: NODE_W, height: NODE_H }}
        onClick={() => data.onOpen(id)}
        data-testid={`node-${id}`}
        data-status={data.status}
      >
        <span className="step-id">{data.label}</span>
        <span className="step-meta">
          {data.kind} · {data.status}
        </span>
      </button>
      {data.onBreakpoint && <BreakpointDot step={id} on={!!data.breakpoint} onToggle={data.onBreakpoint} />}
      <Handle type="source" position={Position.Bottom} isConnectable={false} />
      {/* Edges back to an earlier step (loops, on_error retries) go round the right side. */}
      <Handle type="source" id="back-out" position={Position.Right} isConnectable={false} />
      <Handle type="target" id="back-in" position={Position.Right} isConnectable={false} />
    </>
  );
});

const nodeTypes = { step: StepBox };

const noop = () => {};
const FIT = { maxZoom: 1.1, padding: 0.2 };

/** Graphs up to this many nodes are fitted whole; larger ones around where the run is. */
const FIT_WHOLE = 30;

/**
 * Fits the view when the graph opens and when the pane changes width (the details panel opens
 * or closes). A large graph fitted whole would be unreadably small, so it is fitted around
 * the steps running or waiting, else its first steps; the user pans and zooms from there.
 */
function Refit({ narrow, focus }: { narrow: boolean; focus: () => string[] }) {
  const { fitView } = useReactFlow();
  useEffect(() => {
    const t = setTimeout(() => {
      const ids = focus();
      void fitView(ids.length ? { ...FIT, minZoom: 0.6, nodes: ids.map((id) => ({ id })) } : FIT);
    }, 50);
    return () => clearTimeout(t);
    // Only on open and on a width change: a status change must not move the view.
  }, [narrow, fitView]);
  return null;
}

export function GraphView({ graph, statusOf, selected, onOpen, reveal, breakpoints, onBreakpoint }: { graph: Graph; statusOf(id: string): NodeStatus; selected?: string; onOpen(id: string): void; reveal?: number; breakpoints?: ReadonlySet<string>; onBreakpoint?(id: string): void }) {
  // The builder's saved arrangement (`layout:`) when the workflow has one, else automatic.
  const placed = useMemo(() => placeGraph(graph.nodes, graph.edges, graph.header.layout), [graph]);
  // A node keeps its object while its status and selection stay the same, so a live event or
  // a click re-renders only the nodes it changed, not the whole graph.
  const cache = useRef(new Map<string, StepNode>());
  const nodes: StepNode[] = useMemo(() => {
    const kind = new Map(graph.nodes.map((n) => [n.id, n.kind as string]));
    const next = new Map<string, StepNode>();
    const out = placed.map((p) => {
      const status = statusOf(p.id);
      const isSelected = p.id === selected;
      const prev = cache.current.get(p.id);
      const breakpoint = breakpoints?.has(p.id) ?? false;
      const same = prev && prev.data.status === status && prev.data.selected === isSelected && prev.data.onOpen === onOpen && prev.data.breakpoint === breakpoint && prev.data.onBreakpoint === onBreakpoint && prev.position.x === p.x && prev.position.y === p.y;
      const node: StepNode = same
        ? prev
        : {
            id: p.id,
            type: 'step',
            position: { x: p.x, y: p.y },
            // Known sizes: drawn (and fitted) at once, without waiting to be measured.
            width: NODE_W,
            height: NODE_H,
            data: { label: p.id, kind: kind.get(p.id) ?? '', status, selected: isSelected, onOpen, breakpoint, onBreakpoint },
            draggable: false,
            connectable: false,
          };
      next.set(p.id, node);
      return node;
    });
    cache.current = next;
    return out;
  }, [placed, graph, statusOf, selected, onOpen, breakpoints, onBreakpoint]);
  const edges: Edge[] = useMemo(() => {
    const y = new Map(placed.map((p) => [p.id, p.y]));
    // A container's branches (parallel) or the first step of its body (map, group), dashed,
    // as the builder draws them: the parallel branches hang visibly from their step.
    const kind = new Map(graph.nodes.map((n) => [n.id, n.kind as string]));
    const firstChild = new Set<string>();
    const nested: Edge[] = [];
    for (const n of graph.nodes) {
      if (!n.parent) continue;
      const branch = kind.get(n.parent) === 'parallel';
      if (!branch && firstChild.has(n.parent)) continue;
      firstChild.add(n.parent);
      nested.push({
        id: `${n.parent}~${n.id}`,
        source: n.parent,
        target: n.id,
        type: 'default',
        animated: statusOf(n.parent) === 'running' && statusOf(n.id) === 'running',
        className: branch ? 'edge-branch' : 'edge-body',
      });
    }
    return nested.concat(graph.edges
      .filter((e) => e.to !== 'end')
      .map((e, i) => {
        const back = (y.get(e.to) ?? 0) <= (y.get(e.from) ?? 0);
        return {
          id: `${e.from}-${e.to}-${i}`,
          source: e.from,
          target: e.to,
          sourceHandle: back ? 'back-out' : undefined,
          targetHandle: back ? 'back-in' : undefined,
          type: back ? 'smoothstep' : 'default',
          pathOptions: back ? { offset: 40 } : undefined,
          label: e.kind === 'sequence' ? undefined : e.kind.replace('_', ' '),
          animated: statusOf(e.from) === 'running',
          markerEnd: { type: MarkerType.ArrowClosed },
          className: `edge-${e.kind}`,
        };
      }));
  }, [graph, placed, statusOf]);
  const focus = useCallback(() => {
    if (graph.nodes.length <= FIT_WHOLE) return [];
    const live = graph.nodes.filter((n) => ['running', 'waiting'].includes(statusOf(n.id))).map((n) => n.id);
    return live.length ? live.slice(0, 6) : placed.slice(0, 5).map((p) => p.id);
  }, [graph, placed, statusOf]);
  return (
    <div className="graph" data-testid="graph">
      <ReactFlow
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        fitView={graph.nodes.length <= FIT_WHOLE}
        fitViewOptions={FIT}
        onlyRenderVisibleElements
        nodesDraggable={false}
        nodesConnectable={false}
        elementsSelectable={false}
        // Nodes answer the pointer (their button opens the details) although not selectable.
        onNodeClick={noop}
        colorMode="system"
        proOptions={{ hideAttribution: true }}
        minZoom={0.1}
      >
        <Background />
        <Controls showInteractive={false} />
        <Refit narrow={selected !== undefined} focus={focus} />
        <Reveal id={selected} request={reveal} />
      </ReactFlow>
    </div>
  );
}

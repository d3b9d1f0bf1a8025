// A run's workflow graph with each node's live status. Nodes are not draggable and only the
// visible ones are rendered, so graphs of hundreds of steps stay smooth; each node is a button
// (Tab to it, Enter opens its details).
import { Background, Controls, Handle, MarkerType, Position, ReactFlow, type Edge, type Node, type NodeProps } from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import { memo, useMemo } from 'react';
import type { Graph } from '../api/types';
import { layout, NODE_H, NODE_W } from '../lib/layout';
import type { NodeStatus } from '../lib/runStatus';

type StepData = { label: string; kind: string; status: NodeStatus; selected: boolean; onOpen(id: string): void };
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
        aria-label={`${data.label}: ${data.kind} step, ${data.status}`}
        data-testid={`node-${id}`}
        data-status={data.status}
      >
        <span className="step-id">{data.label}</span>
        <span className="step-meta">
          {data.kind} · {data.status}
        </span>
      </button>
      <Handle type="source" position={Position.Bottom} isConnectable={false} />
    </>
  );
});

const nodeTypes = { step: StepBox };

export function GraphView({ graph, statusOf, selected, onOpen }: { graph: Graph; statusOf(id: string): NodeStatus; selected?: string; onOpen(id: string): void }) {
  const placed = useMemo(() => layout(graph.nodes, graph.edges), [graph]);
  const nodes: StepNode[] = useMemo(() => {
    const kind = new Map(graph.nodes.map((n) => [n.id, n.kind as string]));
    return placed.map((p) => ({
      id: p.id,
      type: 'step',
      position: { x: p.x, y: p.y },
      data: { label: p.id, kind: kind.get(p.id) ?? '', status: statusOf(p.id), selected: p.id === selected, onOpen },
      draggable: false,
      connectable: false,
    }));
  }, [placed, graph, statusOf, selected, onOpen]);
  const edges: Edge[] = useMemo(
    () =>
      graph.edges
        .filter((e) => e.to !== 'end')
        .map((e, i) => ({
          id: `${e.from}-${e.to}-${i}`,
          source: e.from,
          target: e.to,
          label: e.kind === 'sequence' ? undefined : e.kind.replace('_', ' '),
          animated: statusOf(e.from) === 'running',
          markerEnd: { type: MarkerType.ArrowClosed },
          className: `edge-${e.kind}`,
        })),
    [graph, statusOf],
  );
  return (
    <div className="graph" data-testid="graph">
      <ReactFlow
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        fitView
        fitViewOptions={{ maxZoom: 1.1, padding: 0.2 }}
        onlyRenderVisibleElements
        nodesDraggable={false}
        nodesConnectable={false}
        elementsSelectable={false}
        colorMode="system"
        proOptions={{ hideAttribution: true }}
        minZoom={0.1}
      >
        <Background />
        <Controls showInteractive={false} />
      </ReactFlow>
    </div>
  );
}

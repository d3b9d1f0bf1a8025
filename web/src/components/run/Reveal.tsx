// Brings the selected node into view when it is picked from outside the graph (an event of the
// log, a checkpoint of the timeline, a message of the Team panel) and lies outside the view;
// a node already in view does not move the graph.
import { useReactFlow, useStore } from '@xyflow/react';
import { useEffect } from 'react';

export function Reveal({ id }: { id?: string }) {
  const { getNode, setCenter, getZoom } = useReactFlow();
  const width = useStore((s) => s.width);
  const height = useStore((s) => s.height);
  const transform = useStore((s) => s.transform);
  useEffect(() => {
    if (!id) return;
    const n = getNode(id);
    if (!n) return;
    const [tx, ty, zoom] = transform;
    const w = n.width ?? 0;
    const h = n.height ?? 0;
    const x = n.position.x * zoom + tx;
    const y = n.position.y * zoom + ty;
    const inView = x >= 0 && y >= 0 && x + w * zoom <= width && y + h * zoom <= height;
    if (!inView) void setCenter(n.position.x + w / 2, n.position.y + h / 2, { zoom: Math.max(getZoom(), 0.6), duration: 300 });
    // Only when the selection changes: panning by hand must not bring the node back.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [id]);
  return null;
}

// Brings a node into view when it is picked from outside the graph (an event of the log, a
// checkpoint of the timeline, a message of the Team panel: each pick is a new `request`) and
// lies outside the view; a node already in view, or one clicked in the graph, does not move
// the graph. It looks a moment after the pick, once the graph has been fitted to its new
// width (the details panel opening narrows it).
import { useReactFlow, useStoreApi } from '@xyflow/react';
import { useEffect } from 'react';

const AFTER_REFIT_MS = 300;

export function Reveal({ id, request }: { id?: string; request?: number }) {
  const { getNode, setCenter } = useReactFlow();
  const store = useStoreApi();
  useEffect(() => {
    if (!id || !request) return;
    const t = setTimeout(() => {
      const { width, height, transform } = store.getState();
      const n = getNode(id);
      if (!n || !width || !height) return;
      const [tx, ty, zoom] = transform;
      const w = (n.width ?? 0) * zoom;
      const h = (n.height ?? 0) * zoom;
      const x = n.position.x * zoom + tx;
      const y = n.position.y * zoom + ty;
      if (x >= 0 && y >= 0 && x + w <= width && y + h <= height) return;
      void setCenter(n.position.x + (n.width ?? 0) / 2, n.position.y + (n.height ?? 0) / 2, { zoom: Math.max(zoom, 0.6), duration: 300 });
    }, AFTER_REFIT_MS);
    return () => clearTimeout(t);
    // Only on a new pick: panning by hand, or the graph re-rendering, must not bring it back.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [request]);
  return null;
}

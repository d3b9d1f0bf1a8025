// The run viewer's model deltas: one DeltaStore per run, fed by the run's WebSocket
// subscription while the run is not finished (a finished run streams nothing).
import { useEffect, useRef, useState } from 'react';
import { DeltaStore, followDeltas } from '../../lib/deltas';

export function useRunDeltas(key: string, run: string, finished: boolean, lastSeq: number): DeltaStore {
  const [store, setStore] = useState(() => new DeltaStore());
  const seq = useRef(lastSeq);
  seq.current = lastSeq;
  useEffect(() => setStore(new DeltaStore()), [run]);
  useEffect(() => {
    if (finished) return;
    return followDeltas(key, run, () => seq.current, store);
  }, [key, run, finished, store]);
  return store;
}

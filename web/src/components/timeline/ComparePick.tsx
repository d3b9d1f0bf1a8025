// Choosing two runs of a list to compare: a checkbox per run (a third choice drops the first
// one chosen), and a bar linking to `/compare/A/B` once two are chosen.
import { useCallback, useState } from 'react';
import { shortId } from '../../lib/compare';
import { onLink } from '../../router';

export function usePick() {
  const [picked, setPicked] = useState<string[]>([]);
  const toggle = useCallback((id: string) => setPicked((p) => (p.includes(id) ? p.filter((x) => x !== id) : [...p, id].slice(-2))), []);
  const clear = useCallback(() => setPicked([]), []);
  return { picked, toggle, clear };
}

export function PickBox({ id, picked, onToggle }: { id: string; picked: string[]; onToggle(id: string): void }) {
  return <input type="checkbox" checked={picked.includes(id)} onChange={() => onToggle(id)} aria-label={`Choose run ${id} to compare`} />;
}

export function CompareBar({ picked, onClear }: { picked: string[]; onClear(): void }) {
  if (!picked.length) return null;
  return (
    <div className="banner compare-bar" data-testid="compare-bar">
      {picked.length === 1 ? (
        <span>Run {shortId(picked[0])} chosen: choose a second run to compare it with.</span>
      ) : (
        <a href={`/compare/${picked[0]}/${picked[1]}`} onClick={onLink}>
          Compare {shortId(picked[0])} with {shortId(picked[1])}
        </a>
      )}
      <button type="button" className="link" onClick={onClear}>
        Clear
      </button>
    </div>
  );
}

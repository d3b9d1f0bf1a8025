// The palette of step kinds (drag one onto the canvas, or press it to add the step at the
// end, or inside the selected parallel/map/group), and the "?" list of keyboard shortcuts.
import { KINDS, type Kind } from '../../lib/flow';
import { DRAG_TYPE } from './Canvas';

const LABEL: Record<Exclude<Kind, 'unknown'>, string> = {
  agent: 'Agent: ask a model',
  tool: 'Tool: call a tool',
  if: 'If: then / else',
  switch: 'Switch: cases',
  parallel: 'Parallel: branches + join',
  map: 'Map: steps per item',
  group: 'Group: steps in sequence',
  human: 'Human: approval or input',
  sandbox: 'Sandbox: run a command',
};

export function Palette({ readOnly, onAdd }: { readOnly: boolean; onAdd(kind: Exclude<Kind, 'unknown'>): void }) {
  return (
    <nav className="palette" aria-label="Step kinds" data-testid="palette">
      <h2 className="small muted">Steps</h2>
      {KINDS.map((k) => (
        <button
          key={k}
          type="button"
          className={`pal k-${k}`}
          draggable={!readOnly}
          disabled={readOnly}
          title={`${LABEL[k]}. Drag it onto the canvas, or press to add it at the end.`}
          data-testid={`palette-${k}`}
          onDragStart={(e) => {
            e.dataTransfer.setData(DRAG_TYPE, k);
            e.dataTransfer.effectAllowed = 'copy';
          }}
          onClick={() => onAdd(k)}
        >
          <strong>{k}</strong>
          <span className="small muted">{LABEL[k].split(': ')[1]}</span>
        </button>
      ))}
    </nav>
  );
}

export const SHORTCUTS: [string, string][] = [
  ['Ctrl+S', 'save a new version'],
  ['Ctrl+Z', 'undo'],
  ['Ctrl+Shift+Z, Ctrl+Y', 'redo'],
  ['Delete, Backspace', 'delete the selected step or edge'],
  ['↑ ↓', 'select the previous / next step'],
  ['←  →', 'select the container / its first step'],
  ['Shift+arrows', 'move the selected step (saved with the workflow)'],
  ['L', 'lay the graph out again'],
  ['Escape', 'clear the selection'],
  ['?', 'this list'],
];

export function Help({ onClose }: { onClose(): void }) {
  return (
    <div className="help" role="dialog" aria-modal="false" aria-labelledby="help-title" data-testid="help">
      <header>
        <h2 id="help-title">Keyboard shortcuts</h2>
        <button type="button" className="link" onClick={onClose} aria-label="Close the shortcuts">
          ✕
        </button>
      </header>
      <table>
        <tbody>
          {SHORTCUTS.map(([k, what]) => (
            <tr key={k}>
              <th scope="row">
                <kbd>{k}</kbd>
              </th>
              <td>{what}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p className="small muted">
        Connect two steps by dragging from a step&apos;s bottom handle to another step: an <code>if</code> gets its{' '}
        <code>then</code>, then its <code>else</code>; a <code>switch</code> a case; other steps a <code>next</code>. Drop a
        kind onto a parallel, map or group step to add it inside. Drag a step to move it: where each step is
        drawn is saved with the workflow (its <code>layout</code>); Auto-layout forgets it.
      </p>
    </div>
  );
}

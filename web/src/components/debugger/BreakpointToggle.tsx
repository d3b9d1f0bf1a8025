// A breakpoint's toggle: the red dot on a graph node, and the button in the step's panel.
// Both are buttons with aria-pressed, reachable with Tab.

export function BreakpointDot({ step, on, onToggle }: { step: string; on: boolean; onToggle(step: string): void }) {
  return (
    <button
      type="button"
      className={`bp-dot nodrag${on ? ' on' : ''}`}
      aria-pressed={on}
      aria-label={`Breakpoint before ${step}`}
      title={on ? `Pauses before ${step}: press to remove` : `Press to pause before ${step}`}
      data-testid={`bp-${step}`}
      onClick={(e) => {
        e.stopPropagation();
        onToggle(step);
      }}
    />
  );
}

export function BreakpointButton({ step, on, onToggle }: { step: string; on: boolean; onToggle(step: string): void }) {
  return (
    <button type="button" className={`bp-button${on ? ' on' : ''}`} aria-pressed={on} onClick={() => onToggle(step)} data-testid="bp-panel">
      <span className="bp-mark" aria-hidden="true" /> {on ? 'Pauses before this step' : 'Pause before this step'}
    </button>
  );
}

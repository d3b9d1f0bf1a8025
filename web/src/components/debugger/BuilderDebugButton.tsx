// The builder's "Debug…": run with breakpoints or stepping, from the builder's steps as they
// are now; `onStart` saves first when edited, then starts the saved version.
import { useState } from 'react';
import { StartRunDialog, type DebugStart } from './StartRunDialog';

export function BuilderDebugButton({ steps, disabled, onStart }: { steps: () => string[]; disabled: boolean; onStart(opts: DebugStart): Promise<void> }) {
  const [open, setOpen] = useState<string[]>();
  return (
    <>
      <button type="button" disabled={disabled} onClick={() => setOpen(steps())} title="Run with breakpoints">
        Debug…
      </button>
      {open && <StartRunDialog title="Run with breakpoints" steps={open} onStart={onStart} onClose={() => setOpen(undefined)} />}
    </>
  );
}

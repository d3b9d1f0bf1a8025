// The ways to start a run under the debugger: "Run…" on the Workflows page (reads the stored
// workflow's steps first) and "Debug…" in the builder (its own steps; the builder saves first).
import { useMemo, useState } from 'react';
import { navigate } from '../../router';
import { useSession } from '../../session';
import { startRun } from './api';
import { StartRunDialog, stepIdsOf, type DebugStart } from './StartRunDialog';

/** A stored workflow's "Run…": pick breakpoints (or none), start its latest version, open the run. */
export function WorkflowRunButton({ name }: { name: string }) {
  const [open, setOpen] = useState(false);
  return (
    <>
      <button type="button" onClick={() => setOpen(true)} aria-label={`Run ${name}`}>
        Run…
      </button>
      {open && <WorkflowRunDialog name={name} onClose={() => setOpen(false)} />}
    </>
  );
}

function WorkflowRunDialog({ name, onClose }: { name: string; onClose(): void }) {
  const { api } = useSession();
  // The version whose steps are shown is the version started.
  const loaded = useMemo(() => api.workflow(name).then((w) => ({ ref: `${w.name}@${w.version}`, steps: stepIdsOf(w.source) })), [api, name]);
  const steps = useMemo(() => loaded.then((l) => l.steps), [loaded]);
  const start = async (opts: DebugStart) => {
    const { ref } = await loaded;
    const r = await startRun(api, { workflow: ref, ...opts });
    navigate(`/runs/${r.id}`);
  };
  return <StartRunDialog title={`Run ${name}`} steps={steps} onStart={start} onClose={onClose} />;
}

/** The builder's "Debug…": its steps as they are now; `onStart` saves when edited, then starts. */
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

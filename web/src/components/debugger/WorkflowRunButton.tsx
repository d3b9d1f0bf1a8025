// A stored workflow's "Run…" on the Workflows page: the dialog (and the YAML parser it needs
// to list the steps) is loaded only when it is opened, so the page stays light.
import { lazy, Suspense, useState } from 'react';

const WorkflowRunDialog = lazy(() => import('./WorkflowRunDialog'));

export function WorkflowRunButton({ name }: { name: string }) {
  const [open, setOpen] = useState(false);
  return (
    <>
      <button type="button" onClick={() => setOpen(true)} aria-label={`Run ${name}`}>
        Run…
      </button>
      {open && (
        <Suspense fallback={null}>
          <WorkflowRunDialog name={name} onClose={() => setOpen(false)} />
        </Suspense>
      )}
    </>
  );
}

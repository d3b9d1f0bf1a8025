// The Workflows page's "Run…" dialog: the stored workflow's latest version, its steps to pick
// breakpoints from, and that same version started (then its run opened).
import { useMemo } from 'react';
import { navigate } from '../../router';
import { useSession } from '../../session';
import { startRun } from './api';
import { StartRunDialog, stepIdsOf, type DebugStart } from './StartRunDialog';

export default function WorkflowRunDialog({ name, onClose }: { name: string; onClose(): void }) {
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

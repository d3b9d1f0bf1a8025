// The builder's actions: selection, the canvas edits that change the selection too, and
// saving (a new version each time) and running the saved version.
import { useCallback, useState } from 'react';
import { ApiError, type Api } from '../../api/client';
import type { WorkflowVersion } from '../../api/types';
import type { Flow, Kind, Step } from '../../lib/flow';
import { addStep, disconnect, removeStep, type FlowEdge } from '../../lib/flowGraph';
import { navigate } from '../../router';
import type { useFlow } from './hooks';
import { startRun } from '../debugger/api';
import type { DebugStart } from '../debugger/StartRunDialog';

type FlowState = ReturnType<typeof useFlow>;

export function useSelection() {
  const [selected, setSelected] = useState<string>();
  const [selectedEdge, setSelectedEdge] = useState<string>();
  const [focus, setFocus] = useState<{ id: string; n: number }>();
  const select = useCallback((id?: string) => {
    setSelected(id);
    setSelectedEdge(undefined);
  }, []);
  const selectEdge = useCallback((id?: string) => {
    setSelected(undefined);
    setSelectedEdge(id);
  }, []);
  /** Selects a step and centres the canvas on it. */
  const focusOn = useCallback(
    (id: string) => {
      select(id);
      setFocus((f) => ({ id, n: (f?.n ?? 0) + 1 }));
    },
    [select],
  );
  return { selected, selectedEdge, focus, select, selectEdge, focusOn };
}

type Selection = ReturnType<typeof useSelection>;

export function useEdits(st: FlowState, sel: Selection, step: Step | undefined, edges: FlowEdge[]) {
  const { flow } = st;
  const { select, focusOn, selected, selectedEdge, selectEdge } = sel;
  /** A new step at the end, or inside `into` (or the selected container); at `at` if given. */
  const add = useCallback(
    (kind: Exclude<Kind, 'unknown'>, into?: string, at?: { x: number; y: number }, dropped = false) => {
      const container = into ?? (step?.children ? step.id : undefined);
      const r = addStep(flow, kind, container);
      // Dropped at a point: saved there (with the others where they are), one undo step.
      st.edit(at ? st.placeAt(r.flow, r.id, at.x, at.y) : r.flow);
      // Dropped: it is where the pointer was. Added by a press: the view shows it.
      if (dropped) select(r.id);
      else focusOn(r.id);
      return r.id;
    },
    [flow, st, step, select, focusOn],
  );
  /** A kind dropped on the canvas: at the drop point, or inside the container it fell on. */
  const onDrop = useCallback(
    (kind: Kind, x: number, y: number, into?: string) => {
      if (kind === 'unknown') return;
      add(kind, into ?? '', into ? undefined : { x, y }, true);
    },
    [add],
  );
  /** Deletes the selected edge's field, or the selected step. */
  const remove = useCallback(() => {
    if (selectedEdge) {
      const e = edges.find((x) => x.id === selectedEdge);
      if (e) st.edit(disconnect(flow, e));
      selectEdge(undefined);
    } else if (selected) {
      st.edit(removeStep(flow, selected));
      select(undefined);
    }
  }, [flow, edges, selected, selectedEdge, st, select, selectEdge]);
  return { add, onDrop, remove };
}

export function useStore(api: Api, st: FlowState, flow: Flow, readOnly: boolean, opened?: WorkflowVersion) {
  const [stored, setStored] = useState<WorkflowVersion | undefined>(opened);
  // The YAML last saved (or opened), as the builder writes it: what a run compares with. The
  // model saved: "edited" is any other (an undo back to it is not edited), so the header
  // needs no YAML of its own.
  const [savedYaml, setSavedYaml] = useState(() => (opened ? st.yamlNow() : undefined));
  const [savedFlow, setSavedFlow] = useState<Flow | undefined>(() => (opened ? flow : undefined));
  const [status, setStatus] = useState<string>();
  const [fail, setFail] = useState<ApiError>();
  const [busy, setBusy] = useState(false);

  const save = useCallback(async (): Promise<WorkflowVersion | undefined> => {
    if (readOnly) return undefined;
    setBusy(true);
    setFail(undefined);
    const text = st.yamlNow();
    const name = String(flow.meta.name ?? '');
    try {
      let w: WorkflowVersion;
      try {
        w = await api.saveWorkflow(text, stored?.name === name ? name : undefined);
      } catch (e) {
        // Saved before under this name (another tab, an import): the next version.
        if (!(e instanceof ApiError && e.status === 409)) throw e;
        w = await api.saveWorkflow(text, name);
      }
      setStored(w);
      setSavedYaml(text);
      setSavedFlow(flow);
      setStatus(`Saved ${w.name} version ${w.version}`);
      window.history.replaceState(null, '', `/builder/${encodeURIComponent(w.name)}`);
      return w;
    } catch (e) {
      setFail(e as ApiError);
      return undefined;
    } finally {
      setBusy(false);
    }
  }, [api, flow, readOnly, st, stored]);

  /**
   * Saves first when edited (and allowed), then starts the saved version and opens its run;
   * `debug`: with breakpoints and stepping (the debugger's "Debug…").
   */
  const run = useCallback(async (debug?: DebugStart) => {
    const dirty = !stored || savedYaml !== st.yamlNow();
    const w = dirty && !readOnly ? await save() : stored;
    if (!w) return;
    setBusy(true);
    try {
      const r = await startRun(api, { workflow: `${w.name}@${w.version}`, ...debug });
      navigate(`/runs/${r.id}`);
    } catch (e) {
      setFail(e as ApiError);
      setBusy(false);
    }
  }, [api, readOnly, save, st, stored, savedYaml]);
  const edited = !!stored && savedFlow !== flow;
  return { stored, savedYaml, edited, status, setStatus, fail, setFail, busy, save, run };
}

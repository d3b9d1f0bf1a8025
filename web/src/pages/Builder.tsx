// The visual workflow builder: palette, canvas and side panel, or the YAML tab, over one
// model (lib/flow.ts) that both edit; the server's validator checks every change; save
// stores a new version, run starts the saved version and opens the run viewer. Loaded on
// demand with the graph library. A role that may not edit workflows sees it read-only.
import { ReactFlowProvider } from '@xyflow/react';
import { useCallback, useEffect, useMemo, useState } from 'react';
import { ApiError } from '../api/client';
import type { AgentVersions } from '../api/adminTypes';
import type { WorkflowVersion } from '../api/types';
import { useEdits, useSelection, useStore } from '../components/builder/actions';
import { Canvas } from '../components/builder/Canvas';
import { fieldProblems, useFlow, useValidation } from '../components/builder/hooks';
import { Help, Palette } from '../components/builder/Palette';
import { StepPanel } from '../components/builder/StepPanel';
import { download, Toolbar, useShortcuts } from '../components/builder/Toolbar';
import { Problems, YamlTab, type Problem } from '../components/builder/YamlTab';
import { ErrorBanner } from '../components/Status';
import { BuilderDebugButton } from '../components/debugger/BuilderDebugButton';
import { findStep, NEW_WORKFLOW, parseFlow, walk, type Step } from '../lib/flow';
import { connect, graphOf, renameAgent, renameStep, setField, setMeta } from '../lib/flowGraph';
import { templateVars } from '../lib/templateVars';
import { onLink } from '../router';
import { useSession } from '../session';

interface Loaded {
  text: string;
  stored?: WorkflowVersion;
  t0: number;
}

export default function Builder({ name }: { name?: string }) {
  const { api } = useSession();
  const [loaded, setLoaded] = useState<Loaded>();
  const [error, setError] = useState<ApiError>();
  useEffect(() => {
    const t0 = performance.now();
    setLoaded(undefined);
    if (!name) {
      setLoaded({ text: NEW_WORKFLOW, t0 });
      return;
    }
    let live = true;
    api.workflow(name).then(
      (w) => live && setLoaded({ text: w.source, stored: w, t0 }),
      (e: ApiError) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [api, name]);
  if (error) {
    return (
      <section>
        <h1>Workflow {name}</h1>
        <ErrorBanner error={error} />
        <a href="/workflows" onClick={onLink}>
          Back to the workflows
        </a>
      </section>
    );
  }
  if (!loaded) return <p className="loading">Loading {name}…</p>;
  let parsed: ReturnType<typeof parseFlow>;
  try {
    parsed = parseFlow(loaded.text);
  } catch (e) {
    // A stored document always parses; a broken one opens as a new workflow, saying why.
    return <p className="banner error">This document cannot be opened in the builder: {(e as Error).message}</p>;
  }
  return (
    <ReactFlowProvider>
      <Editor key={name ?? ''} initial={parsed} loaded={loaded} />
    </ReactFlowProvider>
  );
}

function Editor({ initial, loaded }: { initial: ReturnType<typeof parseFlow>; loaded: Loaded }) {
  const { api, me } = useSession();
  const readOnly = !me.may.edit_workflows;
  const [tab, setTab] = useState<'canvas' | 'yaml'>('canvas');
  const st = useFlow(initial, tab === 'yaml');
  const { flow } = st;
  const [help, setHelp] = useState(false);
  const [openMs, setOpenMs] = useState<number>();
  const sel = useSelection();
  const store = useStore(api, st, flow, readOnly, loaded.stored);
  const validation = useValidation(api, st.yamlNow, flow);
  const graph = useMemo(() => graphOf(flow), [flow]);
  const steps = useMemo(() => new Map(walk(flow.steps).map((p) => [p.step.id, p.step])), [flow]);
  const broken = useMemo(() => new Set(validation.problems.filter((p) => p.step && p.d.level === 'error').map((p) => p.step as string)), [validation.problems]);
  const step: Step | undefined = sel.selected ? steps.get(sel.selected) : undefined;
  const edits = useEdits(st, sel, step, graph.edges);
  const toggleHelp = useCallback(() => setHelp((h) => !h), []);
  useShortcuts({ save: store.save, remove: edits.remove, select: sel.select, focusOn: sel.focusOn, travel: st.travel, relayout: st.relayout, nudge: st.nudge, help: toggleHelp, flow, selected: sel.selected, readOnly, tab });
  const onReady = useCallback(() => setOpenMs(Math.round(performance.now() - loaded.t0)), [loaded.t0]);
  const openProblem = (p: Problem) => {
    if (!p.step) return sel.select(undefined);
    setTab('canvas');
    sel.focusOn(p.step);
  };
  const onImport = (text: string) => {
    const why = st.replace(text);
    store.setStatus(why ? undefined : 'Imported: save to store it as a new version');
    store.setFail(why ? new ApiError(0, 'import', `The file is not a workflow: ${why}`) : undefined);
  };
  return (
    <section className="builder" aria-labelledby="builder-title" data-testid="builder" data-open-ms={openMs}>
      <header className="run-head">
        <h1 id="builder-title">
          {String(flow.meta.name ?? 'untitled')}{' '}
          {store.stored && (
            <span className="muted small" data-testid="version">
              v{store.stored.version}
              {store.edited && ' · edited'}
            </span>
          )}
        </h1>
        <Tabs tab={tab} onTab={setTab} />
        <Toolbar
          readOnly={readOnly}
          mayRun={me.may.start_runs && (!readOnly || !!store.stored)}
          busy={store.busy}
          hist={st.hist}
          onUndo={() => st.travel(true)}
          onRedo={() => st.travel(false)}
          onLayout={st.relayout}
          onSave={() => void store.save()}
          onRun={() => void store.run()}
          onImport={onImport}
          onExport={() => download(`${String(flow.meta.name ?? 'workflow')}.yaml`, st.yamlNow())}
          onHelp={toggleHelp}
        />
        {me.may.start_runs && (!readOnly || !!store.stored) && (
          <BuilderDebugButton steps={() => walk(flow.steps).map((p) => p.step.id)} disabled={store.busy} onStart={(opts) => store.run(opts)} />
        )}
      </header>
      {readOnly && <p className="banner">Your key may read workflows but not change them: the builder is read-only.</p>}
      <ErrorBanner error={store.fail} />
      {store.status && (
        <p className="banner ok" role="status" data-testid="builder-status">
          {store.status}
        </p>
      )}
      {validation.error && <p className="banner error">The validator could not be reached: {validation.error}</p>}
      {help && <Help onClose={() => setHelp(false)} />}
      {tab === 'canvas' ? (
        <div className="builder-body">
          <Palette readOnly={readOnly} onAdd={(k) => edits.add(k)} />
          <Canvas
            nodes={graph.nodes}
            edges={graph.edges}
            steps={steps}
            positions={st.positions}
            selected={sel.selected}
            selectedEdge={sel.selectedEdge}
            broken={broken}
            readOnly={readOnly}
            focus={sel.focus}
            onSelect={sel.select}
            onSelectEdge={sel.selectEdge}
            onMove={st.move}
            onConnect={(a, b) => {
              const why = st.edit(connect(flow, a, b));
              store.setFail(why ? new ApiError(0, 'connect', why) : undefined);
            }}
            onDrop={edits.onDrop}
            onReady={onReady}
          />
          <Side st={st} step={step} sel={sel} problems={validation.problems} readOnly={readOnly} onDelete={edits.remove} />
        </div>
      ) : (
        <YamlTab text={st.yaml ?? st.yamlNow()} readOnly={readOnly} onText={st.replace} />
      )}
      <Problems problems={validation.problems} checking={validation.checking} onOpen={openProblem} />
    </section>
  );
}

function Tabs({ tab, onTab }: { tab: 'canvas' | 'yaml'; onTab(t: 'canvas' | 'yaml'): void }) {
  return (
    <div className="tabs" role="tablist" aria-label="View">
      {(['canvas', 'yaml'] as const).map((t) => (
        <button key={t} type="button" role="tab" aria-selected={tab === t} className={tab === t ? 'on' : ''} onClick={() => onTab(t)}>
          {t === 'canvas' ? 'Canvas' : 'YAML'}
        </button>
      ))}
    </div>
  );
}

interface SideProps {
  st: ReturnType<typeof useFlow>;
  step?: Step;
  sel: ReturnType<typeof useSelection>;
  problems: Problem[];
  readOnly: boolean;
  onDelete(): void;
}

/** The side panel of the selected step (or of the document), with the agents it may pick. */
function Side({ st, step, sel, problems, readOnly, onDelete }: SideProps) {
  const { api } = useSession();
  const { flow } = st;
  const { selected, select } = sel;
  const [registry, setRegistry] = useState<string[]>([]);
  const [registryError, setRegistryError] = useState<string>();
  useEffect(() => {
    api.agents().then(
      (a) => {
        setRegistry(a.agents.map((x) => x.name));
        setRegistryError(undefined);
      },
      (e: Error) => {
        setRegistry([]);
        setRegistryError(e.message);
      },
    );
  }, [api]);
  const source = useMemo(
    () => ({
      names: registry,
      error: registryError,
      versions: (name: string) => api.request<AgentVersions>('GET', `/agents/${encodeURIComponent(name)}/versions`).then((v) => v.versions),
    }),
    [api, registry, registryError],
  );
  const docProblems = useMemo(() => (selected ? fieldProblems(problems, flow, undefined) : undefined), [problems, flow, selected]);
  const docAgents = Object.keys((flow.meta.agents as Record<string, unknown>) ?? {});
  const at = selected ? findStep(flow, selected) : undefined;
  const targets = at ? at.list.filter((s) => s.id !== selected).map((s) => s.id) : [];
  const vars = useMemo(() => templateVars(flow, selected), [flow, selected]);
  return (
    <StepPanel
      key={selected ?? ''}
      flow={flow}
      step={step}
      targets={targets}
      agents={[...docAgents, ...registry.filter((r) => !docAgents.includes(r))]}
      vars={vars}
      problems={fieldProblems(problems, flow, selected)}
      readOnly={readOnly}
      onField={(path, v) => st.edit(selected ? setField(flow, selected, path, v) : setMeta(flow, path, v), `${selected ?? ''}:${path}`)}
      onRename={(id) => {
        const r = renameStep(flow, selected ?? '', id);
        if (typeof r === 'string') return r;
        st.edit(r);
        select(id);
        return undefined;
      }}
      onDelete={onDelete}
      onClose={() => select(undefined)}
      registry={source}
      docProblems={docProblems}
      onEditFlow={(fn, group) => st.edit(fn(flow), group)}
      onRenameAgent={(from, to) => {
        const r = renameAgent(flow, from, to);
        if (typeof r === 'string') return r;
        st.edit(r);
        return undefined;
      }}
    />
  );
}

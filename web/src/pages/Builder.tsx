// The visual workflow builder: palette, canvas and side panel, or the YAML tab, over one
// model (lib/flow.ts) that both edit; the server's validator checks every change; save
// stores a new version, run starts the saved version and opens the run viewer. Loaded on
// demand with the graph library. A role that may not edit workflows sees it read-only.
import { ReactFlowProvider } from '@xyflow/react';
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { ApiError } from '../api/client';
import type { WorkflowVersion } from '../api/types';
import { Canvas } from '../components/builder/Canvas';
import { fieldProblems, order, useFlow, useValidation } from '../components/builder/hooks';
import { Help, Palette } from '../components/builder/Palette';
import { StepPanel } from '../components/builder/StepPanel';
import { Problems, YamlTab, type Problem } from '../components/builder/YamlTab';
import { ErrorBanner } from '../components/Status';
import { findStep, NEW_WORKFLOW, parseFlow, walk, type Flow, type Kind, type Step } from '../lib/flow';
import { addStep, connect, disconnect, graphOf, removeStep, renameStep, setField, setMeta } from '../lib/flowGraph';
import { templateVars } from '../lib/templateVars';
import { navigate, onLink } from '../router';
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
  const st = useFlow(initial);
  const { flow } = st;
  const [tab, setTab] = useState<'canvas' | 'yaml'>('canvas');
  const [selected, setSelected] = useState<string>();
  const [selectedEdge, setSelectedEdge] = useState<string>();
  const [focus, setFocus] = useState<{ id: string; n: number }>();
  const [help, setHelp] = useState(false);
  const [stored, setStored] = useState<WorkflowVersion | undefined>(loaded.stored);
  const [status, setStatus] = useState<string>();
  const [fail, setFail] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  const [openMs, setOpenMs] = useState<number>();
  const [registry, setRegistry] = useState<string[]>([]);
  // The YAML last saved (or opened), as the builder writes it: what "edited" compares with.
  const [savedYaml, setSavedYaml] = useState(() => (loaded.stored ? st.yamlNow() : undefined));
  const validation = useValidation(api, st.yaml, flow);

  useEffect(() => {
    api.agents().then((a) => setRegistry(a.agents.map((x) => x.name)), () => setRegistry([]));
  }, [api]);

  const graph = useMemo(() => graphOf(flow), [flow]);
  const steps = useMemo(() => new Map(walk(flow.steps).map((p) => [p.step.id, p.step])), [flow]);
  const broken = useMemo(() => new Set(validation.problems.filter((p) => p.step && p.d.level === 'error').map((p) => p.step as string)), [validation.problems]);
  const step: Step | undefined = selected ? steps.get(selected) : undefined;
  const docAgents = Object.keys((flow.meta.agents as Record<string, unknown>) ?? {});
  const select = useCallback((id?: string) => {
    setSelected(id);
    setSelectedEdge(undefined);
  }, []);
  const focusOn = useCallback((id: string) => {
    select(id);
    setFocus((f) => ({ id, n: (f?.n ?? 0) + 1 }));
  }, [select]);

  const add = useCallback(
    (kind: Exclude<Kind, 'unknown'>, into?: string) => {
      const container = into ?? (step?.children ? step.id : undefined);
      const r = addStep(flow, kind, container);
      st.edit(r.flow);
      select(r.id);
      return r.id;
    },
    [flow, st, step, select],
  );
  const onDrop = useCallback(
    (kind: Kind, x: number, y: number, into?: string) => {
      if (kind === 'unknown') return;
      const id = add(kind, into ?? '');
      if (!into) st.move(id, x, y);
    },
    [add, st],
  );
  const remove = useCallback(() => {
    if (selectedEdge) {
      const e = graph.edges.find((x) => x.id === selectedEdge);
      if (e) st.edit(disconnect(flow, e));
      setSelectedEdge(undefined);
    } else if (selected) {
      st.edit(removeStep(flow, selected));
      select(undefined);
    }
  }, [flow, graph, selected, selectedEdge, st, select]);

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

  const run = useCallback(async () => {
    const dirty = !stored || savedYaml !== st.yamlNow();
    const w = dirty && !readOnly ? await save() : stored;
    if (!w) return;
    setBusy(true);
    try {
      const r = await api.startRun(`${w.name}@${w.version}`);
      navigate(`/runs/${r.id}`);
    } catch (e) {
      setFail(e as ApiError);
      setBusy(false);
    }
  }, [api, readOnly, save, st, stored, savedYaml]);

  useShortcuts({ save, remove, select, focusOn, travel: st.travel, relayout: st.relayout, help: () => setHelp((h) => !h), flow, selected, readOnly, tab });

  const onReady = useCallback(() => setOpenMs(Math.round(performance.now() - loaded.t0)), [loaded.t0]);
  const openProblem = (p: Problem) => {
    if (!p.step) return select(undefined);
    setTab('canvas');
    focusOn(p.step);
  };
  const at = selected ? findStep(flow, selected) : undefined;
  const targets = at ? at.list.filter((s) => s.id !== selected).map((s) => s.id) : [];
  const vars = useMemo(() => templateVars(flow, selected), [flow, selected]);
  const dirty = savedYaml !== st.yaml;

  return (
    <section className="builder" aria-labelledby="builder-title" data-testid="builder" data-open-ms={openMs}>
      <header className="run-head">
        <h1 id="builder-title">
          {String(flow.meta.name ?? 'untitled')}{' '}
          {stored && (
            <span className="muted small" data-testid="version">
              v{stored.version}
              {dirty && ' · edited'}
            </span>
          )}
        </h1>
        <div className="tabs" role="tablist" aria-label="View">
          {(['canvas', 'yaml'] as const).map((t) => (
            <button key={t} type="button" role="tab" aria-selected={tab === t} className={tab === t ? 'on' : ''} onClick={() => setTab(t)}>
              {t === 'canvas' ? 'Canvas' : 'YAML'}
            </button>
          ))}
        </div>
        <Toolbar
          readOnly={readOnly}
          mayRun={me.may.start_runs && (!readOnly || !!stored)}
          busy={busy}
          hist={st.hist}
          onUndo={() => st.travel(true)}
          onRedo={() => st.travel(false)}
          onLayout={st.relayout}
          onSave={() => void save()}
          onRun={() => void run()}
          onImport={(text) => {
            const why = st.replace(text);
            setStatus(why ? undefined : 'Imported: save to store it as a new version');
            if (why) setFail(new ApiError(0, 'import', `The file is not a workflow: ${why}`));
          }}
          onExport={() => download(`${String(flow.meta.name ?? 'workflow')}.yaml`, st.yamlNow())}
          onHelp={() => setHelp((h) => !h)}
        />
      </header>
      {readOnly && <p className="banner">Your key may read workflows but not change them: the builder is read-only.</p>}
      <ErrorBanner error={fail} />
      {status && (
        <p className="banner ok" role="status" data-testid="builder-status">
          {status}
        </p>
      )}
      {validation.error && <p className="banner error">The validator could not be reached: {validation.error}</p>}
      {help && <Help onClose={() => setHelp(false)} />}
      {tab === 'canvas' ? (
        <div className="builder-body">
          <Palette readOnly={readOnly} onAdd={(k) => add(k)} />
          <Canvas
            nodes={graph.nodes}
            edges={graph.edges}
            steps={steps}
            positions={st.positions}
            selected={selected}
            selectedEdge={selectedEdge}
            broken={broken}
            readOnly={readOnly}
            focus={focus}
            onSelect={select}
            onSelectEdge={(id) => {
              setSelected(undefined);
              setSelectedEdge(id);
            }}
            onMove={st.move}
            onConnect={(a, b) => {
              const why = st.edit(connect(flow, a, b));
              setFail(why ? new ApiError(0, 'connect', why) : undefined);
            }}
            onDrop={onDrop}
            onReady={onReady}
          />
          <StepPanel
            key={selected ?? ''}
            flow={flow}
            step={step}
            targets={targets}
            agents={[...docAgents, ...registry.filter((r) => !docAgents.includes(r))]}
            vars={vars}
            problems={fieldProblems(validation.problems, flow, selected)}
            readOnly={readOnly}
            onField={(path, v) => st.edit(selected ? setField(flow, selected, path, v) : setMeta(flow, path, v), `${selected ?? ''}:${path}`)}
            onRename={(id) => {
              const r = renameStep(flow, selected ?? '', id);
              if (typeof r === 'string') return r;
              st.edit(r);
              select(id);
              return undefined;
            }}
            onDelete={remove}
            onClose={() => select(undefined)}
          />
        </div>
      ) : (
        <YamlTab text={st.yaml} readOnly={readOnly} onText={st.replace} />
      )}
      <Problems problems={validation.problems} checking={validation.checking} onOpen={openProblem} />
    </section>
  );
}

interface ToolbarProps {
  readOnly: boolean;
  mayRun: boolean;
  busy: boolean;
  hist: { past: unknown[]; future: unknown[] };
  onUndo(): void;
  onRedo(): void;
  onLayout(): void;
  onSave(): void;
  onRun(): void;
  onImport(text: string): void;
  onExport(): void;
  onHelp(): void;
}

function Toolbar(p: ToolbarProps) {
  const file = useRef<HTMLInputElement>(null);
  return (
    <div className="buttons">
      {!p.readOnly && (
        <>
          <button type="button" onClick={p.onUndo} disabled={!p.hist.past.length} title="Ctrl+Z">
            Undo
          </button>
          <button type="button" onClick={p.onRedo} disabled={!p.hist.future.length} title="Ctrl+Shift+Z">
            Redo
          </button>
        </>
      )}
      <button type="button" onClick={p.onLayout} title="L">
        Auto-layout
      </button>
      {!p.readOnly && (
        <>
          <button type="button" onClick={() => file.current?.click()}>
            Import
          </button>
          <input
            ref={file}
            type="file"
            accept=".yaml,.yml,.json,text/yaml,application/json"
            hidden
            aria-label="Import a YAML file"
            data-testid="import"
            onChange={async (e) => {
              const f = e.target.files?.[0];
              if (f) p.onImport(await f.text());
              e.target.value = '';
            }}
          />
        </>
      )}
      <button type="button" onClick={p.onExport}>
        Export
      </button>
      {!p.readOnly && (
        <button type="button" onClick={p.onSave} disabled={p.busy} title="Ctrl+S">
          Save
        </button>
      )}
      {p.mayRun && (
        <button type="button" className="primary" onClick={p.onRun} disabled={p.busy}>
          Run
        </button>
      )}
      <button type="button" onClick={p.onHelp} aria-label="Keyboard shortcuts" title="Keyboard shortcuts">
        ?
      </button>
    </div>
  );
}

function download(name: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type: 'application/yaml' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

interface Keys {
  save(): unknown;
  remove(): void;
  select(id?: string): void;
  focusOn(id: string): void;
  travel(back: boolean): void;
  relayout(): void;
  help(): void;
  flow: Flow;
  selected?: string;
  readOnly: boolean;
  tab: string;
}

/** The builder's keyboard shortcuts (listed by the "?" help); text fields keep their own keys. */
function useShortcuts(k: Keys) {
  const ref = useRef(k);
  ref.current = k;
  useEffect(() => {
    const on = (e: KeyboardEvent) => {
      const c = ref.current;
      const typing = (e.target as HTMLElement).closest?.('input, textarea, select, [contenteditable]');
      const mod = e.ctrlKey || e.metaKey;
      const key = e.key.toLowerCase();
      if (mod && key === 's') {
        e.preventDefault();
        void c.save();
      } else if (mod && !typing && !c.readOnly && (key === 'z' || key === 'y')) {
        e.preventDefault();
        c.travel(key === 'z' && !e.shiftKey);
      } else if (typing || mod || e.altKey || c.tab !== 'canvas') {
        return;
      } else if ((e.key === 'Delete' || e.key === 'Backspace') && !c.readOnly) {
        e.preventDefault();
        c.remove();
      } else if (e.key === 'Escape') c.select(undefined);
      else if (e.key === '?') c.help();
      else if (key === 'l') c.relayout();
      else if (e.key.startsWith('Arrow')) {
        const all = order(c.flow);
        const i = all.findIndex((s) => s.id === c.selected);
        const cur = all[i];
        const to =
          e.key === 'ArrowDown' ? all[i + 1]?.id ?? all[0]?.id : e.key === 'ArrowUp' ? all[i - 1]?.id : e.key === 'ArrowLeft' ? cur?.parent : cur?.first;
        if (to) {
          e.preventDefault();
          c.focusOn(to);
        }
      }
    };
    window.addEventListener('keydown', on);
    return () => window.removeEventListener('keydown', on);
  }, []);
}

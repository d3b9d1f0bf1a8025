// The side panel: the selected step's fields by kind (with the validator's problems on the
// field they name), or the document's own fields when no step is selected.
import { useState } from 'react';
import type { Flow, Kind, Step } from '../../lib/flow';
import { getPath, setField, setMeta } from '../../lib/flowGraph';
import { AgentForm, AgentsEditor, CopyFromRegistry, freeName, inlineOf, KNOWN_TOOLS, type RegistrySource } from './AgentsEditor';
import { Field, type FieldDef } from './Fields';

const STRATEGIES = ['all', 'any', 'first_success', 'vote', 'priority', 'merge', 'judge'] as const;
const TIERS = ['process', 'oci', 'gvisor', 'microvm', 'docker'] as const;

const COMMON: FieldDef[] = [
  { path: 'description', label: 'Description', type: 'text' },
  { path: 'next', label: 'Next', type: 'target', hint: 'Where to go after this step (default: the next in its list).' },
  { path: 'max_visits', label: 'Max visits', type: 'number', hint: 'Every loop needs one step with it.' },
  { path: 'timeout', label: 'Timeout', type: 'text', hint: 'One attempt: 500ms, 10s, 2m, 1h 30m.' },
  {
    path: 'retry',
    label: 'Retry',
    type: 'group',
    hint: 'Attempts after a failure: waits the backoff, then factor times longer each time, at most the max delay.',
    fields: [
      { path: 'max', label: 'Max retries', type: 'number' },
      { path: 'backoff', label: 'Backoff', type: 'text', hint: 'e.g. 1s' },
      { path: 'factor', label: 'Factor', type: 'number', hint: 'Default 2.' },
      { path: 'max_delay', label: 'Max delay', type: 'text', hint: 'e.g. 30s' },
    ],
  },
  { path: 'on_error', label: 'On error', type: 'onerror', hint: 'After the last attempt fails.' },
];

const BY_KIND: Record<Kind, FieldDef[]> = {
  agent: [
    { path: 'agent', label: 'Agent', type: 'agent', hint: 'An agent of the document, or of the registry (NAME or NAME@3).' },
    { path: 'prompt', label: 'Prompt', type: 'template', hint: 'A template: type {{ for inputs, steps, state and memory.' },
    { path: 'output.schema', label: 'Output schema (JSON Schema)', type: 'json' },
    { path: 'output.max_retries', label: 'Output retries', type: 'number' },
    {
      path: 'wait_for',
      label: 'Wait for a message',
      type: 'group',
      hint: 'The step starts once a message from this agent is in its inbox.',
      fields: [
        { path: 'from', label: 'From (agent)', type: 'agent' },
        { path: 'timeout', label: 'Wait at most', type: 'text', hint: '5m (default: until a message comes)' },
      ],
    },
  ],
  tool: [
    { path: 'tool', label: 'Tool', type: 'agent', options: KNOWN_TOOLS, hint: 'echo, fail, sleep, http.get, http.post, state.set…' },
    { path: 'with', label: 'Arguments (with)', type: 'json' },
  ],
  if: [
    { path: 'if', label: 'Condition', type: 'text', hint: 'An expression, without {{ }}.' },
    { path: 'then', label: 'Then', type: 'target' },
    { path: 'else', label: 'Else', type: 'target' },
  ],
  switch: [
    { path: 'switch.cases', label: 'Cases', type: 'cases', hint: 'Tried in order: the first whose expression holds is taken (expressions are written without {{ }}).' },
    { path: 'switch.default', label: 'Default (no case holds)', type: 'target' },
  ],
  parallel: [
    { path: 'join.strategy', label: 'Join strategy', type: 'select', options: STRATEGIES },
    { path: 'join.tie_break', label: 'Tie break (vote)', type: 'select', options: ['first', 'fail'] },
    { path: 'join.on_conflict', label: 'On conflict (merge)', type: 'select', options: ['fail', 'priority'] },
    { path: 'join.priority', label: 'Priority (branches, highest first)', type: 'ids', hint: 'priority and merge joins; unlisted branches follow in document order.' },
    { path: 'join.judge', label: 'Judge (agent)', type: 'agent' },
    { path: 'max_concurrency', label: 'Max concurrency', type: 'number' },
  ],
  map: [
    { path: 'map.over', label: 'Over (expression giving a list)', type: 'text' },
    { path: 'map.as', label: 'Item name', type: 'text', hint: 'Default: item.' },
    { path: 'max_concurrency', label: 'Max concurrency', type: 'number' },
  ],
  group: [],
  human: [
    { path: 'human.prompt', label: 'Prompt', type: 'template' },
    { path: 'human.kind', label: 'Kind', type: 'select', options: ['approval', 'input'] },
    { path: 'human.schema', label: 'Schema (input)', type: 'json' },
    { path: 'human.timeout', label: 'Timeout', type: 'text', hint: '30m, 4h, 2d' },
    { path: 'human.escalate_to', label: 'Escalate to', type: 'text', hint: 'admin, editor, or a key id' },
    { path: 'human.on_timeout', label: 'On timeout', type: 'select', options: ['fail', 'reject', 'approve'] },
  ],
  sandbox: [
    { path: 'sandbox.command', label: 'Command', type: 'text', hint: 'Run by /bin/sh -c (the YAML tab takes an argv list).' },
    { path: 'sandbox.files', label: 'Files', type: 'pairs', keyLabel: 'Path', valueLabel: 'Content', multiline: true, hint: 'Written into /work before the command runs.' },
    { path: 'sandbox.stdin', label: 'Stdin', type: 'textarea' },
    { path: 'sandbox.env', label: 'Environment', type: 'pairs', keyLabel: 'Variable', valueLabel: 'Value' },
    { path: 'sandbox.tier', label: 'Tier', type: 'select', options: TIERS },
    { path: 'sandbox.cpu', label: 'CPU', type: 'number' },
    { path: 'sandbox.memory', label: 'Memory', type: 'text', hint: '256M' },
    { path: 'sandbox.pids', label: 'Processes', type: 'number' },
    { path: 'sandbox.disk', label: 'Disk', type: 'text', hint: '50M' },
    { path: 'sandbox.time', label: 'Time limit', type: 'text', hint: '10s' },
    { path: 'sandbox.output', label: 'Output cap', type: 'text', hint: '64k' },
    { path: 'sandbox.net', label: 'Network', type: 'text', hint: 'none, loopback, allow:host[,host]' },
    { path: 'sandbox.allow_failure', label: 'Allow failure', type: 'check' },
  ],
  unknown: [],
};

const DOC_FIELDS: FieldDef[] = [
  { path: 'name', label: 'Name', type: 'text', hint: 'Saved under this name; each save is a new version.' },
  { path: 'description', label: 'Description', type: 'text' },
  { path: 'inputs', label: 'Inputs', type: 'inputs', hint: 'What a run is given (--input NAME=VALUE); one without a default is required.' },
  { path: 'agents', label: 'Agents', type: 'agents' },
  { path: 'state', label: 'Initial state', type: 'json' },
  { path: 'outputs', label: 'Outputs', type: 'pairs', keyLabel: 'Output', valueLabel: 'Template', hint: 'Rendered when the run succeeds; without any, the last step’s output.' },
  {
    path: 'budget',
    label: 'Budget',
    type: 'group',
    hint: 'Limits on what a run may spend; every agent draws from it.',
    fields: [
      { path: 'tokens', label: 'Tokens', type: 'number' },
      { path: 'cost_usd', label: 'Cost (USD)', type: 'number' },
      { path: 'model_calls', label: 'Model calls', type: 'number' },
      { path: 'wall_time', label: 'Wall time', type: 'text', hint: '10m' },
    ],
  },
];

export interface PanelProps {
  flow: Flow;
  step?: Step;
  /** Steps a jump from the selected step may name (its own list). */
  targets: string[];
  agents: string[];
  vars: string[];
  /** field path -> problems ('' for the step or document as a whole). */
  problems: Map<string, string[]>;
  readOnly: boolean;
  onField(path: string, value: unknown): void;
  onRename(id: string): string | undefined;
  /** The registry's agents, for "Copy from registry". */
  registry?: RegistrySource;
  /** The document's problems by field path (an agent step's panel shows its agent's). */
  docProblems?: Map<string, string[]>;
  /** One edit of the whole document from a step's panel (its agent, a copy from the registry). */
  onEditFlow?(edit: (f: Flow) => Flow, group?: string): void;
  /** Renames one of the document's agents (the steps naming it follow); a refusal says why. */
  onRenameAgent?(from: string, to: string): string | undefined;
  onDelete(): void;
  onClose(): void;
}

const problemsOf = (all: Map<string, string[]>, path: string) =>
  [...all].filter(([k]) => k === path || k.startsWith(`${path}.`) || k.startsWith(`${path}[`)).flatMap(([, v]) => v);

export function StepPanel(p: PanelProps) {
  const s = p.step;
  const defs = s ? [...BY_KIND[s.kind], ...(s.kind === 'if' || s.kind === 'switch' ? COMMON.filter((d) => d.path !== 'next') : COMMON)] : DOC_FIELDS;
  const source = s ? s.fields : p.flow.meta;
  const general = p.problems.get('') ?? [];
  return (
    <aside className="panel builder-panel" aria-labelledby="bpanel-title" data-testid="step-panel">
      <header>
        <h2 id="bpanel-title">{s ? <span className="mono">{s.id}</span> : 'Workflow'}</h2>
        {s && (
          <button type="button" className="link" onClick={p.onClose} aria-label="Close the step's fields">
            ✕
          </button>
        )}
      </header>
      {s && <p className="muted small">{s.kind} step</p>}
      {general.map((m) => (
        <p key={m} className="banner error small">
          {m}
        </p>
      ))}
      {s && <IdField key={s.id} id={s.id} readOnly={p.readOnly} onRename={p.onRename} />}
      {defs.map((d) => {
        const field = (def: FieldDef, path: string, problems: string[]) => (
          <Field
            key={`${s?.id ?? ''}:${path}`}
            def={{ ...def, path }}
            value={getPath(source, path)}
            problems={problems}
            readOnly={p.readOnly}
            targets={p.targets}
            agents={p.agents}
            vars={p.vars}
            problemsAt={p.problems}
            ids={s?.children?.map((c) => c.id)}
            onChange={(v) => p.onField(path, v)}
          />
        );
        if (d.type === 'agents')
          return (
            <AgentsEditor
              key="agents"
              value={source.agents}
              readOnly={p.readOnly}
              problemsAt={p.problems}
              vars={p.vars}
              registry={p.registry}
              onChange={(v) => p.onField('agents', v)}
              onRename={(from, to) => (p.onRenameAgent ? p.onRenameAgent(from, to) : 'renaming is not available here')}
            />
          );
        if (d.type !== 'group') return field(d, d.path, problemsOf(p.problems, d.path));
        // A group: its own problems (a missing field) under its legend, each field's at it.
        const own = p.problems.get(d.path) ?? [];
        return (
          <fieldset key={`${s?.id ?? ''}:${d.path}`} className={`field-group${own.length ? ' invalid' : ''}`} data-field={d.path}>
            <legend>{d.label}</legend>
            {d.hint && <p className="muted small">{d.hint}</p>}
            {own.map((m) => (
              <p key={m} className="field-error" role="alert">
                {m}
              </p>
            ))}
            {(d.fields ?? []).map((f) => field(f, `${d.path}.${f.path}`, problemsOf(p.problems, `${d.path}.${f.path}`)))}
          </fieldset>
        );
      })}
      {s?.kind === 'agent' && <StepAgent {...p} name={typeof s.fields.agent === 'string' ? s.fields.agent : ''} />}
      {s && !p.readOnly && (
        <button type="button" className="danger" onClick={p.onDelete}>
          Delete step
        </button>
      )}
    </aside>
  );
}

/** The id, renamed on Enter or blur (every jump to it follows); a refused one says why. */
function IdField({ id, readOnly, onRename }: { id: string; readOnly: boolean; onRename(id: string): string | undefined }) {
  const [draft, setDraft] = useState(id);
  const [error, setError] = useState<string>();
  const commit = () => {
    if (draft === id) return;
    const why = onRename(draft);
    setError(why);
  };
  return (
    <div className={`field${error ? ' invalid' : ''}`}>
      <label htmlFor="bstep-id">Id</label>
      <input
        id="bstep-id"
        className="mono"
        value={draft}
        disabled={readOnly}
        aria-invalid={!!error || undefined}
        onChange={(e) => setDraft(e.target.value)}
        onBlur={commit}
        onKeyDown={(e) => e.key === 'Enter' && commit()}
      />
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}

/**
 * The agent an agent step picked: the workflow's own is edited right here (it is the
 * document's, so every step naming it sees the change); a registry agent is described, with a
 * copy into the workflow to edit it; an unknown name is left to the validator.
 */
function StepAgent(p: PanelProps & { name: string }) {
  const agents = (p.flow.meta.agents ?? {}) as Record<string, unknown>;
  const own = p.name && Object.prototype.hasOwnProperty.call(agents, p.name) ? agents[p.name] : undefined;
  const bare = p.name.split('@')[0];
  if (own && typeof own === 'object' && !Array.isArray(own)) {
    return (
      <fieldset className="field-group step-agent" data-testid="step-agent">
        <legend>
          Agent <span className="mono">{p.name}</span> (this workflow’s)
        </legend>
        <p className="muted small">Every step naming it uses these fields.</p>
        <AgentForm
          name={p.name}
          value={own as Record<string, unknown>}
          readOnly={p.readOnly}
          problemsAt={p.docProblems ?? new Map()}
          vars={p.vars}
          onChange={(v) => p.onEditFlow?.((f) => setMeta(f, `agents.${p.name}`, v), `agents.${p.name}`)}
        />
      </fieldset>
    );
  }
  if (!bare || !p.registry?.names.includes(bare) || p.readOnly) return null;
  return (
    <CopyFromRegistry
      only={bare}
      registry={p.registry}
      onCopy={(v) => {
        // The copy takes the name the step uses, so the step now runs the inline agent.
        const name = freeName(v.name, Object.keys(agents));
        const step = p.step?.id ?? '';
        p.onEditFlow?.((f) => {
          const copied = setMeta(f, `agents.${name}`, inlineOf(v));
          return name === p.name ? copied : setField(copied, step, 'agent', name);
        });
      }}
    />
  );
}

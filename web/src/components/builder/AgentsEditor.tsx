// The workflow's own (inline) agents as forms: each agent's name, model, role, instructions,
// sampling, tools, output schema and limits, with the validator's problems at the field they
// name (`agents.NAME.FIELD`); a new agent by name; and "Copy from registry", which copies a
// registry agent's version (its definition as runs use it) into the document, so it can be
// edited here without changing the registry. The document panel lists them all; an agent
// step's panel shows the form of the agent it picked.
import { useEffect, useId, useState } from 'react';
import type { AgentVersion } from '../../api/adminTypes';
import { Field, type FieldDef } from './Fields';

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v);
const NAME = /^[A-Za-z0-9_-]+$/;

/** The registry as the builder sees it: the agents' names, and one agent's versions. */
export interface RegistrySource {
  names: string[];
  /** Why the registry's list could not be read, if it could not. */
  error?: string;
  versions(name: string): Promise<AgentVersion[]>;
}

/** Tools an agent may be given (docs/workflow-format.md); the validator names unknown ones. */
export const KNOWN_TOOLS = [
  'echo',
  'fail',
  'sleep',
  'http.get',
  'http.post',
  'state.set',
  'sandbox.exec',
  'memory.get',
  'memory.set',
  'memory.append',
  'memory.list',
  'memory.remember',
  'memory.recall',
  'message.send',
  'message.broadcast',
  'channel.subscribe',
];

const FIELDS: FieldDef[] = [
  { path: 'model', label: 'Model', type: 'text', hint: 'provider/model: scripted/hello, local/smollm2, openai/gpt-4o…' },
  { path: 'role', label: 'Role', type: 'text' },
  { path: 'instructions', label: 'Instructions (system prompt)', type: 'template', hint: 'A template: type {{ for inputs, steps, state and memory.' },
  { path: 'temperature', label: 'Temperature', type: 'number' },
  { path: 'max_tokens', label: 'Max tokens (one answer)', type: 'number' },
  { path: 'max_tool_turns', label: 'Max tool turns', type: 'number', hint: 'Rounds of tool calls in one step (default 8).' },
  { path: 'output.schema', label: 'Output schema (JSON Schema)', type: 'json', hint: 'Every step of this agent answers JSON matching it (a step’s own output wins).' },
  { path: 'output.max_retries', label: 'Output retries', type: 'number', hint: 'Asked again with the error when the answer does not match (default 2).' },
];

const LIMITS: FieldDef[] = [
  { path: 'budget.tokens', label: 'Tokens', type: 'number' },
  { path: 'budget.cost_usd', label: 'Cost (USD)', type: 'number' },
  { path: 'budget.model_calls', label: 'Model calls', type: 'number' },
];

function get(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const k of path.split('.')) {
    if (!isPlain(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

/** `obj` with `path` set (or removed with `undefined`; emptied objects go too). */
export function setIn(obj: Plain, path: string, value: unknown): Plain {
  const [k, ...rest] = path.split('.');
  const out = { ...obj };
  if (!rest.length) {
    if (value === undefined) delete out[k];
    else out[k] = value;
    return out;
  }
  const inner = setIn(isPlain(out[k]) ? out[k] : {}, rest.join('.'), value);
  if (Object.keys(inner).length) out[k] = inner;
  else delete out[k];
  return out;
}

/** A registry version's definition as an inline agent: the spec without empty keys. */
export function inlineOf(v: AgentVersion): Plain {
  const strip = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(strip);
    if (!isPlain(x)) return x;
    const out: Plain = {};
    for (const [k, val] of Object.entries(x)) {
      if (val === null || val === undefined) continue;
      if (Array.isArray(val) && val.length === 0) continue;
      out[k] = k === 'schema' ? val : strip(val);
    }
    return out;
  };
  return strip(v.spec) as Plain;
}

/** A free name for a copy of registry agent `name` among `taken`. */
export function freeName(name: string, taken: string[]): string {
  if (!taken.includes(name)) return name;
  for (let i = 2; ; i++) if (!taken.includes(`${name}-${i}`)) return `${name}-${i}`;
}

const problemsOf = (all: Map<string, string[]>, path: string) =>
  [...all].filter(([k]) => k === path || k.startsWith(`${path}.`) || k.startsWith(`${path}[`)).flatMap(([, v]) => v);

export interface AgentsProps {
  /** The document's `agents` value. */
  value: unknown;
  readOnly: boolean;
  /** Problems by field path (`agents.writer.model`). */
  problemsAt: Map<string, string[]>;
  vars: string[];
  registry?: RegistrySource;
  /** Sets the whole `agents` value (undefined: none left). */
  onChange(value: Plain | undefined): void;
  /** Renames an agent and the steps naming it; a refusal says why. */
  onRename(from: string, to: string): string | undefined;
}

/** Every inline agent of the document, a new one, and a copy from the registry. */
export function AgentsEditor(p: AgentsProps) {
  const agents = isPlain(p.value) ? p.value : {};
  const names = Object.keys(agents);
  const [open, setOpen] = useState<string | undefined>(names.length === 1 ? names[0] : undefined);
  const [note, setNote] = useState<string>();
  const add = (name: string, spec: Plain) => {
    p.onChange({ ...agents, [name]: spec });
    setOpen(name);
  };
  return (
    <div className="field agents-editor" data-field="agents">
      <span className="label" id="agents-label">
        Agents of this workflow
      </span>
      <p className="muted small">Steps name them by name; one named like a registry agent is used instead of it.</p>
      {(p.problemsAt.get('agents') ?? []).map((m) => (
        <p key={m} className="field-error" role="alert">
          {m}
        </p>
      ))}
      {names.length === 0 && <p className="muted small">No agent of its own yet: add one, or copy one from the registry.</p>}
      <ul className="agent-list" aria-labelledby="agents-label">
        {names.map((n) => {
          const a = isPlain(agents[n]) ? agents[n] : {};
          const bad = problemsOf(p.problemsAt, `agents.${n}`).length > 0;
          return (
            <li key={n} className={`agent-item${bad ? ' invalid' : ''}`} data-agent={n}>
              <button type="button" className="agent-head" aria-expanded={open === n} onClick={() => setOpen((o) => (o === n ? undefined : n))}>
                <span className="mono">{n}</span>
                <span className="muted small">
                  {String(a.model ?? 'no model')}
                  {a.role ? ` · ${String(a.role)}` : ''}
                </span>
                {bad && <span className="bad small"> · has problems</span>}
              </button>
              {open === n && (
                <AgentForm
                  name={n}
                  value={a}
                  readOnly={p.readOnly}
                  problemsAt={p.problemsAt}
                  vars={p.vars}
                  onChange={(v) => p.onChange({ ...agents, [n]: v })}
                  onRename={(to) => {
                    const why = p.onRename(n, to);
                    if (!why) setOpen(to);
                    return why;
                  }}
                  onRemove={() => {
                    const rest = { ...agents };
                    delete rest[n];
                    p.onChange(Object.keys(rest).length ? rest : undefined);
                    setOpen(undefined);
                  }}
                />
              )}
            </li>
          );
        })}
      </ul>
      {!p.readOnly && <NewAgent taken={names} onAdd={(n) => add(n, { model: '' })} />}
      {!p.readOnly && p.registry && (
        <CopyFromRegistry
          registry={p.registry}
          onCopy={(v) => {
            const name = freeName(v.name, names);
            add(name, inlineOf(v));
            setNote(`Copied ${v.name} v${v.version} as \`${name}\`: edit it here; the registry is unchanged.`);
          }}
        />
      )}
      {note && (
        <p className="muted small" role="status" data-testid="agent-copied">
          {note}
        </p>
      )}
    </div>
  );
}

export interface AgentFormProps {
  name: string;
  value: Plain;
  readOnly: boolean;
  problemsAt: Map<string, string[]>;
  vars: string[];
  onChange(value: Plain): void;
  onRename?(to: string): string | undefined;
  onRemove?(): void;
}

/** One inline agent's fields. */
export function AgentForm(p: AgentFormProps) {
  const base = `agents.${p.name}`;
  const field = (d: FieldDef) => (
    <Field
      key={`${p.name}:${d.path}`}
      def={{ ...d, path: `${base}.${d.path}` }}
      value={get(p.value, d.path)}
      problems={problemsOf(p.problemsAt, `${base}.${d.path}`)}
      readOnly={p.readOnly}
      targets={[]}
      agents={[]}
      vars={p.vars}
      onChange={(v) => p.onChange(setIn(p.value, d.path, v))}
    />
  );
  const own = (p.problemsAt.get(base) ?? []).concat(p.problemsAt.get(`${base}.budget`) ?? []);
  return (
    <div className="agent-form" data-testid={`agent-form-${p.name}`}>
      {own.map((m) => (
        <p key={m} className="field-error" role="alert">
          {m}
        </p>
      ))}
      {p.onRename && <AgentName name={p.name} readOnly={p.readOnly} onRename={p.onRename} />}
      {FIELDS.slice(0, 5).map(field)}
      <ToolsField name={p.name} value={p.value.tools} readOnly={p.readOnly} problems={problemsOf(p.problemsAt, `${base}.tools`)} onChange={(v) => p.onChange(setIn(p.value, 'tools', v))} />
      {FIELDS.slice(5).map(field)}
      <fieldset className="field-group">
        <legend>Limits (this agent’s spend in a run)</legend>
        {LIMITS.map(field)}
      </fieldset>
      {p.onRemove && !p.readOnly && (
        <button type="button" className="danger" onClick={p.onRemove}>
          Remove agent {p.name}
        </button>
      )}
    </div>
  );
}

/** The agent's name, renamed on Enter or blur (the steps naming it follow). */
function AgentName({ name, readOnly, onRename }: { name: string; readOnly: boolean; onRename(to: string): string | undefined }) {
  const id = useId();
  const [draft, setDraft] = useState(name);
  const [error, setError] = useState<string>();
  const commit = () => {
    if (draft !== name) setError(onRename(draft));
  };
  return (
    <div className={`field${error ? ' invalid' : ''}`}>
      <label htmlFor={id}>Name</label>
      <input
        id={id}
        className="mono"
        value={draft}
        disabled={readOnly}
        aria-invalid={!!error || undefined}
        aria-describedby={error ? `${id}-e` : undefined}
        onChange={(e) => setDraft(e.target.value)}
        onBlur={commit}
        onKeyDown={(e) => e.key === 'Enter' && commit()}
      />
      {error && (
        <p id={`${id}-e`} className="field-error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}

/** Tools as a comma-separated list, with the known ones offered as buttons. */
function ToolsField({ name, value, readOnly, problems, onChange }: { name: string; value: unknown; readOnly: boolean; problems: string[]; onChange(v: string[] | undefined): void }) {
  const id = useId();
  const list = Array.isArray(value) ? value.map(String) : [];
  const [draft, setDraft] = useState(list.join(', '));
  useEffect(() => {
    // An outside change (undo, the YAML tab, a button below) replaces the draft.
    const parsed = draft.split(',').map((s) => s.trim()).filter(Boolean);
    if (parsed.join(',') !== list.join(',')) setDraft(list.join(', '));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [list.join(',')]);
  const set = (text: string) => {
    setDraft(text);
    const next = text.split(',').map((s) => s.trim()).filter(Boolean);
    onChange(next.length ? next : undefined);
  };
  const invalid = problems.length > 0;
  const offer = KNOWN_TOOLS.filter((t) => !list.includes(t));
  return (
    <div className={`field${invalid ? ' invalid' : ''}`} data-field={`agents.${name}.tools`}>
      <label htmlFor={id}>Tools</label>
      <input id={id} className="mono" value={draft} disabled={readOnly} aria-invalid={invalid || undefined} aria-describedby={`${id}-note`} placeholder="echo, memory.set" onChange={(e) => set(e.target.value)} />
      <p id={`${id}-note`} className={invalid ? 'field-error' : 'muted small'} role={invalid ? 'alert' : undefined}>
        {invalid ? problems.join(' · ') : 'Names of the tools the model may call, separated by commas.'}
      </p>
      {!readOnly && (
        <details className="tool-offer">
          <summary>Add a tool</summary>
          <div className="chips">
            {offer.map((t) => (
              <button key={t} type="button" className="chip mono" onClick={() => set([...list, t].join(', '))}>
                {t}
              </button>
            ))}
          </div>
        </details>
      )}
    </div>
  );
}

/** A new agent: its name (checked here: the pattern, not taken); its model is asked next. */
function NewAgent({ taken, onAdd }: { taken: string[]; onAdd(name: string): void }) {
  const id = useId();
  const [name, setName] = useState('');
  const [error, setError] = useState<string>();
  const add = () => {
    const n = name.trim();
    const why = !n ? 'give the agent a name' : !NAME.test(n) ? 'agent names may only use ASCII letters and digits, `_` and `-`' : taken.includes(n) ? `the workflow already has an agent \`${n}\`` : undefined;
    setError(why);
    if (why) return;
    onAdd(n);
    setName('');
  };
  return (
    <div className={`field${error ? ' invalid' : ''}`}>
      <label htmlFor={id}>New agent</label>
      <div className="bf-pair">
        <input
          id={id}
          className="mono"
          placeholder="writer"
          value={name}
          aria-invalid={!!error || undefined}
          aria-describedby={error ? `${id}-e` : undefined}
          onChange={(e) => setName(e.target.value)}
          onKeyDown={(e) => e.key === 'Enter' && add()}
        />
        <button type="button" onClick={add}>
          Add agent
        </button>
      </div>
      {error && (
        <p id={`${id}-e`} className="field-error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}

/** Picks a registry agent and one of its versions (the default first), and copies it. */
export function CopyFromRegistry({ registry, onCopy, only }: { registry: RegistrySource; onCopy(v: AgentVersion): void; only?: string }) {
  const id = useId();
  const [agent, setAgent] = useState(only ?? '');
  const [versions, setVersions] = useState<AgentVersion[]>();
  const [version, setVersion] = useState<number>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    setVersions(undefined);
    setError(undefined);
    if (!agent) return;
    let live = true;
    registry.versions(agent).then(
      (vs) => {
        if (!live) return;
        setVersions(vs);
        setVersion(vs.find((v) => v.version === v.default_version)?.version ?? vs.at(-1)?.version);
      },
      (e: Error) => live && setError(`The registry could not be read: ${e.message}`),
    );
    return () => {
      live = false;
    };
  }, [agent, registry]);
  const picked = versions?.find((v) => v.version === version);
  if (!only && registry.error)
    return (
      <p className="field-error" role="alert">
        The agent registry could not be read: {registry.error}
      </p>
    );
  if (!only && registry.names.length === 0) return <p className="muted small">The registry has no agent to copy yet (Agents → New agent).</p>;
  return (
    <fieldset className="field-group copy-registry" data-testid="copy-registry">
      <legend>{only ? `Registry agent ${only}` : 'Copy from registry'}</legend>
      <div className="bf-pair">
        {!only && (
          <select aria-label="Registry agent" id={`${id}-a`} value={agent} onChange={(e) => setAgent(e.target.value)}>
            <option value="">(pick an agent)</option>
            {registry.names.map((n) => (
              <option key={n}>{n}</option>
            ))}
          </select>
        )}
        {versions && (
          <select aria-label="Version" value={version ?? ''} onChange={(e) => setVersion(Number(e.target.value))}>
            {[...versions].reverse().map((v) => (
              <option key={v.version} value={v.version}>
                v{v.version}
                {v.version === v.default_version ? ' (default)' : ''}
              </option>
            ))}
          </select>
        )}
      </div>
      {picked && (
        <p className="muted small">
          {picked.spec.model}
          {picked.spec.role ? ` · ${picked.spec.role}` : ''}
          {picked.spec.tools?.length ? ` · tools: ${picked.spec.tools.join(', ')}` : ''}
        </p>
      )}
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      <button type="button" disabled={!picked} onClick={() => picked && onCopy(picked)}>
        {only ? 'Copy into this workflow to edit it' : 'Copy into this workflow'}
      </button>
    </fieldset>
  );
}

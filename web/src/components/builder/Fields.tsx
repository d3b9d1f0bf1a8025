// The side panel's field editors: text, number, choice, JSON (parse errors shown, the value
// kept until it parses), a step target, an agent picker, the template editor that suggests
// what `{{ ` may name, and the forms of Forms.tsx (switch cases, id lists, name/text pairs). A value over LARGE characters is shown cut, read-only, until
// "Edit all" is asked for, so a huge prompt or schema never freezes the panel.
import { useEffect, useId, useRef, useState } from 'react';
import { openTemplate, suggest } from '../../lib/templateVars';
import { CasesEditor, IdListEditor, InputsEditor, OnErrorEditor, PairsEditor } from './Forms';

export const LARGE = 20_000;

/** Types edited as a form of rows (not one labelled control). */
const FORMS = new Set<FieldType>(['cases', 'ids', 'pairs', 'inputs']);

export type FieldType = 'text' | 'textarea' | 'template' | 'number' | 'select' | 'json' | 'check' | 'target' | 'agent' | 'cases' | 'ids' | 'pairs' | 'group' | 'onerror' | 'inputs' | 'agents';

export interface FieldDef {
  path: string;
  label: string;
  type: FieldType;
  options?: readonly string[];
  hint?: string;
  /** `group`: its fields, with paths under the group's. */
  fields?: FieldDef[];
  /** `pairs`: what a row's name and text are called; `multiline` texts. */
  keyLabel?: string;
  valueLabel?: string;
  multiline?: boolean;
}

export interface FieldProps {
  def: FieldDef;
  value: unknown;
  problems: string[];
  readOnly: boolean;
  targets: string[];
  agents: string[];
  vars: string[];
  /** Problems by field path, for the rows of a form (`switch.cases[1].goto`). */
  problemsAt?: Map<string, string[]>;
  /** `ids`: the ids that may be listed (a parallel step's branches). */
  ids?: string[];
  onChange(value: unknown): void;
}

const toText = (v: unknown, type: FieldType) => {
  if (v === undefined || v === null) return '';
  if (type === 'json') return JSON.stringify(v, null, 2);
  if (FORMS.has(type)) return JSON.stringify(v);
  return typeof v === 'string' ? v : JSON.stringify(v);
};

export function Field(p: FieldProps) {
  const id = useId();
  const { def } = p;
  const text = toText(p.value, def.type);
  const [all, setAll] = useState(false);
  const invalid = p.problems.length > 0;
  const described = invalid || def.hint ? `${id}-note` : undefined;
  let editor: React.ReactNode;
  if (text.length > LARGE && !all) {
    editor = (
      <div className="large">
        <pre className="output">{text.slice(0, 2000)}…</pre>
        <button type="button" onClick={() => setAll(true)}>
          Edit all ({text.length.toLocaleString()} characters)
        </button>
      </div>
    );
  } else editor = <Editor {...p} id={id} text={text} invalid={invalid} described={described} />;
  return (
    <div className={`field${invalid ? ' invalid' : ''}`} data-field={def.path}>
      {FORMS.has(def.type) ? (
        <span className="label" id={`${id}-label`}>
          {def.label}
        </span>
      ) : (
        <label htmlFor={id}>{def.label}</label>
      )}
      {editor}
      {described && (
        <p id={`${id}-note`} className={invalid ? 'field-error' : 'muted small'} role={invalid ? 'alert' : undefined}>
          {invalid ? p.problems.join(' · ') : def.hint}
        </p>
      )}
    </div>
  );
}

type EditorProps = FieldProps & { id: string; text: string; invalid: boolean; described?: string };

function Editor(p: EditorProps) {
  const { def } = p;
  const common = { id: p.id, disabled: p.readOnly, 'aria-invalid': p.invalid || undefined, 'aria-describedby': p.described };
  const set = (s: string) => p.onChange(s === '' ? undefined : s);
  switch (def.type) {
    case 'check':
      return <input type="checkbox" {...common} checked={p.value === true} onChange={(e) => p.onChange(e.target.checked || undefined)} />;
    case 'number':
      return <input type="number" {...common} value={p.text} onChange={(e) => p.onChange(e.target.value === '' ? undefined : Number(e.target.value))} />;
    case 'select':
    case 'target': {
      const options = def.type === 'target' ? ['end', ...p.targets] : def.options ?? [];
      return (
        <select {...common} value={p.text} onChange={(e) => set(e.target.value)}>
          <option value="">{def.type === 'target' ? '(the next step)' : '(default)'}</option>
          {options.map((o) => (
            <option key={o}>{o}</option>
          ))}
          {p.text && !options.includes(p.text) && <option>{p.text}</option>}
        </select>
      );
    }
    case 'agent':
      return (
        <>
          <input {...common} list={`${p.id}-agents`} value={p.text} onChange={(e) => set(e.target.value)} />
          <datalist id={`${p.id}-agents`}>
            {(def.options ?? p.agents).map((a) => (
              <option key={a} value={a} />
            ))}
          </datalist>
        </>
      );
    case 'json':
      return <JsonEditor {...p} />;
    case 'onerror':
      return <OnErrorEditor id={p.id} value={p.value} readOnly={p.readOnly} invalid={p.invalid} described={p.described} targets={p.targets} onChange={p.onChange} />;
    case 'cases':
    case 'ids':
    case 'pairs':
    case 'inputs': {
      const form = { id: p.id, path: def.path, label: def.label, value: p.value, readOnly: p.readOnly, problemsAt: p.problemsAt ?? new Map(), onChange: p.onChange };
      if (def.type === 'cases') return <CasesEditor {...form} targets={p.targets} />;
      if (def.type === 'ids') return <IdListEditor {...form} options={p.ids ?? []} />;
      if (def.type === 'inputs') return <InputsEditor {...form} />;
      return <PairsEditor {...form} keyLabel={def.keyLabel ?? 'Name'} valueLabel={def.valueLabel ?? 'Value'} multiline={def.multiline} />;
    }
    case 'template':
      return <TemplateEditor {...p} />;
    case 'textarea':
      return <textarea {...common} rows={3} value={p.text} onChange={(e) => set(e.target.value)} />;
    default:
      return <input {...common} value={p.text} onChange={(e) => set(e.target.value)} />;
  }
}

/** JSON text: applied when it parses; otherwise the error is shown and the value kept. */
function JsonEditor(p: EditorProps) {
  const [draft, setDraft] = useState(p.text);
  const [error, setError] = useState<string>();
  const last = useRef(p.text);
  useEffect(() => {
    // An outside change (undo, the YAML tab) replaces the draft.
    if (p.text !== last.current) {
      last.current = p.text;
      setDraft(p.text);
      setError(undefined);
    }
  }, [p.text]);
  const change = (s: string) => {
    setDraft(s);
    if (s.trim() === '') {
      setError(undefined);
      last.current = '';
      p.onChange(undefined);
      return;
    }
    try {
      const v = JSON.parse(s);
      setError(undefined);
      last.current = JSON.stringify(v, null, 2);
      p.onChange(v);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <>
      <textarea
        id={p.id}
        className="mono"
        rows={Math.min(12, Math.max(3, draft.split('\n').length))}
        disabled={p.readOnly}
        aria-invalid={p.invalid || !!error || undefined}
        aria-describedby={p.described}
        value={draft}
        onChange={(e) => change(e.target.value)}
        spellCheck={false}
      />
      {error && (
        <p className="field-error" role="alert">
          JSON: {error}
        </p>
      )}
    </>
  );
}

/** A template: typing `{{` offers the variables in scope; Enter or a click inserts one. */
function TemplateEditor(p: EditorProps) {
  const ref = useRef<HTMLTextAreaElement>(null);
  const [open, setOpen] = useState<{ start: number; typed: string }>();
  const [active, setActive] = useState(0);
  const options = open ? suggest(p.vars, open.typed) : [];
  const look = () => {
    const el = ref.current;
    if (!el) return;
    setOpen(openTemplate(el.value, el.selectionStart));
    setActive(0);
  };
  const insert = (v: string) => {
    const el = ref.current;
    if (!el || !open) return;
    const caret = el.selectionStart;
    const next = `${el.value.slice(0, open.start)}${v} }}${el.value.slice(caret).replace(/^\s*}}/, '')}`;
    p.onChange(next);
    setOpen(undefined);
    const at = open.start + v.length + 3;
    requestAnimationFrame(() => {
      el.focus();
      el.setSelectionRange(at, at);
    });
  };
  const onKey = (e: React.KeyboardEvent) => {
    if (!options.length) return;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      setActive((a) => (a + (e.key === 'ArrowDown' ? 1 : options.length - 1)) % options.length);
    } else if (e.key === 'Enter' || e.key === 'Tab') {
      e.preventDefault();
      insert(options[active]);
    } else if (e.key === 'Escape') setOpen(undefined);
  };
  return (
    <div className="template">
      <textarea
        ref={ref}
        id={p.id}
        rows={4}
        disabled={p.readOnly}
        aria-invalid={p.invalid || undefined}
        aria-describedby={p.described}
        aria-autocomplete="list"
        value={p.text}
        onChange={(e) => {
          p.onChange(e.target.value);
          look();
        }}
        onKeyDown={onKey}
        onClick={look}
        onBlur={() => setTimeout(() => setOpen(undefined), 150)}
      />
      {options.length > 0 && (
        <ul className="suggest" role="listbox" aria-label="Template variables" data-testid="suggest">
          {options.map((o, i) => (
            <li key={o} role="option" aria-selected={i === active}>
              <button type="button" className="link mono" onMouseDown={(e) => e.preventDefault()} onClick={() => insert(o)}>
                {o}
              </button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

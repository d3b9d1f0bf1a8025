// What a template may name, for the prompt editor's suggestions after `{{`: the document's
// inputs, the steps, the initial state keys and the memory keys other templates use.
import { walk, type Flow } from './flow';

const keysOf = (v: unknown) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.keys(v) : []);

export function templateVars(f: Flow, current?: string): string[] {
  const out = keysOf(f.meta.inputs).map((k) => `inputs.${k}`);
  for (const { step } of walk(f.steps)) if (step.id !== current) out.push(`steps.${step.id}.output`);
  out.push(...keysOf(f.meta.state).map((k) => `state.${k}`));
  const memory = new Set<string>();
  const text = JSON.stringify(f);
  for (const m of text.matchAll(/memory\.([A-Za-z_][A-Za-z0-9_]*)/g)) memory.add(`memory.${m[1]}`);
  out.push(...memory, 'run.id', 'run.workflow');
  return out;
}

/** The `{{ partial` being typed at `caret`, if any: what to complete and where it starts. */
export function openTemplate(text: string, caret: number): { start: number; typed: string } | undefined {
  const before = text.slice(0, caret);
  const open = before.lastIndexOf('{{');
  if (open < 0 || before.lastIndexOf('}}') > open) return undefined;
  const typed = before.slice(open + 2).trimStart();
  if (!/^[A-Za-z0-9_.]*$/.test(typed)) return undefined;
  return { start: caret - typed.length, typed };
}

export function suggest(vars: string[], typed: string, max = 8): string[] {
  const t = typed.toLowerCase();
  return vars.filter((v) => v.toLowerCase().startsWith(t) || (t.length > 1 && v.toLowerCase().includes(t))).slice(0, max);
}

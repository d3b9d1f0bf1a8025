// What a template may name, for the prompt editor's suggestions after `{{`: the document's
// inputs, the steps' outputs, the initial state keys, the shared memory keys (those other
// templates read and those `memory.set`/`memory.append` steps write), the run, and inside a
// map's steps its item (`item` or the map's `as`) and `loop.index`.
import { walk, type Flow } from './flow';

const keysOf = (v: unknown) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.keys(v) : []);
const isPlain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Memory tools: `memory.set` in a tool list is a tool, not a key of the memory. */
const MEMORY_TOOLS = new Set(['get', 'set', 'append', 'list', 'remember', 'recall', 'workflow']);

export function templateVars(f: Flow, current?: string): string[] {
  const out = keysOf(f.meta.inputs).map((k) => `inputs.${k}`);
  const placed = walk(f.steps);
  for (const { step } of placed) if (step.id !== current) out.push(`steps.${step.id}.output`);
  out.push(...keysOf(f.meta.state).map((k) => `state.${k}`));
  const memory = new Set<string>();
  for (const { step } of placed) {
    const tool = step.fields.tool;
    const key = isPlain(step.fields.with) ? step.fields.with.key : undefined;
    if ((tool === 'memory.set' || tool === 'memory.append') && typeof key === 'string' && /^[A-Za-z_]\w*$/.test(key)) memory.add(`memory.${key}`);
  }
  const text = JSON.stringify(f);
  for (const m of text.matchAll(/memory\.([A-Za-z_][A-Za-z0-9_]*)/g)) if (!MEMORY_TOOLS.has(m[1])) memory.add(`memory.${m[1]}`);
  out.push(...memory, 'run.id', 'run.workflow');
  // Inside a map (however deep): its item's name and the loop position, innermost first.
  const byId = new Map(placed.map((p) => [p.step.id, p]));
  const items: string[] = [];
  for (let at = current ? byId.get(current)?.parent : undefined; at; at = byId.get(at.id)?.parent) {
    if (at.kind !== 'map') continue;
    const m = at.fields.map;
    const name = isPlain(m) && typeof m.as === 'string' && m.as ? m.as : 'item';
    if (!items.includes(name)) items.push(name);
  }
  if (items.length) out.push(...items, 'loop.index', 'loop.index1');
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

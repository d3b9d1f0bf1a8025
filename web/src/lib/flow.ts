// The builder's model of a workflow document: its steps as a tree (a parallel step holds its
// branches, a map or a group its steps), each step's other keys as plain values, and the
// document's other keys beside them. YAML -> model -> YAML keeps every value; written back
// into the Document it was read from (the `yaml` package's Document API), the unchanged
// nodes keep their comments, key order and flow style.
import { Document, isMap, isScalar, isSeq, parseDocument, type Node as YamlNode } from 'yaml';

export const KINDS = ['agent', 'tool', 'if', 'switch', 'parallel', 'map', 'group', 'human', 'sandbox'] as const;
export type Kind = (typeof KINDS)[number] | 'unknown';

export type Plain = Record<string, unknown>;

export interface Step {
  id: string;
  kind: Kind;
  /** Every key of the step but its id and its children (`parallel:` or `steps:`). */
  fields: Plain;
  /** Branches of a parallel step; steps of a map or a group. */
  children?: Step[];
}

export interface Flow {
  /** The document's keys but `steps`, in their order. */
  meta: Plain;
  steps: Step[];
}

/** The key holding a kind's children. */
export function childKey(kind: Kind): 'parallel' | 'steps' | undefined {
  if (kind === 'parallel') return 'parallel';
  if (kind === 'map' || kind === 'group') return 'steps';
  return undefined;
}

export function kindOf(raw: Plain): Kind {
  if ('map' in raw) return 'map';
  for (const k of KINDS) {
    if (k === 'group' ? 'steps' in raw : k in raw) return k;
  }
  return 'unknown';
}

const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v);

function stepOf(raw: unknown, at: string): Step {
  if (!isPlain(raw)) throw new Error(`${at} is not a mapping (a step is \`- id: NAME\` with its fields)`);
  const kind = kindOf(raw);
  const key = childKey(kind);
  const fields: Plain = {};
  for (const [k, v] of Object.entries(raw)) if (k !== 'id' && k !== key) fields[k] = v;
  const step: Step = { id: typeof raw.id === 'string' ? raw.id : String(raw.id ?? ''), kind, fields };
  if (key) {
    const list = raw[key];
    step.children = Array.isArray(list) ? list.map((c, i) => stepOf(c, `${at}.${key}[${i}]`)) : [];
  }
  return step;
}

/** The model of a parsed document (its plain value). */
export function flowOf(value: unknown): Flow {
  if (!isPlain(value)) throw new Error('the document is not a mapping: a workflow starts with `version: 1`');
  const meta: Plain = {};
  for (const [k, v] of Object.entries(value)) if (k !== 'steps') meta[k] = v;
  const raw = value.steps ?? [];
  if (!Array.isArray(raw)) throw new Error('`steps` is not a list');
  return { meta, steps: raw.map((s, i) => stepOf(s, `steps[${i}]`)) };
}

/** A step as the document writes it: id, its kind's key first, children in place. */
export function plainStep(s: Step): Plain {
  const key = childKey(s.kind);
  const out: Plain = { id: s.id };
  for (const [k, v] of Object.entries(s.fields)) {
    out[k] = v;
    if (key && (k === s.kind || (s.kind === 'map' && k === 'map'))) out[key] = (s.children ?? []).map(plainStep);
  }
  if (key && !(key in out)) out[key] = (s.children ?? []).map(plainStep);
  return out;
}

export function plainFlow(f: Flow): Plain {
  // Steps before `outputs` and `edges`, as documents write them; the builder's `layout` last.
  const tail = ['outputs', 'edges', 'layout'];
  const out: Plain = {};
  for (const [k, v] of Object.entries(f.meta)) if (!tail.includes(k)) out[k] = v;
  out.steps = f.steps.map(plainStep);
  for (const k of tail) if (k in f.meta) out[k] = f.meta[k];
  return out;
}

export interface Parsed {
  doc: Document;
  flow: Flow;
}

/** Parses YAML (or JSON) text: a syntax error or a document that is no workflow throws. */
export function parseFlow(text: string): Parsed {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length) throw new Error(doc.errors[0].message);
  return { doc, flow: flowOf(doc.toJS({ maxAliasCount: 100_000 }) ?? {}) };
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Writes `value` into `node` in place where both are mappings or lists; returns the node to keep. */
function sync(doc: Document, node: unknown, value: unknown): unknown {
  if (isMap(node) && isPlain(value)) {
    // `agents: {}` filled in is written as a block, one key a line.
    if (node.flow && !node.items.length && Object.keys(value).length) node.flow = false;
    for (const item of [...node.items]) {
      const k = String((item.key as { value?: unknown })?.value ?? item.key);
      if (!(k in value)) node.delete(item.key);
    }
    for (const [k, v] of Object.entries(value)) {
      const cur = node.get(k, true);
      if (cur !== undefined && same((cur as YamlNode).toJSON?.() ?? cur, v)) continue;
      node.set(k, sync(doc, cur, v));
    }
    return node;
  }
  if (isSeq(node) && Array.isArray(value)) {
    // `steps: []` filled in is written as a block, one step a line.
    if (node.flow && !node.items.length && value.length) node.flow = false;
    // Items with an id (steps) are matched by id, others by position.
    const byId = new Map<string, unknown>();
    for (const item of node.items) {
      const id = isMap(item) ? item.get('id') : undefined;
      if (typeof id === 'string') byId.set(id, item);
    }
    const kept = new Set(value.map((v) => (isPlain(v) ? v.id : undefined)));
    const old = node.items;
    node.items = value.map((v, i) => {
      let prev = isPlain(v) && typeof v.id === 'string' ? byId.get(v.id) : undefined;
      // A renamed step keeps its node (and comments) when the node at its place is not kept.
      const here = old[i];
      const hereId = isMap(here) ? here.get('id') : undefined;
      if (prev === undefined && (!byId.size || !kept.has(hereId))) prev = here;
      return sync(doc, prev, v) as never;
    });
    return node;
  }
  if (isScalar(node) && (value === null || typeof value !== 'object')) {
    // Keeps the scalar's comment and quoting style.
    node.value = value;
    return node;
  }
  return doc.createNode(value);
}

/** The YAML of a model, written into (a copy of) `base` so its untouched parts stay as they were. */
export function flowYaml(f: Flow, base?: Document): { doc: Document; text: string } {
  const doc = base ? base.clone() : new Document({});
  if (!isMap(doc.contents)) doc.contents = doc.createNode({}) as never;
  sync(doc, doc.contents, plainFlow(f));
  // The builder's `layout`: one `ID: [x, y]` line per step.
  const layout = isMap(doc.contents) ? doc.contents.get('layout', true) : undefined;
  if (isMap(layout)) for (const item of layout.items) if (isSeq(item.value)) item.value.flow = true;
  return { doc, text: doc.toString({ lineWidth: 0 }) };
}

/** Every step of the model, depth first, with its parent and its place. */
export interface Placed {
  step: Step;
  parent?: Step;
  list: Step[];
  index: number;
}

export function walk(steps: Step[], parent?: Step, out: Placed[] = []): Placed[] {
  steps.forEach((step, index) => {
    out.push({ step, parent, list: steps, index });
    if (step.children) walk(step.children, step, out);
  });
  return out;
}

export function findStep(f: Flow, id: string): Placed | undefined {
  return walk(f.steps).find((p) => p.step.id === id);
}

export const NEW_WORKFLOW = `version: 1
name: untitled
description: Made in the builder.
agents: {}
steps: []
`;

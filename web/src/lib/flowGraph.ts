// The builder's canvas as a view of the model: nodes for every step (nested ones with their
// container as parent) and edges for the control flow the document says (sequence, next,
// then/else, switch cases, on_error goto, extra `edges:`), plus the edits the canvas makes:
// add, delete, connect, disconnect, rename, change a field. Each edit returns a new model.
import { childKey, findStep, walk, type Flow, type Kind, type Plain, type Step } from './flow';

export type EdgeKind = 'sequence' | 'next' | 'then' | 'else' | 'case' | 'default' | 'on_error' | 'branch' | 'body' | 'edge';

export interface FlowNode {
  id: string;
  kind: Kind;
  parent?: string;
}

export interface FlowEdge {
  id: string;
  from: string;
  to: string;
  kind: EdgeKind;
  /** The case's index for `case`, the entry's index in `edges:` for `edge`. */
  index?: number;
}

const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v);

function listEdges(list: Step[], parallel: boolean, out: FlowEdge[]) {
  list.forEach((s, i) => {
    const seq = parallel ? 'end' : list[i + 1]?.id ?? 'end';
    const add = (to: string | undefined, kind: EdgeKind, index?: number) => {
      if (to && to !== 'end') out.push({ id: `${s.id}>${kind}${index ?? ''}>${to}`, from: s.id, to, kind, index });
    };
    const f = s.fields;
    if (s.kind === 'if') {
      const then = str(f.then);
      const otherwise = str(f.else);
      // Each defaults to the next step: one plain edge when neither is written.
      // Both to the same step: one edge, labelled by what is written.
      const same = (then ?? seq) === (otherwise ?? seq);
      add(then ?? seq, same || !(then || otherwise) ? (otherwise && !then ? 'else' : then ? 'then' : 'sequence') : 'then');
      if ((then || otherwise) && !same) add(otherwise ?? seq, 'else');
    } else if (s.kind === 'switch') {
      const sw = isPlain(f.switch) ? f.switch : {};
      (Array.isArray(sw.cases) ? sw.cases : []).forEach((c, n) => add(isPlain(c) ? str(c.goto) : undefined, 'case', n));
      add(str(sw.default) ?? seq, str(sw.default) ? 'default' : 'sequence');
    } else if (str(f.next)) add(str(f.next), 'next');
    else add(seq, 'sequence');
    const onError = str(f.on_error);
    if (onError?.startsWith('goto ')) add(onError.slice(5).trim(), 'on_error');
    if (s.children) {
      if (s.kind === 'parallel') s.children.forEach((c) => add(c.id, 'branch'));
      else if (s.children[0]) add(s.children[0].id, 'body');
      listEdges(s.children, s.kind === 'parallel', out);
    }
  });
}

/** The canvas's nodes (document order) and edges. */
export function graphOf(f: Flow): { nodes: FlowNode[]; edges: FlowEdge[] } {
  const nodes = walk(f.steps).map(({ step, parent }) => ({ id: step.id, kind: step.kind, parent: parent?.id }));
  const edges: FlowEdge[] = [];
  listEdges(f.steps, false, edges);
  const extra = Array.isArray(f.meta.edges) ? f.meta.edges : [];
  extra.forEach((e, n) => {
    if (isPlain(e) && str(e.from) && str(e.to)) edges.push({ id: `edges[${n}]`, from: String(e.from), to: String(e.to), kind: 'edge', index: n });
  });
  return { nodes, edges };
}

const DEFAULTS: Record<Exclude<Kind, 'unknown'>, Plain> = {
  agent: { agent: '' },
  tool: { tool: 'echo', with: { text: 'hello' } },
  if: { if: 'true' },
  switch: { switch: { cases: [] } },
  parallel: { parallel: null, join: { strategy: 'all' } },
  map: { map: { over: '[]' } },
  group: {},
  human: { human: { prompt: 'Approve?', kind: 'approval' } },
  sandbox: { sandbox: { command: 'echo hello', tier: 'process' } },
};

export function freshId(f: Flow, kind: string): string {
  const used = new Set(walk(f.steps).map((p) => p.step.id));
  for (let n = 1; ; n++) if (!used.has(`${kind}${n}`)) return `${kind}${n}`;
}

const clone = (f: Flow): Flow => structuredClone(f);

/** A new step of `kind` at the end of the top-level steps, or of container `into`'s children. */
export function addStep(f: Flow, kind: Exclude<Kind, 'unknown'>, into?: string): { flow: Flow; id: string } {
  const next = clone(f);
  const id = freshId(next, kind);
  const fields = structuredClone(DEFAULTS[kind]);
  if (kind === 'agent') {
    const agents = isPlain(next.meta.agents) ? Object.keys(next.meta.agents) : [];
    fields.agent = agents[0] ?? '';
  }
  if (kind === 'parallel') delete fields.parallel;
  const step: Step = { id, kind, fields, children: childKey(kind) ? [] : undefined };
  const target = into ? findStep(next, into)?.step : undefined;
  if (target?.children) target.children.push(step);
  else next.steps.push(step);
  return { flow: next, id };
}

const REF_KEYS = ['next', 'then', 'else'];

/** Every place a step id is named as a target, rewritten by `fn` (undefined: removed). */
function retarget(f: Flow, fn: (id: string) => string | undefined) {
  for (const { step } of walk(f.steps)) {
    const x = step.fields;
    for (const k of REF_KEYS) {
      if (typeof x[k] !== 'string' || x[k] === 'end') continue;
      const to = fn(x[k] as string);
      if (to === undefined) delete x[k];
      else x[k] = to;
    }
    const onError = str(x.on_error);
    if (onError?.startsWith('goto ')) {
      const to = fn(onError.slice(5).trim());
      if (to === undefined) delete x.on_error;
      else x.on_error = `goto ${to}`;
    }
    if (isPlain(x.switch)) {
      const sw = x.switch;
      if (Array.isArray(sw.cases)) {
        sw.cases = sw.cases.filter((c) => !(isPlain(c) && str(c.goto) && fn(String(c.goto)) === undefined));
        for (const c of sw.cases as unknown[]) if (isPlain(c) && str(c.goto) && c.goto !== 'end') c.goto = fn(String(c.goto));
      }
      if (str(sw.default) && sw.default !== 'end') {
        const to = fn(String(sw.default));
        if (to === undefined) delete sw.default;
        else sw.default = to;
      }
    }
  }
  if (Array.isArray(f.meta.edges)) {
    f.meta.edges = f.meta.edges
      .filter((e) => !(isPlain(e) && (fn(String(e.from)) === undefined || fn(String(e.to)) === undefined)))
      .map((e) => (isPlain(e) ? { ...e, from: fn(String(e.from)), to: fn(String(e.to)) } : e));
  }
}

/** Removes a step (with its children) and every jump to it. */
export function removeStep(f: Flow, id: string): Flow {
  const next = clone(f);
  const at = findStep(next, id);
  if (!at) return f;
  at.list.splice(at.index, 1);
  const gone = new Set([id, ...walk(at.step.children ?? []).map((p) => p.step.id)]);
  retarget(next, (t) => (gone.has(t) ? undefined : t));
  return next;
}

/** Renames a step and every reference to it as a target; an id in use is refused. */
export function renameStep(f: Flow, id: string, to: string): Flow | string {
  if (to === id) return f;
  if (!/^[A-Za-z0-9_-]+$/.test(to)) return 'ids may only use ASCII letters and digits, `_` and `-`';
  if (to === 'end') return '`end` is reserved: it ends a list of steps';
  if (findStep(f, to)) return `the id \`${to}\` is already used`;
  const next = clone(f);
  const at = findStep(next, id);
  if (!at) return f;
  at.step.id = to;
  retarget(next, (t) => (t === id ? to : t));
  // Its saved position follows it (in place, so the layout keeps its order).
  if (isPlain(next.meta.layout) && id in next.meta.layout) {
    next.meta.layout = Object.fromEntries(Object.entries(next.meta.layout).map(([k, v]) => [k === id ? to : k, v]));
  }
  return next;
}

/** Connects `from` to `to`: the field the kind uses for it (then, else, a case, next). */
export function connect(f: Flow, from: string, to: string): Flow | string {
  const a = findStep(f, from);
  const b = findStep(f, to);
  if (!a || !b || from === to) return f;
  if (a.list !== b.list) return `\`${to}\` is not in the same list as \`${from}\`: a jump stays inside its list`;
  const next = clone(f);
  const s = findStep(next, from)?.step as Step;
  const x = s.fields;
  const following = a.list[a.index + 1]?.id;
  if (s.kind === 'if') {
    if (x.then === undefined) x.then = to;
    else x.else = to;
  } else if (s.kind === 'switch') {
    const sw = (isPlain(x.switch) ? x.switch : (x.switch = {})) as Plain;
    const cases = Array.isArray(sw.cases) ? sw.cases : (sw.cases = []);
    (cases as Plain[]).push({ when: 'true', goto: to });
  } else if (to === following && x.next === undefined) {
    return f;
  } else {
    x.next = to;
  }
  return next;
}

/** Removes the field that makes an edge (a sequence edge is implicit: `next: end` cuts it). */
export function disconnect(f: Flow, e: FlowEdge): Flow {
  const next = clone(f);
  if (e.kind === 'edge') {
    if (Array.isArray(next.meta.edges)) next.meta.edges.splice(e.index ?? -1, 1);
    return next;
  }
  const s = findStep(next, e.from)?.step;
  if (!s) return f;
  const x = s.fields;
  if (e.kind === 'case' && isPlain(x.switch) && Array.isArray(x.switch.cases)) x.switch.cases.splice(e.index ?? -1, 1);
  else if (e.kind === 'default' && isPlain(x.switch)) delete x.switch.default;
  else if (e.kind === 'on_error') delete x.on_error;
  else if (e.kind === 'then' || e.kind === 'else' || e.kind === 'next') delete x[e.kind];
  else if (e.kind === 'sequence') {
    if (s.kind === 'if') x.then = 'end';
    else if (s.kind === 'switch' && isPlain(x.switch)) x.switch.default = 'end';
    else x.next = 'end';
  } else return f;
  return next;
}

/** Sets (or, with undefined, removes) a field of a step at a dotted path (`human.prompt`). */
export function setField(f: Flow, id: string, path: string, value: unknown): Flow {
  const next = clone(f);
  const s = findStep(next, id)?.step;
  if (!s) return f;
  setPath(s.fields, path.split('.'), value);
  return next;
}

/** Sets (or removes) a document-level key at a dotted path (`name`, `agents`). */
export function setMeta(f: Flow, path: string, value: unknown): Flow {
  const next = clone(f);
  setPath(next.meta, path.split('.'), value);
  return next;
}

function setPath(obj: Plain, keys: string[], value: unknown) {
  const [k, ...rest] = keys;
  if (!rest.length) {
    if (value === undefined) delete obj[k];
    else obj[k] = value;
    return;
  }
  if (!isPlain(obj[k])) {
    if (value === undefined) return;
    obj[k] = {};
  }
  setPath(obj[k] as Plain, rest, value);
  if (value === undefined && Object.keys(obj[k] as Plain).length === 0) delete obj[k];
}

export function getPath(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const k of path.split('.')) {
    if (!isPlain(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

/**
 * Where a validator diagnostic points: `steps[2].parallel[1].prompt` is step
 * `steps[2].parallel[1]`, field `prompt`; a path outside the steps is a document field.
 */
export function locate(f: Flow, path: string): { step?: string; field: string } {
  const tokens = path.match(/[^.[\]]+|\[\d+\]/g) ?? [];
  let list: Step[] | undefined = tokens[0] === 'steps' ? f.steps : undefined;
  if (!list) return { field: path };
  let step: Step | undefined;
  let i = 1;
  while (list && i < tokens.length && /^\[\d+\]$/.test(tokens[i])) {
    const s: Step | undefined = list[Number(tokens[i].slice(1, -1))];
    if (!s) break;
    step = s;
    i++;
    const key = childKey(s.kind);
    if (key && tokens[i] === key && /^\[\d+\]$/.test(tokens[i + 1] ?? '')) {
      list = s.children;
      i++;
    } else list = undefined;
  }
  return { step: step?.id, field: tokens.slice(i).join('.').replace(/\.\[/g, '[') };
}

/**
 * Renames the document's agent `from` to `to` (in place, so `agents:` keeps its order), and
 * every step that names it follows: `agent:`, `wait_for.from` and a parallel's `join.judge`.
 * A refused name says why.
 */
export function renameAgent(f: Flow, from: string, to: string): Flow | string {
  if (to === from) return f;
  if (!/^[A-Za-z0-9_-]+$/.test(to)) return 'agent names may only use ASCII letters and digits, `_` and `-`';
  const agents = isPlain(f.meta.agents) ? f.meta.agents : {};
  if (!(from in agents)) return `there is no agent \`${from}\` in this workflow`;
  if (to in agents) return `the workflow already has an agent \`${to}\``;
  const next = clone(f);
  next.meta.agents = Object.fromEntries(Object.entries(next.meta.agents as Plain).map(([k, v]) => [k === from ? to : k, v]));
  for (const { step } of walk(next.steps)) {
    const x = step.fields;
    if (x.agent === from) x.agent = to;
    if (isPlain(x.wait_for) && x.wait_for.from === from) x.wait_for.from = to;
    if (isPlain(x.join) && x.join.judge === from) x.join.judge = to;
  }
  return next;
}

// The builder's state: the model with its undo history, the YAML Document it was read from
// (so comments survive), node positions (saved in the document's `layout`), and the server's
// validation of the current YAML.
import { useCallback, useDeferredValue, useEffect, useMemo, useRef, useState } from 'react';
import type { Document } from 'yaml';
import type { Api } from '../../api/client';
import type { Diagnostic } from '../../api/types';
import { flowYaml, parseFlow, walk, type Flow } from '../../lib/flow';
import { graphOf, locate } from '../../lib/flowGraph';
import { push, redo, start, undo, type History } from '../../lib/history';
import { display, fitLayout, hasLayout, withLayout, withoutLayout, type Pos } from '../../lib/flowLayout';
import { layout } from '../../lib/layout';
import type { Problem } from './YamlTab';

/** Automatic positions for every node: kept where known, laid out where not (all with `fresh`). */
export function place(f: Flow, prev: Pos, fresh = false): Pos {
  const g = graphOf(f);
  const missing = fresh || g.nodes.some((n) => !prev.has(n.id));
  if (!missing) return prev;
  const auto = new Map(layout(g.nodes, g.edges).map((p) => [p.id, { x: p.x, y: p.y }]));
  // Positions of steps no longer there are kept: an undo brings a step back where it was.
  const out: Pos = fresh ? new Map() : new Map(prev);
  for (const n of g.nodes) {
    const at = (!fresh && prev.get(n.id)) || auto.get(n.id);
    if (at) out.set(n.id, at);
  }
  return out;
}

/**
 * The model with its undo history, the YAML Document it was read from, and where each node
 * is drawn: the document's saved `layout` (lib/flowLayout.ts) where it has one, else an
 * automatic position. A move is an edit of the layout, so undo and redo cover moves.
 */
export function useFlow(initial: { flow: Flow; doc?: Document }, yamlShown = false) {
  const [hist, setHist] = useState<History<Flow>>(() => start(initial.flow));
  const [base, setBase] = useState<Document | undefined>(initial.doc);
  const auto = useRef<Pos>(undefined as unknown as Pos);
  if (!auto.current) auto.current = place(initial.flow, new Map());
  const [positions, setPositions] = useState<Pos>(() => display(initial.flow, auto.current, new Map()));
  const flow = hist.present;
  const deferred = useDeferredValue(flow);
  // The YAML text is written only while the YAML tab shows it (from a deferred value, so typing
  // never waits for it); otherwise on demand (`yamlNow`: save, run, export, the validator's
  // quiet moment). An edit of a 200-step canvas costs no YAML serialisation.
  const yaml = useMemo(() => (yamlShown ? flowYaml(deferred, base).text : undefined), [yamlShown, deferred, base]);

  /** The nodes of `f` placed: automatic positions for new ones, then the display. */
  const show = useCallback((f: Flow) => {
    auto.current = place(f, auto.current);
    setPositions((p) => display(f, auto.current, p));
  }, []);
  const edit = useCallback(
    (next: Flow | string, group?: string): string | undefined => {
      if (typeof next === 'string') return next;
      auto.current = place(next, auto.current);
      const fitted = fitLayout(next, auto.current);
      setHist((h) => push(h, fitted, group));
      show(fitted);
      return undefined;
    },
    [show],
  );
  /** Replaces the document (the YAML tab, an import): one undo step. */
  const replace = useCallback(
    (text: string): string | undefined => {
      try {
        const parsed = parseFlow(text);
        setBase(parsed.doc);
        setHist((h) => push(h, parsed.flow));
        show(parsed.flow);
        return undefined;
      } catch (e) {
        return (e as Error).message;
      }
    },
    [show],
  );
  const travel = useCallback(
    (back: boolean) => {
      setHist((h) => {
        const n = back ? undo(h) : redo(h);
        show(n.present);
        return n;
      });
    },
    [show],
  );
  const drawn = useRef(positions);
  drawn.current = positions;
  /**
   * A node dragged: drawn where it is; once dropped (`done`), saved in the layout. Moves of
   * one `group` within a second (the keyboard's nudges) are one undo step.
   */
  const move = useCallback(
    (id: string, x: number, y: number, done: boolean, group?: string) => {
      const moved = new Map(drawn.current).set(id, { x, y });
      drawn.current = moved;
      setPositions(moved);
      if (done) edit(withLayout(flow, moved), group);
    },
    [flow, edit],
  );
  /** Moves a node by (dx, dy) from where it is drawn (Shift+arrows). */
  const nudge = useCallback(
    (id: string, dx: number, dy: number) => {
      const at = drawn.current.get(id);
      if (at) move(id, at.x + dx, at.y + dy, true, `move:${id}`);
    },
    [move],
  );
  /** `f` with step `id` saved at (x, y) and every other step where it is drawn. */
  const placeAt = useCallback((f: Flow, id: string, x: number, y: number) => withLayout(f, new Map(drawn.current).set(id, { x, y })), []);
  /** Lays the graph out again: the saved layout goes (one undo step). */
  const relayout = useCallback(() => {
    auto.current = place(flow, new Map(), true);
    if (hasLayout(flow)) edit(withoutLayout(flow));
    else setPositions((p) => display(flow, auto.current, p));
  }, [flow, edit]);
  /** The YAML of now, not of the last deferred render (for save and export). */
  const yamlNow = useCallback(() => flowYaml(flow, base).text, [flow, base]);
  return { flow, base, hist, yaml, yamlNow, positions, edit, replace, travel, move, nudge, placeAt, relayout };
}

/**
 * The server's validation of the document, ~300 ms after it last changed (its YAML is written
 * then, once, not at every edit; `yamlOf` is the builder's `yamlNow`); each problem with its
 * node. The same text is not sent twice.
 */
export function useValidation(api: Api, yamlOf: () => string, flow: Flow) {
  const [diagnostics, setDiagnostics] = useState<Diagnostic[]>([]);
  const [checking, setChecking] = useState(false);
  const [error, setError] = useState<string>();
  const sent = useRef<string>(undefined);
  useEffect(() => {
    const ctrl = new AbortController();
    const t = setTimeout(() => {
      const yaml = yamlOf();
      if (yaml === sent.current) return;
      setChecking(true);
      api.validate(yaml, ctrl.signal).then(
        (v) => {
          sent.current = yaml;
          setDiagnostics(v.diagnostics);
          setError(undefined);
          setChecking(false);
        },
        (e: Error) => {
          if (e.name === 'AbortError') return;
          setError(e.message);
          setChecking(false);
        },
      );
    }, 300);
    return () => {
      clearTimeout(t);
      ctrl.abort();
    };
  }, [api, yamlOf]);
  const problems: Problem[] = useMemo(() => diagnostics.map((d) => ({ d, step: locate(flow, d.path).step })), [diagnostics, flow]);
  return { problems, checking, error };
}

/** Problems of one step (or of the document), by field path. */
export function fieldProblems(problems: Problem[], flow: Flow, step?: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const p of problems) {
    if (p.d.level !== 'error' && p.d.level !== 'warning') continue;
    const at = locate(flow, p.d.path);
    if (at.step !== step) continue;
    let field = step ? at.field : p.d.path.split(/[.[]/)[0];
    // "agent step `a` needs a `prompt`" is about the step, and names the field to fill.
    const missing = /needs an? `([a-z_.]+)`/.exec(p.d.message);
    if (step && field === '' && missing) field = missing[1];
    // The document's agents are forms of their own: their problems keep the whole path
    // (`agents.writer.model`), so each lands on its field.
    if (!step && field === 'agents') field = p.d.path;
    const key = DOC_KEYS.has(field) || field.startsWith('agents.') || step ? field : '';
    out.set(key, [...(out.get(key) ?? []), p.d.message]);
  }
  return out;
}
const DOC_KEYS = new Set(['name', 'description', 'inputs', 'agents', 'state', 'outputs', 'budget']);

/** Steps in document order, for the arrow keys. */
export function order(f: Flow): { id: string; parent?: string; first?: string }[] {
  return walk(f.steps).map(({ step, parent }) => ({ id: step.id, parent: parent?.id, first: step.children?.[0]?.id }));
}

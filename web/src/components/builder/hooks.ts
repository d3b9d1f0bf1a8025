// The builder's state: the model with its undo history, the YAML Document it was read from
// (so comments survive), node positions, and the server's validation of the current YAML.
import { useCallback, useDeferredValue, useEffect, useMemo, useState } from 'react';
import type { Document } from 'yaml';
import type { Api } from '../../api/client';
import type { Diagnostic } from '../../api/types';
import { flowYaml, parseFlow, walk, type Flow } from '../../lib/flow';
import { graphOf, locate } from '../../lib/flowGraph';
import { push, redo, start, undo, type History } from '../../lib/history';
import { layout } from '../../lib/layout';
import type { Problem } from './YamlTab';

export type Pos = Map<string, { x: number; y: number }>;

/** Positions for every node: kept where known, laid out where not (all of them with `fresh`). */
export function place(f: Flow, prev: Pos, fresh = false): Pos {
  const g = graphOf(f);
  const missing = fresh || g.nodes.some((n) => !prev.has(n.id));
  if (!missing) return prev;
  const auto = missing ? new Map(layout(g.nodes, g.edges).map((p) => [p.id, { x: p.x, y: p.y }])) : new Map();
  // Positions of steps no longer there are kept: an undo brings a step back where it was.
  const out: Pos = fresh ? new Map() : new Map(prev);
  for (const n of g.nodes) {
    const at = (!fresh && prev.get(n.id)) || auto.get(n.id);
    if (at) out.set(n.id, at);
  }
  return out;
}

export function useFlow(initial: { flow: Flow; doc?: Document }) {
  const [hist, setHist] = useState<History<Flow>>(() => start(initial.flow));
  const [base, setBase] = useState<Document | undefined>(initial.doc);
  const [positions, setPositions] = useState<Pos>(() => place(initial.flow, new Map()));
  const flow = hist.present;
  const deferred = useDeferredValue(flow);
  const yaml = useMemo(() => flowYaml(deferred, base).text, [deferred, base]);

  const edit = useCallback((next: Flow | string, group?: string): string | undefined => {
    if (typeof next === 'string') return next;
    setHist((h) => push(h, next, group));
    setPositions((p) => place(next, p));
    return undefined;
  }, []);
  /** Replaces the document (the YAML tab, an import): one undo step. */
  const replace = useCallback((text: string): string | undefined => {
    try {
      const parsed = parseFlow(text);
      setBase(parsed.doc);
      setHist((h) => push(h, parsed.flow));
      setPositions((p) => place(parsed.flow, p));
      return undefined;
    } catch (e) {
      return (e as Error).message;
    }
  }, []);
  const travel = useCallback((back: boolean) => {
    setHist((h) => {
      const n = back ? undo(h) : redo(h);
      setPositions((p) => place(n.present, p));
      return n;
    });
  }, []);
  const move = useCallback((id: string, x: number, y: number) => {
    setPositions((p) => new Map(p).set(id, { x, y }));
  }, []);
  const relayout = useCallback(() => setPositions(place(flow, new Map(), true)), [flow]);
  /** The YAML of now, not of the last deferred render (for save and export). */
  const yamlNow = useCallback(() => flowYaml(flow, base).text, [flow, base]);
  return { flow, hist, yaml, yamlNow, positions, edit, replace, travel, move, relayout };
}

/** The server's validation of `yaml`, ~300 ms after it last changed; each problem with its node. */
export function useValidation(api: Api, yaml: string, flow: Flow) {
  const [diagnostics, setDiagnostics] = useState<Diagnostic[]>([]);
  const [checking, setChecking] = useState(false);
  const [error, setError] = useState<string>();
  useEffect(() => {
    const ctrl = new AbortController();
    setChecking(true);
    const t = setTimeout(() => {
      api.validate(yaml, ctrl.signal).then(
        (v) => {
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
  }, [api, yaml]);
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
    const key = DOC_KEYS.has(field) || step ? field : '';
    out.set(key, [...(out.get(key) ?? []), p.d.message]);
  }
  return out;
}
const DOC_KEYS = new Set(['name', 'description', 'inputs', 'agents', 'state', 'outputs', 'budget']);

/** Steps in document order, for the arrow keys. */
export function order(f: Flow): { id: string; parent?: string; first?: string }[] {
  return walk(f.steps).map(({ step, parent }) => ({ id: step.id, parent: parent?.id, first: step.children?.[0]?.id }));
}

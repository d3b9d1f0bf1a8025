// The builder's toolbar (undo/redo, layout, import/export, save, run, help), the export
// download, and its keyboard shortcuts (listed by the "?" help).
import { useEffect, useRef } from 'react';
import type { Flow } from '../../lib/flow';
import { order } from './hooks';

export interface ToolbarProps {
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

export function Toolbar(p: ToolbarProps) {
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

export function download(name: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type: 'application/yaml' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export interface Keys {
  save(): unknown;
  remove(): void;
  select(id?: string): void;
  focusOn(id: string): void;
  travel(back: boolean): void;
  relayout(): void;
  /** Moves the selected step by (dx, dy). */
  nudge(id: string, dx: number, dy: number): void;
  help(): void;
  flow: Flow;
  selected?: string;
  readOnly: boolean;
  tab: string;
}

/** Shift+arrow moves the selected step this far (canvas pixels). */
const STEP = 20;
const NUDGE: Record<string, [number, number]> = { ArrowLeft: [-STEP, 0], ArrowRight: [STEP, 0], ArrowUp: [0, -STEP], ArrowDown: [0, STEP] };

/** The builder's keyboard shortcuts (listed by the "?" help); text fields keep their own keys. */
export function useShortcuts(k: Keys) {
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
      else if (e.key.startsWith('Arrow') && e.shiftKey) {
        if (!c.selected || c.readOnly) return;
        e.preventDefault();
        const d = NUDGE[e.key] ?? [0, 0];
        c.nudge(c.selected, d[0], d[1]);
      } else if (e.key.startsWith('Arrow')) {
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

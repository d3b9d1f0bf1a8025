// A list of items of different heights, drawn only where it is in view of the window (the page
// scrolls as a whole): the items within `overscan` pixels of the viewport are rendered, the
// others stand as padding of their estimated or measured height. Each drawn item is measured
// (ResizeObserver), so the padding converges on the real heights as the user scrolls.
import { useCallback, useEffect, useMemo, useRef, useState, type ReactNode } from 'react';

export interface WindowListProps<T> {
  items: T[];
  keyOf(item: T): string;
  render(item: T, index: number): ReactNode;
  /** The height assumed for an item not measured yet. */
  estimate?: number;
  /** Pixels drawn above and below the viewport. */
  overscan?: number;
  className?: string;
  label?: string;
}

/** The first and last index (exclusive) of the items overlapping [top, bottom], and the padding. */
export function windowOf(heights: number[], top: number, bottom: number): { from: number; to: number; before: number; after: number } {
  // A view past the end (the estimates were too high, a scroll jumped): its last items.
  const total = heights.reduce((a, b) => a + b, 0);
  if (top >= total && total > 0) [top, bottom] = [total - (bottom - top), total];
  let y = 0;
  let from = heights.length;
  let before = 0;
  for (let i = 0; i < heights.length; i++) {
    if (y + heights[i] > top) {
      from = i;
      before = y;
      break;
    }
    y += heights[i];
  }
  let to = from;
  y = before;
  while (to < heights.length && y < bottom) y += heights[to++];
  let after = 0;
  for (let i = to; i < heights.length; i++) after += heights[i];
  return { from, to, before, after };
}

export function WindowList<T>({ items, keyOf, render, estimate = 220, overscan = 1200, className, label }: WindowListProps<T>) {
  const listRef = useRef<HTMLOListElement>(null);
  const measured = useRef(new Map<string, number>());
  const [version, setVersion] = useState(0);
  const [view, setView] = useState({ top: 0, bottom: typeof window === 'undefined' ? 1000 : window.innerHeight });

  // The viewport relative to the list's top, read on scroll and resize (once per frame).
  const readView = useCallback(() => {
    const el = listRef.current;
    if (!el) return;
    const top = -el.getBoundingClientRect().top;
    setView((v) => (Math.abs(v.top - top) < 50 && v.bottom - v.top === window.innerHeight ? v : { top, bottom: top + window.innerHeight }));
  }, []);
  useEffect(() => {
    let frame = 0;
    const on = () => {
      if (!frame)
        frame = requestAnimationFrame(() => {
          frame = 0;
          readView();
        });
    };
    readView();
    window.addEventListener('scroll', on, { passive: true });
    window.addEventListener('resize', on);
    return () => {
      cancelAnimationFrame(frame);
      window.removeEventListener('scroll', on);
      window.removeEventListener('resize', on);
    };
  }, [readView]);

  // Heights of the drawn items, as they are laid out (and whenever they change: "show all").
  const observer = useMemo(() => {
    if (typeof ResizeObserver === 'undefined') return null;
    return new ResizeObserver((entries) => {
      let changed = false;
      for (const e of entries) {
        const key = (e.target as HTMLElement).dataset.key;
        const h = (e.target as HTMLElement).offsetHeight;
        if (key && h > 0 && measured.current.get(key) !== h) {
          measured.current.set(key, h);
          changed = true;
        }
      }
      if (changed) setVersion((v) => v + 1);
    });
  }, []);
  useEffect(() => () => observer?.disconnect(), [observer]);
  const itemRef = useCallback(
    (el: HTMLLIElement | null) => {
      if (!el || !observer) return;
      observer.observe(el);
      return () => observer.unobserve(el);
    },
    [observer],
  );

  const heights = useMemo(() => items.map((it) => measured.current.get(keyOf(it)) ?? estimate), [items, keyOf, estimate, version]); // eslint-disable-line react-hooks/exhaustive-deps
  const w = windowOf(heights, view.top - overscan, view.bottom + overscan);
  const shown = items.slice(w.from, w.to);
  return (
    <ol ref={listRef} className={className} aria-label={label} style={{ paddingTop: w.before, paddingBottom: w.after }} data-drawn={shown.length}>
      {shown.map((it, i) => {
        const index = w.from + i;
        return (
          <li key={keyOf(it)} ref={itemRef} data-key={keyOf(it)} aria-setsize={items.length} aria-posinset={index + 1} className="wl-item">
            {render(it, index)}
          </li>
        );
      })}
    </ol>
  );
}

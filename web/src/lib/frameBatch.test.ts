import { describe, expect, it } from 'vitest';
import { FrameBatcher, type BatchDeps } from './frameBatch';

/** A clock, frames and timers driven by the test. */
function fakeDeps() {
  let now = 0;
  let id = 0;
  const frames = new Map<number, () => void>();
  const timers: { at: number; fn: () => void }[] = [];
  const deps: BatchDeps = {
    now: () => now,
    frame: (fn) => (frames.set(++id, fn), id),
    cancelFrame: (i) => void frames.delete(i),
    setTimer: (fn, ms) => {
      const t = { at: now + ms, fn };
      timers.push(t);
      return t;
    },
    clearTimer: (t) => void timers.splice(timers.indexOf(t as (typeof timers)[number]), 1),
  };
  /** Advances the clock by `ms` (firing due timers), then runs one frame. */
  const tick = (ms: number) => {
    now += ms;
    for (const t of timers.filter((x) => x.at <= now)) {
      timers.splice(timers.indexOf(t), 1);
      t.fn();
    }
    const due = [...frames.values()];
    frames.clear();
    for (const f of due) f();
  };
  return { deps, tick, work: (ms: number) => (now += ms), pendingFrames: () => frames.size };
}

describe('FrameBatcher', () => {
  it('applies every event once, in order, in one batch per frame', () => {
    const f = fakeDeps();
    const got: number[][] = [];
    const b = new FrameBatcher<number>((x) => got.push(x), {}, f.deps);
    for (let i = 0; i < 100; i++) b.push(i);
    expect(got).toEqual([]);
    f.tick(16);
    expect(got).toEqual([Array.from({ length: 100 }, (_, i) => i)]);
    b.push(100);
    f.tick(16); // the frame that measures the first batch
    f.tick(16);
    f.tick(16);
    f.tick(16);
    expect(got.flat()).toEqual(Array.from({ length: 101 }, (_, i) => i));
  });

  it('waits longer between batches when applying one costs more, and drops nothing', () => {
    const f = fakeDeps();
    const batches: number[] = [];
    let cost = 5;
    const b = new FrameBatcher<number>(
      (x) => {
        batches.push(x.length);
        f.work(cost);
      },
      { factor: 4, maxGapMs: 1000 },
      f.deps,
    );
    let n = 0;
    // 500 events a second (8 per 16 ms frame) for 10 s; an update's cost grows to 100 ms.
    for (let t = 0; t < 10_000; t += 16) {
      for (let i = 0; i < 8; i++) b.push(n++);
      cost = 5 + (95 * t) / 10_000;
      f.tick(16);
    }
    for (let i = 0; i < 200; i++) f.tick(16);
    expect(batches.reduce((a, c) => a + c, 0)).toBe(n);
    // Early: about one batch every 4 frames (16 + 5 ms measured, times 4); late: far fewer.
    expect(batches.length).toBeLessThan(200);
    expect(b.lastCost).toBeGreaterThan(90);
  });

  it('stops: nothing more is applied', () => {
    const f = fakeDeps();
    const got: number[] = [];
    const b = new FrameBatcher<number>((x) => got.push(...x), {}, f.deps);
    b.push(1);
    b.stop();
    b.push(2);
    f.tick(16);
    expect(got).toEqual([]);
    expect(f.pendingFrames()).toBe(0);
  });
});

// Live events applied in batches, at most once per animation frame, and no more often than the
// page can afford: after each batch the time until the next frame (the page's render of the
// batch included) is measured, and the next batch waits `factor` times that. A small run is
// updated some 15 times a second; a run whose page has grown slow to update (tens of thousands
// of events in its log and timeline) is updated less often, instead of dropping frames: the
// page spends at most about 1/factor of its time applying events. Nothing is ever dropped.

export interface BatchDeps {
  now(): number;
  frame(fn: () => void): number;
  cancelFrame(id: number): void;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(t: unknown): void;
}

const browserDeps: BatchDeps = {
  now: () => performance.now(),
  frame: (fn) => requestAnimationFrame(fn),
  cancelFrame: (id) => cancelAnimationFrame(id),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
};

export class FrameBatcher<T> {
  private pending: T[] = [];
  private frameId = 0;
  private measureId = 0;
  private timer: unknown = undefined;
  private nextAt = 0;
  private stopped = false;
  /** The last batch's cost, from its application to the next frame (ms). */
  lastCost = 0;

  constructor(
    private readonly apply: (batch: T[]) => void,
    private readonly opts: { factor?: number; maxGapMs?: number } = {},
    private readonly deps: BatchDeps = browserDeps,
  ) {}

  push(item: T): void {
    if (this.stopped) return;
    this.pending.push(item);
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    this.deps.cancelFrame(this.frameId);
    this.deps.cancelFrame(this.measureId);
    if (this.timer !== undefined) this.deps.clearTimer(this.timer);
    this.pending = [];
  }

  private schedule(): void {
    if (this.frameId || this.measureId || this.timer !== undefined || !this.pending.length) return;
    const wait = this.nextAt - this.deps.now();
    if (wait > 0) {
      this.timer = this.deps.setTimer(() => {
        this.timer = undefined;
        this.frameId = this.deps.frame(this.flush);
      }, wait);
    } else this.frameId = this.deps.frame(this.flush);
  }

  private readonly flush = (): void => {
    this.frameId = 0;
    if (this.stopped) return;
    const batch = this.pending;
    this.pending = [];
    const t0 = this.deps.now();
    this.apply(batch);
    this.measureId = this.deps.frame(() => {
      this.measureId = 0;
      this.lastCost = this.deps.now() - t0;
      this.nextAt = t0 + Math.min(this.opts.maxGapMs ?? 1000, this.lastCost * (this.opts.factor ?? 4));
      this.schedule();
    });
  };
}

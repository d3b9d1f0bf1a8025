// The run viewer under a busy run: does it keep up with 500 events/s for a minute without
// dropping below 30 frames per second? (`make web-fps-bench`, part of `make bench`.)
//
//   node bench/viewer-fps.mjs [--baton PATH] [--seconds 60] [--rate 500]   (from web/)
//
// It starts a real `baton serve` (a temporary database, loopback, like e2e/run.mjs; $BATON_WEB_DIR
// is passed on, so a fresh `npm run build` is what is measured), signs in in Debian's Chromium
// (/usr/bin/chromium, driven by playwright-core), starts a run whose loop emits about `rate`
// events a second for `seconds` seconds, and opens its run viewer at once: the page follows the
// run through the server's SSE stream, as a user's would. Each iteration of the loop is a
// `state.set` step (started, state_set, succeeded), a `sleep` step that paces it (started,
// succeeded) and an `if` step (started, succeeded): 7 events; the sleep is calibrated on a
// short run first (watched in the viewer too), so the rate is near the one asked for on this
// machine.
//
// Measured in the page: every frame's time (requestAnimationFrame, from before the page's own
// scripts run) and long tasks (PerformanceObserver `longtask`, over 50 ms), from the first live
// event to the run's end. Printed: the events and their rate, the worst 1-second window's fps
// (sliding, frame to frame), the p50 and p5 of the fps of each second, the longest frame, the
// long tasks, and the dropped events: the run's events (the server's last seq) less those the
// viewer's event log holds once the run has ended. Exit status 1 when the worst window is under
// 30 fps or an event was dropped, with `--check`.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');
const root = join(web, '..');
const { values: opt } = parseArgs({
  options: {
    baton: { type: 'string', default: process.env.BATON_BIN ?? join(root, 'target', 'release', 'baton') },
    seconds: { type: 'string', default: '60' },
    rate: { type: 'string', default: '500' },
    check: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const SECONDS = Number(opt.seconds);
const RATE = Number(opt.rate);
const EVENTS_PER_ITERATION = 7;
const CHROMIUM = '/usr/bin/chromium';
const bin = resolve(opt.baton);
if (!existsSync(CHROMIUM)) fail(`no browser at ${CHROMIUM} (\`make web-browser\` installs Debian's chromium)`);
if (!existsSync(bin)) fail(`no baton binary at ${bin} (\`cargo build --release -p baton-cli\`, or --baton PATH)`);
if (!(SECONDS > 0) || !(RATE > 0)) fail('--seconds and --rate must be positive numbers');
const { chromium } = await import('playwright-core');

function fail(msg) {
  console.error(`viewer-fps: ${msg}`);
  process.exit(2);
}

/** The loop: `iterations` rounds of state.set, sleep `pace`, if. */
const workflow = (iterations, pace) => `version: 1
name: fps-bench
description: a loop emitting about ${RATE} events a second, for the run viewer's fps figure
state: { n: 0 }
contracts: { n: { type: number, reduce: sum } }
steps:
  - { id: tick, tool: state.set, with: { n: 1 }, max_visits: ${iterations + 1} }
  - { id: pace, tool: sleep, with: { duration: "${pace}ms" } }
  - id: again
    if: "state.n < ${iterations}"
    then: tick
    else: end
`;

// The server, as e2e/run.mjs starts it.
const dir = mkdtempSync(join(tmpdir(), 'baton-fps-'));
const child = spawn(bin, ['serve', '--addr', '127.0.0.1:0', '--rate-limit', 'off', '--db', join(dir, 'baton.db')], {
  cwd: join(root, 'examples'),
  env: process.env,
  stdio: ['ignore', 'pipe', 'pipe'],
});
const stop = () => {
  child.kill();
  rmSync(dir, { recursive: true, force: true });
};
const key = await new Promise((res, rej) => {
  createInterface({ input: child.stdout }).once('line', (l) => res(l.trim()));
  child.once('exit', (c) => rej(new Error(`baton serve exited (${c}) before printing a key`)));
});
const url = await new Promise((res) => {
  createInterface({ input: child.stderr }).on('line', (l) => {
    const m = /baton serving on (http:\/\/\S+)/.exec(l);
    if (m) res(m[1]);
  });
});
const api = async (method, path, body) => {
  const resp = await fetch(`${url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await resp.json();
  if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${JSON.stringify(json)}`);
  return json;
};
const finish = async (id, ms) => {
  const deadline = Date.now() + ms;
  for (;;) {
    const d = await api('GET', `/runs/${id}`);
    if (['succeeded', 'failed', 'cancelled'].includes(d.run.status)) return d;
    if (Date.now() > deadline) throw new Error(`run ${id} still ${d.run.status} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
};

try {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(String(e)));
  // Frames and long tasks from the start of every document.
  await page.addInitScript(() => {
    const w = window;
    w.__frames = [];
    w.__long = [];
    const tick = (t) => {
      w.__frames.push(t);
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    try {
      new PerformanceObserver((l) => {
        for (const e of l.getEntries()) w.__long.push([e.startTime, e.duration]);
      }).observe({ type: 'longtask', buffered: true });
    } catch {
      /* no long task timing: frames only */
    }
  });
  await page.goto(url);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('who').waitFor();

  // Calibration: 3 s at the rate asked for, watched in the viewer as the measured run will be
  // (the page's work slows the server on a small machine), then the sleep that makes one
  // iteration last 7 / rate seconds here.
  const period = (1000 * EVENTS_PER_ITERATION) / RATE;
  const calIterations = Math.round((3 * RATE) / EVENTS_PER_ITERATION);
  // Twice: the overhead of an iteration is not quite the same at every pace.
  let pace = Math.max(1, Math.round(period));
  for (let round = 0; round < 2; round++) {
    const cal = await api('POST', '/runs', { source: workflow(calIterations, pace) });
    await page.goto(`${url}/runs/${cal.id}`);
    const cd = await finish(cal.id, 60_000);
    const took = (cd.run.updated_at_ms - cd.run.created_at_ms) / calIterations;
    pace = Math.max(1, Math.round(pace + period - took));
  }
  const iterations = Math.round((SECONDS * RATE) / EVENTS_PER_ITERATION);

  // Chromium's own performance timeline (what DevTools' Performance panel records): the
  // frames the compositor drew (`DrawFrame`) and those it dropped, for the same window.
  await browser.startTracing(page, { categories: ['disabled-by-default-devtools.timeline.frame', 'devtools.timeline.frame'] });
  const run = await api('POST', '/runs', { source: workflow(iterations, pace) });
  await page.goto(`${url}/runs/${run.id}`);
  await page.getByTestId('graph').waitFor({ timeout: 30_000 });
  // The window measured: from the page's first frame with a live event to the run's end.
  const startedAt = await page.evaluate(() => performance.now());
  const traceFrom = Date.now();
  const detail = await finish(run.id, (SECONDS + 120) * 1000);
  const endedAt = await page.evaluate(() => performance.now());
  const traceSpan = Date.now() - traceFrom;
  const trace = JSON.parse((await browser.stopTracing()).toString('utf8'));
  const total = detail.run.last_seq;
  // The viewer holds every event once it has drawn the end (a dropped event never comes).
  await page
    .getByTestId('log-count')
    .filter({ hasText: new RegExp(` of ${total}$`) })
    .waitFor({ timeout: 30_000 })
    .catch(() => {});
  const held = Number((/ of (\d+)$/.exec((await page.getByTestId('log-count').textContent()) ?? '') ?? [])[1] ?? 0);
  const { frames, long } = await page.evaluate(([a, b]) => ({ frames: window.__frames.filter((t) => t >= a && t <= b), long: window.__long.filter(([t]) => t >= a && t <= b) }), [startedAt, endedAt]);
  const version = browser.version();
  await browser.close();

  const timeline = timelineFrames(trace, traceSpan);
  const span = (endedAt - startedAt) / 1000;
  const runSeconds = (detail.run.updated_at_ms - detail.run.created_at_ms) / 1000;
  // Worst sliding 1-second window, frame to frame.
  let worst = Infinity;
  for (let i = 0, j = 0; i < frames.length && frames[i] + 1000 <= frames.at(-1); i++) {
    while (j < frames.length && frames[j] < frames[i] + 1000) j++;
    worst = Math.min(worst, j - i);
  }
  // Fps of each whole second of the window.
  const perSecond = [];
  for (let s = startedAt; s + 1000 <= endedAt; s += 1000) perSecond.push(frames.filter((t) => t >= s && t < s + 1000).length);
  perSecond.sort((x, y) => x - y);
  const pct = (p) => perSecond[Math.min(perSecond.length - 1, Math.floor((p / 100) * perSecond.length))] ?? 0;
  let longest = 0;
  for (let i = 1; i < frames.length; i++) longest = Math.max(longest, frames[i] - frames[i - 1]);
  const result = {
    events: total,
    run_seconds: Number(runSeconds.toFixed(1)),
    events_per_s: Math.round(total / runSeconds),
    measured_seconds: Number(span.toFixed(1)),
    frames: frames.length,
    worst_1s_fps: worst === Infinity ? 0 : worst,
    p50_fps: pct(50),
    p5_fps: pct(5),
    longest_frame_ms: Math.round(longest),
    long_tasks: long.length,
    long_task_ms: Math.round(long.reduce((n, [, d]) => n + d, 0)),
    dropped_events: total - held,
    timeline_frames: timeline.frames,
    timeline_worst_1s_fps: timeline.worst,
    timeline_p50_fps: timeline.p50,
    timeline_dropped_frames: timeline.dropped,
    console_errors: errors.length,
    pace_ms: pace,
    chromium: version,
  };
  if (opt.json) console.log(JSON.stringify(result));
  console.log(
    `viewer-fps: ${result.events} events in ${result.run_seconds} s (${result.events_per_s}/s, pace ${pace} ms); over ${result.measured_seconds} s: ` +
      `worst 1-second window ${result.worst_1s_fps} fps, p50 ${result.p50_fps} fps, p5 ${result.p5_fps} fps, longest frame ${result.longest_frame_ms} ms, ` +
      `${result.long_tasks} long tasks (${result.long_task_ms} ms), dropped events ${result.dropped_events}${errors.length ? `; console errors: ${errors.join(' | ')}` : ''}`,
  );
  console.log(
    `viewer-fps: Chromium's performance timeline: ${result.timeline_frames} frames drawn, worst 1-second window ${result.timeline_worst_1s_fps} fps, p50 ${result.timeline_p50_fps} fps, ${result.timeline_dropped_frames} frames dropped`,
  );
  stop();
  if (opt.check && (result.worst_1s_fps < 30 || result.timeline_worst_1s_fps < 30 || result.dropped_events !== 0 || errors.length)) process.exit(1);
} catch (e) {
  stop();
  fail(e.stack ?? String(e));
}

/**
 * Frames in a Chromium trace: the renderer's compositor's `DrawFrame` events (the process that
 * drew the most, i.e. the page's), over the last `spanMs` of the trace (the measured run);
 * the worst sliding 1-second window, the p50 of whole seconds, and `DroppedFrame` events.
 */
function timelineFrames(trace, spanMs) {
  const events = Array.isArray(trace) ? trace : trace.traceEvents ?? [];
  const byPid = new Map();
  let dropped = 0;
  for (const e of events) {
    if (e.name === 'DrawFrame' && (e.ph === 'I' || e.ph === 'i' || e.ph === 'X' || e.ph === 'b' || e.ph === 'n')) {
      if (!byPid.has(e.pid)) byPid.set(e.pid, []);
      byPid.get(e.pid).push(e.ts / 1000);
    }
    if (e.name === 'DroppedFrame') dropped++;
  }
  const all = [...byPid.values()].sort((a, b) => b.length - a.length)[0] ?? [];
  all.sort((a, b) => a - b);
  const end = all.at(-1) ?? 0;
  const ts = all.filter((t) => t >= end - spanMs);
  let worst = Infinity;
  for (let i = 0, j = 0; i < ts.length && ts[i] + 1000 <= ts.at(-1); i++) {
    while (j < ts.length && ts[j] < ts[i] + 1000) j++;
    worst = Math.min(worst, j - i);
  }
  const seconds = [];
  for (let s = ts[0]; s + 1000 <= end; s += 1000) seconds.push(ts.filter((t) => t >= s && t < s + 1000).length);
  seconds.sort((a, b) => a - b);
  return { frames: ts.length, worst: worst === Infinity ? 0 : worst, p50: seconds[Math.floor(seconds.length / 2)] ?? 0, dropped };
}

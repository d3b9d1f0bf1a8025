// End-to-end tests of the web app in a real browser: Debian's Chromium driven by
// playwright-core (never a downloaded browser) against a real `baton serve` started here on a
// free loopback port, with a temporary database and the scripted models of examples/.
//
//   node e2e/run.mjs            (from web/; `make test` runs it through crates/cli/tests/web.rs)
//
// $BATON_BIN: the binary (default: ../target/debug/baton, which must embed web/dist: build the
// app first, then `cargo build -p baton-cli`). Without /usr/bin/chromium the tests are skipped
// loudly; BATON_REQUIRE_BROWSER=1 (set by `make test`) makes that a failure. Each test saves
// screenshots under target/screenshots/.
// The builder's tests are in e2e/builder.mjs.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { a11yTests } from './a11y.mjs';
import { builderTests } from './builder.mjs';
import { dashboardTests } from './dashboard.mjs';
import { debuggerTests } from './debugger.mjs';
import { issue17Tests } from './issue17.mjs';
import { registryTests } from './registry.mjs';
import { runpanelTests } from './runpanel.mjs';
import { timetravelTests } from './timetravel.mjs';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');
const root = join(web, '..');
const target = process.env.CARGO_TARGET_DIR ?? join(root, 'target');
const bin = process.env.BATON_BIN ?? join(target, 'debug', 'baton');
const shots = join(target, 'screenshots');
const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

if (!existsSync(CHROMIUM)) {
  const msg = `web e2e: SKIPPED, no browser at ${CHROMIUM} (install it with \`apt-get install -y chromium\`, or run \`make test\`)`;
  if (process.env.BATON_REQUIRE_BROWSER === '1') {
    console.error(`${msg}; BATON_REQUIRE_BROWSER=1 makes this a failure`);
    process.exit(1);
  }
  console.error(msg);
  process.exit(0);
}
if (!existsSync(bin)) {
  console.error(`web e2e: no baton binary at ${bin}: run \`cargo build -p baton-cli\` or set BATON_BIN`);
  process.exit(1);
}
const { chromium } = await import('playwright-core');

/** `baton serve` on a free port in examples/, with the scripted models; resolves once it listens. */
async function startServer() {
  const dir = mkdtempSync(join(tmpdir(), 'baton-web-e2e-'));
  // Loopback webhooks allowed: the registry tests subscribe a receiver of their own.
  const child = spawn(bin, ['serve', '--addr', '127.0.0.1:0', '--rate-limit', 'off', '--webhook-allow', '127.0.0.0/8', '--db', join(dir, 'baton.db')], {
    cwd: join(root, 'examples'),
    env: { ...process.env, BATON_MODEL: 'scripted/hello' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const key = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', (l) => resolve(l.trim()));
    child.once('exit', (c) => reject(new Error(`baton serve exited (${c}) before printing a key`)));
  });
  const url = await new Promise((resolve) => {
    createInterface({ input: child.stderr }).on('line', (l) => {
      const m = /baton serving on (http:\/\/\S+)/.exec(l);
      if (m) resolve(m[1]);
    });
  });
  return { child, key, url, stop: () => (child.kill(), rmSync(dir, { recursive: true, force: true })) };
}

const server = await startServer();
const api = async (method, path, body) => {
  const resp = await fetch(`${server.url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${server.key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await resp.json();
  if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${JSON.stringify(json)}`);
  return json;
};
/** A run's detail once it has ended (or after 10 s). */
async function runEnded(id) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const detail = await api('GET', `/runs/${id}`);
    if (['succeeded', 'failed', 'cancelled'].includes(detail.run.status) || Date.now() > deadline) return detail;
    await new Promise((r) => setTimeout(r, 100));
  }
}
const index = await (await fetch(server.url)).text();
if (!index.includes('id="root"')) {
  server.stop();
  console.error('web e2e: this baton binary was built without the web app: run `make web`, then `cargo build -p baton-cli`');
  process.exit(1);
}

mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
const results = [];
let failed = 0;

/** One test: a fresh browser context (so a fresh sessionStorage); no console error allowed. */
async function test(name, fn, { scheme = 'light', allowErrors = false, viewport = { width: 1366, height: 900 } } = {}) {
  // E2E_ONLY=<substring>: only the tests whose name contains it (iterating on one file).
  if (process.env.E2E_ONLY && !name.includes(process.env.E2E_ONLY)) return;
  const context = await browser.newContext({ viewport, colorScheme: scheme });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const errors = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(String(e)));
  const shot = (what) => page.screenshot({ path: join(shots, `web-${name}-${what}.png`), fullPage: true });
  const t = Date.now();
  try {
    await fn(page, shot);
    if (errors.length && !allowErrors) throw new Error(`console errors: ${errors.join(' | ')}`);
    results.push(`ok   ${name} (${Date.now() - t} ms)`);
  } catch (e) {
    failed++;
    await shot('failure').catch(() => {});
    results.push(`FAIL ${name}: ${e.stack ?? e}`);
  } finally {
    await context.close();
  }
}

async function signIn(page, key = server.key) {
  await page.goto(server.url);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('who').waitFor();
}

const expectText = async (locator, text) => {
  await locator.filter({ hasText: text }).first().waitFor();
};

await test('sign-in', async (page, shot) => {
  await page.goto(server.url);
  await shot('form');
  await page.getByLabel('API key').fill('bk_000000000000_nope');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expectText(page.getByRole('alert'), 'That key was not accepted');
  await signIn(page);
  await expectText(page.getByTestId('who'), 'default · admin');
  // The key is kept for this tab only, and a reload keeps the session.
  if ((await page.evaluate(() => localStorage.length)) !== 0) throw new Error('the key went to localStorage');
  await page.reload();
  await page.getByTestId('who').waitFor();
  await page.getByTestId('empty-dashboard').waitFor();
  await shot('empty-dashboard');
}, { allowErrors: true /* the refused key's 401 is logged by the browser */ });

const source = readFileSync(join(root, 'examples', 'human-approval.yaml'), 'utf8');
const started = await api('POST', '/runs', { source });
const runId = started.id;

await test('dashboard-and-run-viewer', async (page, shot) => {
  await signIn(page);
  const row = page.getByTestId('in-flight').getByRole('row').filter({ hasText: 'human-approval' });
  await expectText(row, 'waiting');
  await page.getByTestId('approvals-badge').filter({ hasText: '1' }).waitFor();
  await shot('dashboard');
  await row.getByRole('link').click();
  await page.waitForURL(`**/runs/${runId}`);
  await page.locator('[data-testid="node-draft"][data-status="done"]').waitFor();
  await page.locator('[data-testid="node-approve"][data-status="waiting"]').waitFor();
  await page.locator('[data-testid="node-publish"][data-status="pending"]').waitFor();
  // Keyboard: focus the node and open its details with Enter.
  await page.getByTestId('node-draft').focus();
  await page.keyboard.press('Enter');
  await expectText(page.getByTestId('node-panel'), 'Version 1.2.0');
  // The agent's prompt as its model saw it.
  await expectText(page.getByTestId('turn'), 'Draft the release note for version 1.2.0.');
  await page.getByLabel('Filter events').fill('human');
  await expectText(page.getByTestId('log-count'), '1 of');
  await shot('run-viewer');
});

await test('approve-from-inbox-while-watching', async (page, shot) => {
  await signIn(page);
  await page.goto(`${server.url}/runs/${runId}`);
  await page.locator('[data-testid="node-approve"][data-status="waiting"]').waitFor();
  // A second tab (signed in on its own: the key lives in one tab's sessionStorage) answers
  // from the inbox; this one follows the run live (no reload).
  const inbox = await page.context().newPage();
  await signIn(inbox);
  await inbox.getByRole('link', { name: /Approvals/ }).click();
  const card = inbox.getByTestId('approval').filter({ hasText: 'human-approval' });
  await expectText(card, 'Publish this release note?');
  await inbox.screenshot({ path: join(shots, 'web-approve-from-inbox-while-watching-inbox.png'), fullPage: true });
  await card.getByLabel('Comment (optional)').fill('ship it');
  await card.getByRole('button', { name: 'Approve' }).click();
  await expectText(inbox.getByRole('status'), 'Approved human-approval › approve');
  await inbox.getByText('Nothing waits for you').waitFor();
  await page.locator('[data-testid="node-approve"][data-status="done"]').waitFor();
  await page.locator('[data-testid="node-publish"][data-status="done"]').waitFor();
  await expectText(page.getByTestId('run-status'), 'succeeded');
  await page.getByTestId('node-publish').click();
  await expectText(page.getByTestId('node-panel'), 'published: Version 1.2.0');
  await shot('done');
  const detail = await runEnded(runId);
  if (detail.run.status !== 'succeeded') throw new Error(`run is ${detail.run.status}`);
});

await test('viewer-role-and-dark', async (page, shot) => {
  const viewer = await api('POST', '/keys', { role: 'viewer', name: 'e2e viewer' });
  const waiting = await api('POST', '/runs', { source });
  await signIn(page, viewer.key);
  await expectText(page.getByTestId('who'), 'viewer');
  await page.goto(`${server.url}/runs/${waiting.id}`);
  await page.locator('[data-testid="node-approve"][data-status="waiting"]').waitFor();
  for (const name of ['Pause', 'Cancel', 'Resume']) {
    if (await page.getByRole('button', { name }).count()) throw new Error(`a viewer sees ${name}`);
  }
  await shot('run-viewer-dark');
  await page.goto(`${server.url}/approvals`);
  await expectText(page.getByTestId('approval'), 'Your key may not answer approvals');
  await shot('inbox-dark');
}, { scheme: 'dark' });

await test('input-from-inbox', async (page, shot) => {
  const form = await api('POST', '/runs', { source: 'version: 1\nname: form\nsteps:\n  - id: who\n    human: { prompt: Who reviews it?, kind: input }\n' });
  await signIn(page);
  await page.getByRole('link', { name: /Approvals/ }).click();
  const card = page.getByTestId('approval').filter({ hasText: 'Who reviews it?' });
  await card.getByLabel('Value (JSON, or plain text)').fill('{"name": "Ada"}');
  await shot('form');
  await card.getByRole('button', { name: 'Send' }).click();
  await expectText(page.getByRole('status'), 'Answered form › who');
  const detail = await runEnded(form.id);
  if (detail.run.status !== 'succeeded') throw new Error(`the input run is ${detail.run.status}`);
  const out = JSON.stringify(detail.steps[0].output);
  if (!out.includes('Ada')) throw new Error(`the step's output is ${out}`);
});

await test('large-run', async (page, shot) => {
  // 200 steps and one output of 50,000 characters: the viewer opens fast, draws only what is
  // in view, and cuts the big output.
  const steps = Array.from({ length: 200 }, (_, i) => `  - { id: s${i + 1}, tool: echo, with: { text: "step ${i + 1}" } }`);
  steps.push(`  - { id: big, tool: echo, with: { text: "${'z'.repeat(50_000)}" } }`);
  const big = await api('POST', '/runs', { source: `version: 1\nname: large\nsteps:\n${steps.join('\n')}\n` });
  await signIn(page);
  const t = Date.now();
  await page.goto(`${server.url}/runs/${big.id}`);
  await page.getByTestId('graph').waitFor();
  await expectText(page.getByTestId('run-status'), 'succeeded');
  const opened = Date.now() - t;
  // Generous: the machine may be shared (the figure is printed below; ~0.3-1 s here).
  if (opened > 10_000) throw new Error(`the viewer took ${opened} ms to show a 201-step run`);
  // React Flow draws every node until it has measured them and set the viewport, then only
  // those in view: wait for that (a loaded machine can take a moment), then count.
  await page
    .waitForFunction(() => document.querySelectorAll('.react-flow__node').length < 201, null, { timeout: 10_000 })
    .catch(() => {});
  const drawn = await page.locator('.react-flow__node').count();
  if (drawn >= 201) throw new Error(`all ${drawn} nodes are rendered, not only those in view`);
  await page.getByLabel('Filter events').fill('big');
  await expectText(page.getByTestId('log-count'), '2 of 405');
  // The big output is cut until asked for.
  await page.getByTestId('graph').waitFor();
  await shot('graph');
  console.log(`large-run: opened in ${opened} ms, ${drawn} of 201 nodes rendered`);
});

await builderTests({ test, signIn, server, api, runEnded, expectText, root });
await dashboardTests({ test, signIn, server, api, runEnded, expectText, root });
await registryTests({ test, signIn, server, api, runEnded, expectText });
await timetravelTests({ test, signIn, server, api, runEnded, expectText });
await runpanelTests({ test, signIn, server, api, runEnded, expectText, root });
await debuggerTests({ test, signIn, server, api, runEnded, expectText });
await a11yTests({ test, signIn, server, runEnded, expectText });
await issue17Tests({ test, signIn, server, expectText, root });

await test('server-unreachable', async (page, shot) => {
  await signIn(page);
  server.child.kill();
  await expectText(page.getByRole('alert'), 'cannot be reached');
  await shot('banner');
}, { allowErrors: true /* the refused connections are logged by the browser */ });

await browser.close();
server.stop();
console.log(results.join('\n'));
console.log(`web e2e: ${results.length - failed} passed, ${failed} failed; screenshots in ${shots}`);
process.exit(failed ? 1 : 0);

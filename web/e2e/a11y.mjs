// Accessibility browser tests (called by e2e/run.mjs, with its server, helpers and browser):
// every page of the app, in light and in dark, checked by axe-core (node_modules/axe-core,
// injected into the page) with no violation of impact `serious` or `critical` allowed and no
// console error; every control of those pages reached with Tab shows a visible focus ring.
// Also: the approvals inbox, open, shows a run reaching a human step without a reload (the
// tenant socket), and a comparison of two 1,000-step runs with big outputs opens without
// freezing, drawing only the steps in view.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SHOTS = join(process.env.CARGO_TARGET_DIR ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'target'), 'screenshots');
const AXE_SOURCE = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');

const WORKFLOW = `version: 1
name: a11y-flow
description: three steps for the accessibility checks
agents:
  writer: { model: scripted/hello, role: writer }
steps:
  - { id: draft, tool: echo, with: { text: "a first draft of the note" } }
  - id: greet
    agent: writer
    prompt: "Say hello to {{ steps.draft.output }}."
  - { id: done, tool: echo, with: { text: "finished" } }
`;
const APPROVAL = `version: 1
name: a11y-approval
steps:
  - { id: draft, tool: echo, with: { text: "a note to approve" } }
  - id: approve
    human: { prompt: "Publish the note?" }
`;
const agentFile = (role) => `name: a11y-agent\nmodel: scripted/hello\nrole: ${role}\ninstructions: |\n  Keep it short.\n  Be kind.\n`;

export async function a11yTests({ test, signIn, server, runEnded, expectText }) {
  // A tenant of its own: its waiting approval and its runs stay out of the other tests' pages.
  const admin = async (method, path, body) => {
    const resp = await fetch(`${server.url}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${server.key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await resp.json();
    if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${JSON.stringify(json)}`);
    return json;
  };
  await admin('POST', '/tenants', { id: 'a11y-e2e' });
  const { key } = await admin('POST', '/keys', { tenant: 'a11y-e2e', role: 'admin', name: 'a11y e2e' });
  const as = async (method, path, body, type = 'application/json') => {
    const resp = await fetch(`${server.url}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': type },
      body: body === undefined ? undefined : type === 'application/json' ? JSON.stringify(body) : body,
    });
    const text = await resp.text();
    if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const ended = async (id, ms = 15_000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const d = await as('GET', `/runs/${id}`);
      if (['succeeded', 'failed', 'cancelled'].includes(d.run.status)) return d;
      if (Date.now() > deadline) throw new Error(`run ${id} is still ${d.run.status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  // What the pages show: a stored workflow, a finished run and a fork of it with an edited
  // output (the comparison), a waiting approval, an agent with two versions, a subscription.
  await as('POST', '/workflows', WORKFLOW, 'application/yaml');
  const finished = await as('POST', '/runs', { workflow: 'a11y-flow' });
  const fd = await ended(finished.id);
  if (fd.run.status !== 'succeeded') throw new Error(`the a11y run is ${fd.run.status}: ${JSON.stringify(fd.run.error ?? fd.steps.map((s) => s.error))}`);
  const fork = await as('POST', `/runs/${finished.id}/fork`, { after: 'draft', set: { 'steps.draft.output': 'a second draft of the note' } });
  await ended(fork.id);
  await as('POST', '/runs', { source: APPROVAL });
  for (const role of ['careful writer', 'bold writer']) await as('POST', '/agents', agentFile(role), 'application/yaml');
  await as('POST', '/webhooks/subscriptions', { url: 'http://127.0.0.1:9/a11y', events: ['approval.escalated'], description: 'a11y checks' });

  const pages = [
    ['sign-in', null, (p) => p.getByLabel('API key').waitFor()],
    ['dashboard', '/', (p) => p.getByTestId('in-flight').waitFor()],
    ['workflows', '/workflows', (p) => p.getByTestId('workflows').waitFor()],
    ['builder', '/builder/a11y-flow', (p) => p.locator('[data-testid="builder"][data-open-ms]').waitFor()],
    ['run-viewer', `/runs/${finished.id}`, (p) => expectText(p.getByTestId('run-status'), 'succeeded')],
    ['approvals', '/approvals', (p) => p.getByTestId('approval').first().waitFor()],
    ['agents', '/agents', (p) => p.getByTestId('agents').waitFor()],
    ['agent', '/agents/a11y-agent', (p) => p.getByTestId('diff').waitFor()],
    ['compare', `/compare/${finished.id}/${fork.id}`, (p) => p.getByTestId('cmp-diffnote').first().waitFor()],
    ['admin-keys', '/admin/keys', (p) => p.getByTestId('keys').waitFor()],
    ['admin-webhooks', '/admin/webhooks', (p) => p.getByTestId('subscription').first().waitFor()],
    ['admin-audit', '/admin/audit', (p) => p.getByTestId('audit-entry').first().waitFor()],
  ];

  /** axe-core's serious and critical violations of the page as it is now. */
  const axe = async (page) => {
    // Evaluated through the DevTools protocol: the server's content security policy (script-src
    // 'self') refuses an added <script> tag, as it should.
    if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(AXE_SOURCE);
    return page.evaluate(async () => {
      const r = await window.axe.run(document, { resultTypes: ['violations'] });
      return r.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => ({ rule: v.id, impact: v.impact, help: v.help, targets: v.nodes.slice(0, 5).map((n) => `${n.target.join(' ')}${n.failureSummary ? ` (${n.failureSummary.replace(/\s+/g, ' ').slice(0, 160)})` : ''}`), count: v.nodes.length }));
    });
  };

  /**
   * Tabs through the page (at most `max` stops): every focused element must show a focus ring
   * (an outline or a box shadow that differs from its look unfocused). Returns the problems.
   */
  const focusRings = async (page, max = 60) => {
    await page.evaluate(() => document.activeElement instanceof HTMLElement && document.activeElement.blur());
    await page.mouse.click(1, 1);
    const problems = [];
    const seen = new Set();
    for (let i = 0; i < max; i++) {
      await page.keyboard.press('Tab');
      const f = await page.evaluate(() => {
        const el = document.activeElement;
        if (!el || el === document.body) return null;
        const s = getComputedStyle(el);
        const ring = (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || (s.boxShadow && s.boxShadow !== 'none');
        const r = el.getBoundingClientRect();
        const name = `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${el.getAttribute('data-testid') ? `[data-testid=${el.getAttribute('data-testid')}]` : ''} "${(el.getAttribute('aria-label') ?? el.textContent ?? '').trim().slice(0, 40)}"`;
        return { name, ring, visible: r.width > 0 || r.height > 0 };
      });
      if (!f) break;
      if (seen.has(f.name)) continue;
      seen.add(f.name);
      if (!f.ring) problems.push(`no focus ring on ${f.name}`);
      if (!f.visible) problems.push(`focus on an invisible element ${f.name}`);
    }
    return { problems, stops: seen.size };
  };

  for (const scheme of ['light', 'dark']) {
    await test(`a11y-pages-${scheme}`, async (page, shot) => {
      const report = [];
      for (const [name, path, ready] of pages) {
        if (path === null) await page.goto(server.url);
        else if (name === 'dashboard') await signIn(page, key);
        else await page.goto(`${server.url}${path}`);
        await ready(page);
        // Let lazy parts (the diff once in view, the charts) settle before checking.
        await page.waitForTimeout(300);
        for (const v of await axe(page)) report.push(`${name}: [${v.impact}] ${v.rule}: ${v.help} (${v.count} node${v.count === 1 ? '' : 's'})\n      ${v.targets.join('\n      ')}`);
        await shot(name);
        const keys = await focusRings(page);
        for (const p of keys.problems) report.push(`${name}: keyboard: ${p}`);
        if (keys.stops === 0) report.push(`${name}: keyboard: Tab reaches nothing`);
      }
      if (report.length) throw new Error(`${report.length} accessibility problem(s):\n  ${report.join('\n  ')}`);
    }, { scheme });
  }

  await test('a11y-inbox-live', async (page, shot) => {
    await signIn(page, key);
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: /Approvals/ }).click();
    await page.getByTestId('approval').first().waitFor();
    const before = await page.getByTestId('approval').count();
    // The inbox follows the tenant socket as the header's badge does: while it is live the page
    // asks nothing for 4 quiet seconds (the old inbox polled every 3 s), and a new request shows
    // up within 2 s of the run's start, without a reload.
    const asks = [];
    page.on('request', (r) => r.url().includes('/api/v1/approvals') && asks.push(Date.now()));
    await page.waitForTimeout(4000);
    if (asks.length) throw new Error(`the inbox asked for the approvals ${asks.length} time(s) in 4 quiet seconds`);
    const t = Date.now();
    const run = await as('POST', '/runs', { source: APPROVAL.replace('Publish the note?', 'Ship the live note?') });
    const card = page.getByTestId('approval').filter({ hasText: 'Ship the live note?' });
    await card.waitFor({ timeout: 2000 });
    const ms = Date.now() - t;
    console.log(`a11y-inbox-live: the new request shown ${ms} ms after the run started (${asks.length} inbox request(s))`);
    if ((await page.getByTestId('approval').count()) !== before + 1) throw new Error('the inbox did not grow by one');
    await shot('new-request');
    // Answered through the API (another person): it leaves the open inbox as well.
    await as('POST', `/runs/${run.id}/approve`, { step: 'approve' });
    await card.waitFor({ state: 'detached', timeout: 5000 });
    if ((await ended(run.id)).run.status !== 'succeeded') throw new Error('the approved run did not succeed');
  });

  await test('a11y-compare-large', async (page) => {
    // The page is some 250,000 px tall: screenshots of the viewport only.
    const shot = (what) => page.screenshot({ path: join(SHOTS, `web-a11y-compare-large-${what}.png`) });
    // A run of 1,000 steps, every 100th with a 30,000-character output, and a fork of it from
    // its last step with the first big output edited in one word (the fork copies the log:
    // quicker than a second run; on a debug build 1,000 steps take some 30 s).
    const text = (w) => Array.from({ length: 3000 }, (_, i) => (i === 1500 ? w : `word${i % 97}`)).join(' ').slice(0, 30_000);
    const made = Date.now();
    const steps = Array.from({ length: 1000 }, (_, i) => `  - { id: s${i + 1}, tool: echo, with: { text: "${i % 100 === 0 ? text('alpha') : `step ${i + 1}`}" } }`);
    const r = await as('POST', '/runs', { source: `version: 1\nname: a11y-big\nsteps:\n${steps.join('\n')}\n` });
    const da = await ended(r.id, 180_000);
    if (da.run.status !== 'succeeded') throw new Error(`the 1,000-step run is ${da.run.status}`);
    const f = await as('POST', `/runs/${r.id}/fork`, { before: 's1000', set: { 'steps.s1.output': text('beta') } });
    const db = await ended(f.id, 60_000);
    if (db.run.status !== 'succeeded') throw new Error(`the fork is ${db.run.status}`);
    const [a, b] = [r.id, f.id];
    console.log(`a11y-compare-large: a 1,000-step run and its fork made in ${Date.now() - made} ms`);
    await signIn(page, key);
    const t = Date.now();
    await page.goto(`${server.url}/compare/${a}/${b}`);
    await expectText(page.getByTestId('cmp-summary'), '1000 steps');
    await page.getByTestId('cmp-step-s1').getByTestId('cmp-diffnote').waitFor();
    const ms = Date.now() - t;
    const drawn = await page.locator('[data-testid^="cmp-step-"]').count();
    console.log(`a11y-compare-large: 2 x 1,000 steps opened in ${ms} ms, ${drawn} steps drawn`);
    if (drawn > 80) throw new Error(`${drawn} of 1,000 steps are drawn, not only those in view`);
    if (ms > 10_000) throw new Error(`the comparison took ${ms} ms to open`);
    // The page stays responsive while scrolling to the end: the last step is drawn there.
    const frames = await page.evaluate(async () => {
      const gaps = [];
      let last = performance.now();
      let on = true;
      const tick = (t) => {
        gaps.push(t - last);
        last = t;
        if (on) requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
      for (let y = 0; y < document.body.scrollHeight; y += 4000) {
        window.scrollTo(0, y);
        await new Promise((r) => setTimeout(r, 16));
      }
      window.scrollTo(0, document.body.scrollHeight);
      await new Promise((r) => setTimeout(r, 300));
      on = false;
      return Math.max(...gaps);
    });
    await page.getByTestId('cmp-step-s1000').waitFor();
    console.log(`a11y-compare-large: scrolled to the end, longest frame ${frames.toFixed(0)} ms`);
    await shot('end');
    // A big output is cut with "show all".
    await page.evaluate(() => window.scrollTo(0, 0));
    const first = page.getByTestId('cmp-step-s1');
    await first.getByRole('button', { name: 'Show all' }).click();
    await first.getByTestId('cmp-output').first().filter({ hasText: 'word96' }).waitFor();
    await shot('show-all');
  });
}

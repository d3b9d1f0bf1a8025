// The web app's whole surface as issue #17 lists it (called by e2e/run.mjs, with its server,
// helpers and browser), in a tenant of its own:
// - every page at a laptop's 1366x768 and a 1080p monitor's 1920x1080, light and dark: axe-core
//   finds no serious or critical violation, no console error, a screenshot of each
//   (target/screenshots/web-issue17-pages-WxH-SCHEME-PAGE.png);
// - the run viewer draws a workflow made in the builder where its canvas saved each step
//   (`layout:`), with every edge drawn, and keeps every edge while a live run changes the
//   nodes' statuses;
// - the builder's side panel defines the workflow's own agents as a form, copies a registry
//   agent's version into the workflow, and saving stores what the YAML tab shows.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const AXE_SOURCE = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');

const TEAM = `version: 1
name: i17-team
description: an agent of the workflow's own, a registry agent, a parallel and an approval
agents:
  writer: { model: scripted/hello, role: writer }
steps:
  - { id: draft, agent: writer, prompt: "Say hello to the readers of {{ run.workflow }}." }
  - id: checks
    parallel:
      - { id: spell, tool: echo, with: { text: "spelling ok" } }
      - { id: links, tool: echo, with: { text: "links ok" } }
    join: { strategy: all }
  - id: approve
    human: { prompt: "Publish the note?" }
  - { id: publish, tool: echo, with: { text: "published" } }
`;
const reviewer = (role) => `name: i17-reviewer\nmodel: scripted/hello\nrole: ${role}\ninstructions: |\n  Review carefully.\ntools: [echo]\n`;

export async function issue17Tests({ test, signIn, server, expectText, root }) {
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
  await admin('POST', '/tenants', { id: 'issue17-e2e' });
  const { key } = await admin('POST', '/keys', { tenant: 'issue17-e2e', role: 'admin', name: 'issue17 e2e' });
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
  const ended = async (id, ms = 20_000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const d = await as('GET', `/runs/${id}`);
      if (['succeeded', 'failed', 'cancelled'].includes(d.run.status)) return d;
      if (Date.now() > deadline) throw new Error(`run ${id} is still ${d.run.status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const statusOf = async (id, want, ms = 20_000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const d = await as('GET', `/runs/${id}`);
      if (d.run.status === want) return d;
      if (Date.now() > deadline) throw new Error(`run ${id} is ${d.run.status}, not ${want}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  // What the pages show: the laid-out example and its finished run, a team workflow with a run
  // waiting at its approval, a fork of the finished run (the comparison), a registry agent
  // with two versions, a webhook subscription (and the audit log of all of it).
  const laidOut = readFileSync(join(root, 'examples', 'laid-out.yaml'), 'utf8');
  await as('POST', '/workflows', laidOut, 'application/yaml');
  await as('POST', '/workflows', TEAM, 'application/yaml');
  const finished = await as('POST', '/runs', { workflow: 'laid-out' });
  if ((await ended(finished.id)).run.status !== 'succeeded') throw new Error('the laid-out run did not succeed');
  // n = 1 this time: the fork takes the `small` case.
  const fork = await as('POST', `/runs/${finished.id}/fork`, { before: 'size', set: { 'inputs.n': 1 } });
  await ended(fork.id);
  const waiting = await as('POST', '/runs', { workflow: 'i17-team' });
  await statusOf(waiting.id, 'waiting');
  for (const role of ['careful reviewer', 'strict reviewer']) await as('POST', '/agents', reviewer(role), 'application/yaml');
  await as('POST', '/webhooks/subscriptions', { url: 'http://127.0.0.1:9/issue17', events: ['run.succeeded'], description: 'issue 17 checks' });

  /** Each node's box on screen and each edge's path, as React Flow drew them. */
  const drawn = (page) =>
    page.evaluate(() => {
      const nodes = {};
      for (const n of document.querySelectorAll('.react-flow__node')) {
        const r = n.getBoundingClientRect();
        nodes[n.getAttribute('data-id')] = { x: r.x, y: r.y, w: r.width };
      }
      const edges = [...document.querySelectorAll('.react-flow__edge')].map((e) => ({
        id: e.getAttribute('data-id') ?? e.getAttribute('data-testid') ?? '',
        d: e.querySelector('path.react-flow__edge-path')?.getAttribute('d') ?? '',
      }));
      return { nodes, edges };
    });

  // The graph once its links are drawn (React Flow draws them after measuring the nodes,
  // later on a busy machine): polled for up to 10 s, then whatever is there.
  const settled = async (page, links) => {
    const deadline = Date.now() + 10000;
    for (;;) {
      const g = await drawn(page);
      if ((g.edges.length === links && g.edges.every((e) => /^M/.test(e.d))) || Date.now() > deadline) return g;
      await page.waitForTimeout(100);
    }
  };

  await test('issue17-run-viewer-layout', async (page, shot) => {
    await signIn(page, key);
    await page.goto(`${server.url}/runs/${finished.id}`);
    await expectText(page.getByTestId('run-status'), 'succeeded');
    await page.locator('[data-testid="node-none"]').waitFor();
    const g = await settled(page, 3);
    const { size, big, small, none } = g.nodes;
    if (!size || !big || !small || !none) throw new Error(`nodes missing: ${JSON.stringify(g.nodes)}`);
    // examples/laid-out.yaml: size [260, 0], big [0, 150], small [260, 150], none [520, 150].
    const zoom = (small.x - big.x) / 260;
    const near = (a, b) => Math.abs(a - b) < 2;
    if (!(zoom > 0.2) || !near(none.x - small.x, 260 * zoom) || !near(size.x, small.x) || !near(big.y, small.y) || !near(small.y, none.y) || !near(big.y - size.y, 150 * zoom))
      throw new Error(`the nodes are not where layout: put them: ${JSON.stringify(g.nodes)}`);
    // Three cases out of the switch (big, small, default none), each drawn.
    if (g.edges.length !== 3 || g.edges.some((e) => !/^M/.test(e.d))) throw new Error(`edges: ${JSON.stringify(g.edges)}`);
    await shot('laid-out');
  });

  await test('issue17-run-viewer-live-edges', async (page, shot) => {
    await signIn(page, key);
    await page.goto(`${server.url}/runs/${waiting.id}`);
    await page.locator('[data-testid="node-approve"][data-status="waiting"]').waitFor();
    const before = await settled(page, 5);
    // draft -> checks, checks ~ spell, checks ~ links (its branches), checks -> approve, approve -> publish
    if (before.edges.length !== 5 || before.edges.some((e) => !/^M/.test(e.d))) throw new Error(`edges while waiting: ${JSON.stringify(before.edges)}`);
    // The step after the parallel is drawn below its branches.
    if (!(before.nodes.approve.y > before.nodes.spell.y && before.nodes.spell.y > before.nodes.checks.y)) throw new Error(`layers: ${JSON.stringify(before.nodes)}`);
    await shot('waiting');
    // Approved elsewhere: the statuses change live, every edge stays drawn.
    await as('POST', `/runs/${waiting.id}/approve`, { step: 'approve' });
    await page.locator('[data-testid="node-publish"][data-status="done"]').waitFor();
    await expectText(page.getByTestId('run-status'), 'succeeded');
    await page.waitForTimeout(200);
    const after = await drawn(page);
    if (after.edges.length !== before.edges.length || after.edges.some((e) => !/^M/.test(e.d))) throw new Error(`edges after the run: ${JSON.stringify(after.edges)} (before ${before.edges.length})`);
    await shot('done');
  });

  await test('issue17-builder-agents', async (page, shot) => {
    await signIn(page, key);
    await page.goto(`${server.url}/builder/i17-team`);
    await page.locator('[data-testid="builder"][data-open-ms]').waitFor();
    const panel = page.getByTestId('step-panel');
    // The document's panel: the workflow's own agents.
    await panel.getByRole('button', { name: /writer/ }).first().waitFor();
    await panel.getByLabel('New agent').fill('critic');
    await panel.getByRole('button', { name: 'Add agent' }).click();
    const critic = panel.getByTestId('agent-form-critic');
    await critic.getByLabel('Model', { exact: true }).fill('scripted/hello');
    await critic.getByLabel('Role').fill('critic');
    await critic.getByLabel('Instructions (system prompt)').fill('Find one weakness.');
    await critic.getByLabel('Tools').fill('echo');
    await critic.getByLabel('Tokens', { exact: true }).fill('4000');
    await critic.getByLabel('Output schema (JSON Schema)').fill('{"type": "object", "required": ["weakness"]}');
    // Copy from registry: version 1, not the newest.
    const copy = panel.getByTestId('copy-registry');
    await copy.getByLabel('Registry agent').selectOption('i17-reviewer');
    await copy.getByLabel('Version').selectOption('1');
    await copy.getByRole('button', { name: 'Copy into this workflow' }).click();
    await expectText(panel.getByTestId('agent-copied'), 'Copied i17-reviewer v1');
    await shot('agents');
    // An agent step's panel: its agent's form.
    await page.getByTestId('bnode-draft').click();
    const own = panel.getByTestId('step-agent');
    await own.getByLabel('Role').fill('author');
    // The agent picker offers the workflow's agents and the registry's.
    const offered = await panel.locator('datalist option').evaluateAll((os) => os.map((o) => o.getAttribute('value')));
    for (const want of ['writer', 'critic', 'i17-reviewer']) if (!offered.includes(want)) throw new Error(`the agent picker offers ${offered.join(', ')}: no ${want}`);
    await shot('step-agent');
    // No problem from the validator, and the YAML tab says it all.
    await expectText(page.getByTestId('problems'), 'No problems');
    await page.getByRole('tab', { name: 'YAML' }).click();
    const yaml = await page.getByTestId('yaml').inputValue();
    for (const want of ['critic:', 'Find one weakness.', 'weakness', 'tokens: 4000', 'i17-reviewer:', 'role: careful reviewer', 'role: author'])
      if (!yaml.includes(want)) throw new Error(`the YAML has no ${want}:\n${yaml}`);
    await shot('yaml');
    await page.getByRole('button', { name: 'Save' }).click();
    await expectText(page.getByTestId('builder-status'), 'Saved i17-team version 2');
    const stored = await as('GET', '/workflows/i17-team');
    for (const want of ['critic:', 'i17-reviewer:', 'role: author']) if (!stored.source.includes(want)) throw new Error(`the saved version has no ${want}`);
  });

  const pages = [
    ['sign-in', null, (p) => p.getByLabel('API key').waitFor()],
    ['dashboard', '/', (p) => p.getByTestId('in-flight').waitFor()],
    ['workflows', '/workflows', (p) => p.getByTestId('workflows').waitFor()],
    ['builder', '/builder/i17-team', (p) => p.locator('[data-testid="builder"][data-open-ms]').waitFor()],
    ['builder-yaml', '/builder/laid-out', async (p) => {
      await p.locator('[data-testid="builder"][data-open-ms]').waitFor();
      await p.getByRole('tab', { name: 'YAML' }).click();
      await p.getByTestId('yaml').waitFor();
    }],
    ['run-viewer', `/runs/${finished.id}`, async (p) => {
      await expectText(p.getByTestId('run-status'), 'succeeded');
      await p.getByTestId('node-size').click();
      await p.getByTestId('node-panel').waitFor();
    }],
    ['approvals', '/approvals', (p) => p.getByRole('heading', { name: 'Nothing waits for you' }).or(p.getByTestId('approval')).first().waitFor()],
    ['agents', '/agents', (p) => p.getByTestId('agents').waitFor()],
    ['agent', '/agents/i17-reviewer', (p) => p.getByTestId('diff').waitFor()],
    ['compare', `/compare/${finished.id}/${fork.id}`, (p) => p.getByTestId('cmp-summary').waitFor()],
    ['admin-keys', '/admin/keys', (p) => p.getByTestId('keys').waitFor()],
    ['admin-webhooks', '/admin/webhooks', (p) => p.getByTestId('subscription').first().waitFor()],
    ['admin-audit', '/admin/audit', (p) => p.getByTestId('audit-entry').first().waitFor()],
  ];

  const axe = async (page) => {
    // Through the DevTools protocol: the content security policy refuses an added <script>.
    if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(AXE_SOURCE);
    return page.evaluate(async () => {
      const r = await window.axe.run(document, { resultTypes: ['violations'] });
      return r.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `[${v.impact}] ${v.id}: ${v.help} (${v.nodes.length}): ${v.nodes.slice(0, 4).map((n) => n.target.join(' ')).join(' | ')}`);
    });
  };

  for (const [width, height] of [
    [1366, 768],
    [1920, 1080],
  ]) {
    for (const scheme of ['light', 'dark']) {
      await test(`issue17-pages-${width}x${height}-${scheme}`, async (page, shot) => {
        const report = [];
        for (const [name, path, ready] of pages) {
          if (path === null) await page.goto(server.url);
          else if (name === 'dashboard') await signIn(page, key);
          else await page.goto(`${server.url}${path}`);
          await ready(page);
          await page.waitForTimeout(300);
          for (const v of await axe(page)) report.push(`${name}: ${v}`);
          // Nothing wider than the window: no sideways scrolling on a laptop.
          const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
          if (wide > 1) report.push(`${name}: the page is ${wide} px wider than the ${width} px window`);
          await shot(name);
        }
        if (report.length) throw new Error(`${report.length} problem(s):\n  ${report.join('\n  ')}`);
      }, { scheme, viewport: { width, height } });
    }
  }
}

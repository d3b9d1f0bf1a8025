// The agent registry's and the admin pages' browser tests (run by e2e/run.mjs, with its
// server, helpers and browser): create an agent and a second version, see the diff, roll
// back; see a refused file's problems at their field; create a key, see its secret once,
// revoke it; subscribe a local receiver and see a run's event delivered in the history; find
// these actions in the audit log and verify its chain; a viewer sees no admin page.
import { createServer } from 'node:http';

const INSTRUCTIONS = Array.from({ length: 60 }, (_, i) => `  ${i + 1}. Keep the answer short and kind.`).join('\n');
const agentFile = (role) => `name: e2e-writer\nmodel: scripted/hello\nrole: ${role}\ninstructions: |\n  Rules:\n${INSTRUCTIONS}\n`;

/** A loopback HTTP receiver that answers 200 and keeps every request's headers and body. */
function receiver() {
  const got = [];
  const srv = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({ got, url: `http://127.0.0.1:${srv.address().port}/hook`, close: () => srv.close() })));
}

export async function registryTests({ test, signIn, server, api, runEnded, expectText }) {
  const nav = (page, name) => page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name, exact: true });
  const setSource = async (page, text) => {
    await page.getByLabel('Agent file').fill(text);
  };
  /** The two versions the agent test makes, stored through the API when it did not run (E2E_ONLY). */
  const ensureAgent = async () => {
    const got = await fetch(`${server.url}/api/v1/agents/e2e-writer`, { headers: { authorization: `Bearer ${server.key}` } });
    if (got.ok) return;
    for (const role of ['careful writer', 'bold writer']) {
      const resp = await fetch(`${server.url}/api/v1/agents`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.key}`, 'content-type': 'application/yaml' },
        body: agentFile(role),
      });
      if (!resp.ok) throw new Error(`storing an agent: ${resp.status} ${await resp.text()}`);
    }
  };

  await test('registry-agent-invalid', async (page, shot) => {
    await signIn(page);
    await nav(page, 'Agents').click();
    await page.waitForURL('**/agents');
    await page.getByRole('button', { name: 'New agent' }).click();
    // A file without a model: the server's diagnostic names the field and its line.
    await setSource(page, 'name: broken\nrole: nobody\ntemperature: hot\n');
    await page.getByRole('button', { name: 'Save version' }).click();
    const problems = page.getByTestId('agent-problems');
    await problems.waitFor();
    await page.getByRole('alert').waitFor();
    if ((await page.getByLabel('Agent file').getAttribute('aria-invalid')) !== 'true') throw new Error('the editor is not marked invalid');
    await shot('problems');
    // Going to a problem selects its line in the editor.
    await problems.getByRole('button').first().click();
    const selected = await page.evaluate(() => {
      const t = document.querySelector('#agent-source');
      return t.value.slice(t.selectionStart, t.selectionEnd);
    });
    if (!selected) throw new Error('going to the problem selected nothing');
    console.log(`registry-agent-invalid: ${(await problems.textContent()).trim()} (selected: ${JSON.stringify(selected)})`);
  }, { allowErrors: true /* the refused file's 422 is logged by the browser */ });

  await test('registry-agent-versions-diff-rollback', async (page, shot) => {
    await signIn(page);
    await nav(page, 'Agents').click();
    // The list (the built-in team is there from the start) or its empty state, once loaded.
    await page.getByTestId('agents').or(page.getByTestId('no-agents')).waitFor();
    if (await page.getByTestId('no-agents').count()) await shot('empty');
    await page.getByRole('button', { name: 'New agent' }).click();
    await setSource(page, agentFile('careful writer'));
    await page.getByRole('button', { name: 'Save version' }).click();
    await page.waitForURL('**/agents/e2e-writer');
    await expectText(page.getByTestId('default-version'), 'default v1');
    // A big definition is cut until asked for.
    const source = page.getByTestId('agent-source');
    if ((await source.textContent()).includes('60. Keep')) throw new Error('the 65-line definition is shown uncut');
    await page.getByRole('button', { name: /Show all \(\d+ lines\)/ }).click();
    await expectText(source, '60. Keep the answer short and kind.');
    // A second version from the editor, prefilled with the first.
    await page.getByRole('button', { name: 'New version' }).click();
    const prefilled = await page.getByLabel('Agent file').inputValue();
    if (!prefilled.includes('role: careful writer')) throw new Error(`the editor starts from ${prefilled.slice(0, 80)}`);
    await setSource(page, agentFile('bold writer').replace('  30. Keep the answer short and kind.', '  30. Keep the answer long.'));
    await page.keyboard.press('Control+s');
    await expectText(page.getByRole('status'), 'Saved v2');
    await expectText(page.getByTestId('default-version'), 'default v2');
    // The side-by-side diff of v1 and v2: the changed lines marked on both sides.
    const diff = page.getByTestId('diff');
    const changed = diff.locator('tr[data-kind="changed"]');
    await changed.first().waitFor();
    const rows = await changed.allTextContents();
    if (rows.length !== 2 || !rows[0].includes('role: careful writer') || !rows[0].includes('role: bold writer') || !rows[1].includes('Keep the answer long.')) {
      throw new Error(`changed rows: ${JSON.stringify(rows)}`);
    }
    await expectText(page.getByTestId('field-changes'), 'role');
    await page.getByRole('button', { name: /Show \d+ unchanged lines/ }).first().waitFor();
    await shot('diff');
    // Roll back: v1 becomes the default again, here and in the listing.
    await page.getByRole('button', { name: 'Make v1 the default' }).click();
    await expectText(page.getByRole('status'), 'v1 is now the default');
    await expectText(page.getByTestId('default-version'), 'default v1');
    const got = await api('GET', '/agents/e2e-writer');
    if (got.version !== 1) throw new Error(`the server's default is v${got.version}`);
    await shot('rolled-back');
    await nav(page, 'Agents').click();
    const row = page.getByTestId('agents').getByRole('row').filter({ hasText: 'e2e-writer' });
    await expectText(row, 'v1 (latest v2)');
    await expectText(row, 'careful writer');
    await page.getByLabel('Search agents').fill('bold');
    await page.getByTestId('no-match').waitFor();
    await page.getByLabel('Search agents').fill('writer hello');
    await row.waitFor();
    await shot('list');
  });

  await test('registry-admin-keys', async (page, shot) => {
    await signIn(page);
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write']);
    await nav(page, 'Keys').click();
    await page.waitForURL('**/admin/keys');
    await page.getByLabel('Role').selectOption('runner');
    await page.getByLabel('Name (optional)').fill('e2e temporary');
    await page.getByRole('button', { name: 'Create key' }).click();
    const secret = (await page.getByTestId('secret-value').textContent()).trim();
    if (!/^bk_/.test(secret)) throw new Error(`the secret shown is ${secret}`);
    await expectText(page.getByTestId('secret'), 'only time it is shown');
    await page.getByTestId('secret').getByRole('button', { name: 'Copy' }).click();
    await expectText(page.getByTestId('secret').getByRole('status'), 'Copied');
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    if (copied !== secret) throw new Error('the copy button copied something else');
    await shot('secret');
    const who = await (await fetch(`${server.url}/api/v1/me`, { headers: { authorization: `Bearer ${secret}` } })).json();
    if (who.role !== 'runner') throw new Error(`the new key is ${JSON.stringify(who)}`);
    await page.getByRole('button', { name: 'I have copied it' }).click();
    // Gone for good: not on the page, not after a reload, not in the listing.
    await page.reload();
    const row = page.getByTestId('keys').getByRole('row').filter({ hasText: 'e2e temporary' });
    await expectText(row, 'active');
    if ((await page.content()).includes(secret)) throw new Error('the secret is shown again');
    // Revoking asks first.
    await row.getByRole('button', { name: 'Revoke' }).click();
    await shot('confirm-revoke');
    await row.getByRole('button', { name: 'Yes, revoke' }).click();
    await expectText(page.getByRole('status'), 'is revoked');
    await expectText(row, 'revoked');
    const after = await fetch(`${server.url}/api/v1/me`, { headers: { authorization: `Bearer ${secret}` } });
    if (after.status !== 401) throw new Error(`the revoked key answers ${after.status}`);
    await shot('revoked');
  });

  await test('registry-admin-webhooks', async (page, shot) => {
    const rx = await receiver();
    try {
      await signIn(page);
      await nav(page, 'Webhooks').click();
      await page.waitForURL('**/admin/webhooks');
      await page.getByTestId('no-subscriptions').waitFor();
      await page.getByLabel('URL').fill(rx.url);
      await page.getByLabel('Description (optional)').fill('e2e receiver');
      await page.getByRole('button', { name: 'Subscribe' }).click();
      const secret = (await page.getByTestId('secret-value').textContent()).trim();
      if (!secret.startsWith('whsec_')) throw new Error(`the signing secret shown is ${secret}`);
      const sub = page.getByTestId('subscription').filter({ hasText: rx.url });
      await sub.getByTestId('no-deliveries').waitFor();
      // A run's end is delivered to the receiver and shows in the history.
      const run = await api('POST', '/runs', { source: 'version: 1\nname: hooked\nsteps:\n  - { id: say, tool: echo, with: { text: hi } }\n' });
      await runEnded(run.id);
      const delivery = sub.getByTestId('delivery').filter({ hasText: 'run.succeeded' });
      await delivery.waitFor({ timeout: 30_000 });
      await expectText(delivery, 'succeeded');
      await expectText(delivery.getByTestId('last-answer'), 'HTTP 200');
      const body = rx.got.map((g) => JSON.parse(g.body)).find((b) => b.type === 'run.succeeded');
      if (!body || body.data.run_id !== run.id) throw new Error(`the receiver got ${JSON.stringify(rx.got.map((g) => g.body))}`);
      if (!rx.got[0].headers['webhook-signature']?.startsWith('v1,')) throw new Error('the delivery is not signed');
      await delivery.locator('summary').click();
      await expectText(delivery.locator('.attempts li'), 'HTTP 200');
      await shot('deliveries');
      // Deleting asks first.
      await page.getByRole('button', { name: 'I have copied it' }).click();
      await sub.getByRole('button', { name: 'Delete' }).click();
      await sub.getByRole('button', { name: 'Yes, delete' }).click();
      await page.getByTestId('no-subscriptions').waitFor();
    } finally {
      rx.close();
    }
  });

  await test('registry-admin-audit', async (page, shot) => {
    await signIn(page);
    await nav(page, 'Audit').click();
    await page.waitForURL('**/admin/audit');
    await page.getByTestId('audit-entry').first().waitFor();
    // What the tests above did, each found by its action.
    for (const action of ['agent.create', 'agent.rollback', 'key.create', 'key.revoke', 'webhook.subscription.create', 'webhook.subscription.delete']) {
      await page.getByLabel('Action').fill(action);
      await page.getByRole('button', { name: 'Filter' }).click();
      await page.locator(`[data-testid="audit-entry"][data-action="${action}"]`).first().waitFor();
      // The list shown before the filter's answer may hold the action too: wait for the answer.
      const others = () => page.locator(`[data-testid="audit-entry"]:not([data-action="${action}"])`).count();
      const deadline = Date.now() + 5000;
      while ((await others()) && Date.now() < deadline) await page.waitForTimeout(50);
      if (await others()) throw new Error(`filtering by ${action} shows ${await others()} other entries`);
    }
    await page.getByLabel('Action').fill('agent.create');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expectText(page.getByTestId('audit'), 'agent/e2e-writer');
    await shot('filtered');
    await page.getByRole('button', { name: 'Clear' }).click();
    // A time filter in the future matches nothing.
    await page.getByLabel('Since').fill('2099-01-01T00:00');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByTestId('no-entries').waitFor();
    await page.getByRole('button', { name: 'Clear' }).click();
    // Paging: past 50 entries (made here if the tests before made fewer), a next page starts
    // right after the first.
    for (let i = 0; i < 5; i++) await Promise.all(Array.from({ length: 10 }, (_, j) => api('POST', '/keys', { role: 'viewer', name: `e2e paging ${i * 10 + j}` })));
    await page.reload();
    await page.getByTestId('audit-entry').first().waitFor();
    const count = await page.getByTestId('audit-entry').count();
    if (count !== 50) throw new Error(`the first page has ${count} entries`);
    const last = await page.getByTestId('audit-entry').last().locator('td').first().textContent();
    await page.getByRole('button', { name: 'Next page' }).click();
    await page.getByRole('button', { name: 'Previous page' }).waitFor();
    await page.locator('[data-testid="audit-entry"] td').first().filter({ hasText: String(Number(last) + 1) }).waitFor();
    await shot('page-2');
    await page.getByRole('button', { name: 'Previous page' }).click();
    await page.locator('[data-testid="audit-entry"] td').first().filter({ hasText: /^1$/ }).waitFor();
    await page.getByRole('button', { name: 'Verify chain' }).click();
    await expectText(page.getByTestId('verified'), 'The chain is whole');
    await shot('verified');
  });

  await test('registry-admin-dark', async (page, shot) => {
    await ensureAgent();
    await signIn(page);
    await page.goto(`${server.url}/agents/e2e-writer`);
    await page.getByTestId('diff').waitFor();
    await shot('agent');
    await page.goto(`${server.url}/admin/keys`);
    await page.getByTestId('keys').waitFor();
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.getByTestId('secret').waitFor();
    await shot('keys');
    await page.goto(`${server.url}/admin/audit`);
    await page.getByTestId('audit-entry').first().waitFor();
    await page.getByRole('button', { name: 'Verify chain' }).click();
    await page.getByTestId('verified').waitFor();
    await shot('audit');
    await page.goto(`${server.url}/admin/webhooks`);
    await page.getByTestId('no-subscriptions').waitFor();
    await shot('webhooks');
  }, { scheme: 'dark' });

  await test('registry-viewer-sees-no-admin', async (page, shot) => {
    await ensureAgent();
    const viewer = await api('POST', '/keys', { role: 'viewer', name: 'e2e registry viewer' });
    await signIn(page, viewer.key);
    await nav(page, 'Agents').waitFor();
    for (const name of ['Keys', 'Webhooks', 'Audit']) {
      if (await nav(page, name).count()) throw new Error(`a viewer sees the ${name} link`);
    }
    for (const path of ['/admin/keys', '/admin/webhooks', '/admin/audit']) {
      await page.goto(`${server.url}${path}`);
      await expectText(page.getByTestId('not-allowed'), 'A viewer key may not');
    }
    await shot('not-allowed');
    // The registry reads, without the buttons that would be refused.
    await page.goto(`${server.url}/agents`);
    await page.getByTestId('agents').waitFor();
    if (await page.getByRole('button', { name: 'New agent' }).count()) throw new Error('a viewer sees New agent');
    await page.goto(`${server.url}/agents/e2e-writer`);
    await page.getByTestId('diff').waitFor();
    for (const name of ['New version', 'Make v2 the default']) {
      if (await page.getByRole('button', { name }).count()) throw new Error(`a viewer sees ${name}`);
    }
    await shot('agent');
  }, { scheme: 'dark' });
}

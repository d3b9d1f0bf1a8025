// The dashboard's browser tests (called by e2e/run.mjs): a new tenant's empty state, its first
// contentful paint, runs started through the API appearing live (counts, the in-flight list, a
// chart, an agent's state, the approvals badge) without a reload and without polling requests
// while the socket is up, the hour/day switch, keyboard reach, and screenshots in light and dark
// at 1366x768 and 1920x1080.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export async function dashboardTests({ test, signIn, server, api, expectText, root }) {
  // A tenant of its own, so that the other tests' runs do not show here.
  await api('POST', '/tenants', { id: 'dash-e2e' });
  const { key } = await api('POST', '/keys', { tenant: 'dash-e2e', role: 'admin', name: 'dashboard e2e' });
  const asTenant = async (method, path, body) => {
    const resp = await fetch(`${server.url}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await resp.json();
    if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${JSON.stringify(json)}`);
    return json;
  };
  const approval = readFileSync(join(root, 'examples', 'human-approval.yaml'), 'utf8');

  await test('dashboard-live', async (page, shot) => {
    await signIn(page, key);
    await page.getByTestId('empty-dashboard').waitFor();
    await expectText(page.getByTestId('empty-dashboard'), 'Run the hello example');
    await expectText(page.getByTestId('empty-dashboard'), 'workflow builder');
    // First contentful paint of the dashboard (the session restored from this tab's storage).
    await page.reload();
    await page.getByTestId('empty-dashboard').waitFor();
    const fcp = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1);
    console.log(`dashboard: first contentful paint ${fcp.toFixed(0)} ms (loopback)`);
    if (fcp < 0) throw new Error('no first-contentful-paint entry');
    if (fcp >= 1000) throw new Error(`first contentful paint took ${fcp.toFixed(0)} ms (>= 1 s)`);
    await page.locator('[data-testid="live-state"][data-state="live"]').waitFor();
    await shot('empty');

    // From here on, every API request the page makes is logged.
    const requests = [];
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (u.pathname.startsWith('/api/v1/')) requests.push({ at: Date.now(), path: `${u.pathname}${u.search}` });
    });
    // The empty state's button starts a first run; it shows up without a reload.
    await page.getByRole('button', { name: 'Run the hello example' }).click();
    const recent = page.getByTestId('recent').getByRole('row').filter({ hasText: 'hello' });
    await expectText(recent, 'succeeded');
    await page.locator('[data-testid="counts"] [data-status="succeeded"]').filter({ hasText: '1' }).waitFor();
    // The status chart has its bar, its value printed.
    const statusChart = page.getByTestId('chart-status');
    await statusChart.getByTestId('bar').filter({ hasText: 'succeeded' }).filter({ hasText: '1' }).waitFor();
    await expectText(page.getByTestId('rate-value'), '100%');

    // A run started through the API: in flight, waiting for approval; its agent's state shown.
    const started = await asTenant('POST', '/runs', { source: approval });
    const inflight = page.getByTestId('in-flight').getByRole('row').filter({ hasText: 'human-approval' });
    await expectText(inflight, 'waiting');
    await page.locator('[data-testid="counts"] [data-status="waiting"]').filter({ hasText: '1' }).waitFor();
    await statusChart.getByTestId('bar').filter({ hasText: 'waiting' }).waitFor();
    const agent = page.locator('[data-testid="agent-row"][data-agent="writer"]');
    await agent.waitFor();
    await expectText(agent, started.id.slice(0, 8));
    await agent.locator('xpath=.').filter({ hasText: 'draft: done' }).waitFor();
    await page.getByTestId('approvals-badge').filter({ hasText: '1' }).waitFor();
    await expectText(page.getByTestId('chart-tokens'), 'tok');
    await expectText(page.getByTestId('chart-steps'), 'agent (');
    await shot('live');

    // Quiet: with the socket up, nothing is polled.
    const quietFrom = Date.now();
    await page.waitForTimeout(5000);
    const polled = requests.filter((r) => r.at >= quietFrom);
    if (polled.length) throw new Error(`requests while nothing happened (polling?): ${polled.map((r) => r.path).join(', ')}`);
    if ((await page.getByTestId('live-state').getAttribute('data-state')) !== 'live') throw new Error('the socket is not live');

    // Approving ends the run: it leaves the in-flight list, the badge goes, the counts follow.
    await asTenant('POST', `/runs/${started.id}/approve`, { step: 'approve' });
    await expectText(page.getByTestId('in-flight'), 'Nothing is running right now.');
    await page.locator('[data-testid="counts"] [data-status="succeeded"]').filter({ hasText: '2' }).waitFor();
    await page.getByTestId('approvals-badge').waitFor({ state: 'detached' });
    await expectText(page.getByTestId('agents'), 'No agent is at work');
    const detail = await asTenant('GET', `/runs/${started.id}`);
    if (detail.run.status !== 'succeeded') throw new Error(`run is ${detail.run.status}`);
    const total = requests.length;
    console.log(`dashboard: ${total} API requests over the live part, all after events: ${[...new Set(requests.map((r) => r.path.split('?')[0]))].join(', ')}`);

    // The day's window, by keyboard: the switch, then a chart, reachable with Tab.
    await page.getByRole('button', { name: 'Last day' }).focus();
    await page.keyboard.press('Enter');
    await expectText(page.getByRole('heading', { name: 'The last day' }), 'day');
    await expectText(page.getByTestId('stats-runs'), '2 runs created');
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => document.activeElement?.getAttribute('data-testid'));
    if (focused !== 'chart-status') throw new Error(`Tab after the switch reached ${focused}, not the first chart`);
    const label = await page.getByTestId('chart-status').getAttribute('aria-label');
    if (!/succeeded 2/.test(label ?? '')) throw new Error(`the chart's label does not read its values: ${label}`);

    // Screenshots: light and dark, at two sizes.
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      for (const [w, h] of [
        [1366, 768],
        [1920, 1080],
      ]) {
        await page.setViewportSize({ width: w, height: h });
        await page.waitForTimeout(100);
        await shot(`${scheme}-${w}x${h}`);
      }
    }
  });
}

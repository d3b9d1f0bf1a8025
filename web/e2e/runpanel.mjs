// The run viewer's panels, in a browser (run by e2e/run.mjs, with its server, helpers and
// browser): an agent whose scripted model types (examples/scripted/typist.yaml, `pace`) shows
// its output growing while its step runs, then the whole answer; a sandbox step's details (the
// command, tier, limits, stop reason, exit code, stderr and the scan's finding); the Team panel
// of examples/design-debate.yaml (agents, shared memory, the channel and its messages, light
// and dark) and its empty state for a run without agents; an event of the log, a checkpoint of
// the timeline and a message of the Team panel select their step's node in the graph, and the
// selected step's events are highlighted and can be filtered.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Full-page screenshots with the page scrolled back up (the sticky bar stays at the top). */
const top = (page) => page.evaluate(() => window.scrollTo(0, 0));

const ANSWER = 'Streaming, word by word: a run viewer shows what the model writes while it writes it';
/** The typist's whole answer (examples/scripted/typist.yaml). */
const WHOLE = `${ANSWER}, so a person watching a long answer sees it grow instead of waiting for the step to end.`;

const LIVE = `version: 1
name: live-output
agents:
  typist: { model: scripted/typist, role: writer }
steps:
  - id: go
    human: { prompt: "Start writing?" }
  - id: write
    agent: typist
    prompt: "Explain streaming output in a few sentences."
  - id: check
    sandbox:
      command: ["sh", "check.sh"]
      files:
        check.sh: |
          greeting="hello from the sandbox"
          eval "echo $greeting"
          echo "something went wrong" >&2
          exit 3
      tier: process
      memory: 64M
      pids: 16
      time: 10s
      net: none
      allow_failure: true
`;

export async function runpanelTests({ test, signIn, server, api, runEnded, expectText, root }) {
  await test('runpanel-live-output-and-sandbox', async (page, shot) => {
    await signIn(page);
    const run = await api('POST', '/runs', { source: LIVE });
    // The page follows the run before the agent starts (it waits for an approval), so it sees
    // the answer from its first word.
    await page.goto(`${server.url}/runs/${run.id}`);
    await page.locator('[data-testid="node-go"][data-status="waiting"]').waitFor();
    await page.getByTestId('node-write').click();
    await api('POST', `/runs/${run.id}/approve`, { step: 'go' });
    await page.locator('[data-testid="node-write"][data-status="running"]').waitFor();
    // The Team panel follows: the typist is running (it was idle, waiting for the approval).
    await page.locator('[data-testid="agent-typist"][data-state="running"]').waitFor();
    const panel = page.getByTestId('node-panel');
    await panel.getByTestId('live-output').waitFor();
    await expectText(panel.getByTestId('elapsed'), 'running for');
    // Words arrive while the step runs: the text grows, and the step is still running.
    const text = panel.getByTestId('live-text');
    await page.waitForFunction(() => (document.querySelector('[data-testid="live-text"]')?.textContent ?? '').length > 30);
    const early = await text.textContent();
    await page.waitForFunction((n) => (document.querySelector('[data-testid="live-text"]')?.textContent ?? '').length > n + 20, early.length);
    const later = await text.textContent();
    if ((await page.getByTestId('node-write').getAttribute('data-status')) !== 'running') throw new Error('the step ended before its output was seen growing');
    for (const part of [early, later]) if (!part.startsWith('Streaming, word by word') || !WHOLE.startsWith(part)) throw new Error(`the streamed text is not the answer's start: ${part}`);
    if (await panel.getByTestId('live-joined').count()) throw new Error('a stream followed from its first word says it may miss its start');
    await top(page);
    await shot('streaming');
    // Then the final output replaces the stream.
    await page.locator('[data-testid="node-write"][data-status="done"]').waitFor();
    await panel.getByTestId('live-output').waitFor({ state: 'detached' });
    await page.locator('[data-testid="agent-typist"][data-state="idle"]').waitFor();
    await expectText(panel.getByTestId('output'), ANSWER);
    await expectText(panel.getByTestId('turn'), 'Explain streaming output in a few sentences.');

    // The sandbox step: everything its execution record carries.
    await page.locator('[data-testid="node-check"][data-status="done"]').waitFor();
    await page.getByTestId('node-check').click();
    const sandbox = panel.getByTestId('sandbox-run');
    await expectText(sandbox.getByTestId('sandbox-command'), 'sh check.sh');
    await expectText(sandbox.getByTestId('sandbox-exit'), 'exited · exit 3');
    await expectText(sandbox.getByTestId('sandbox-tier'), 'process');
    await expectText(sandbox.getByTestId('sandbox-limits'), 'memory 64.0 MiB');
    await expectText(sandbox.getByTestId('sandbox-limits'), 'net none');
    await expectText(sandbox.getByTestId('sandbox-findings'), 'SH002');
    await expectText(sandbox, 'something went wrong');
    await expectText(sandbox, 'hello from the sandbox');
    await top(page);
    await shot('sandbox');
    // All of the details at once (the panel scrolls within its height): to look at.
    await panel.evaluate((el) => (el.style.maxHeight = 'none'));
    await shot('sandbox-all');
    const detail = await runEnded(run.id);
    if (detail.run.status !== 'succeeded') throw new Error(`the live-output run is ${detail.run.status}: ${detail.run.error}`);
  });

  await test('runpanel-sandbox-dark', async (page, shot) => {
    const run = await api('POST', '/runs', { source: LIVE });
    // Approved once it waits.
    for (let i = 0; !(await api('GET', `/runs/${run.id}`)).waiting.includes('go'); i++) {
      if (i > 50) throw new Error('the live-output run never waited for its approval');
      await new Promise((r) => setTimeout(r, 100));
    }
    await api('POST', `/runs/${run.id}/approve`, { step: 'go' });
    await runEnded(run.id);
    await signIn(page);
    await page.goto(`${server.url}/runs/${run.id}`);
    await page.getByTestId('node-check').click();
    const panel = page.getByTestId('node-panel');
    await expectText(panel.getByTestId('sandbox-findings'), 'SH002');
    await panel.evaluate((el) => (el.style.maxHeight = 'none'));
    await shot('sandbox');
    await page.getByTestId('node-write').click();
    await expectText(panel.getByTestId('output'), ANSWER);
    await shot('agent');
  }, { scheme: 'dark' });

  // design-debate's scripted replies are used once each: one run, looked at by the tests below.
  const debate = await api('POST', '/runs', { source: readFileSync(join(root, 'examples', 'design-debate.yaml'), 'utf8') });
  const ended = await runEnded(debate.id);
  if (ended.run.status !== 'succeeded') throw new Error(`the design-debate run is ${ended.run.status}: ${ended.run.error}`);

  const team = async (page, shot) => {
    await signIn(page);
    await page.goto(`${server.url}/runs/${debate.id}`);
    await expectText(page.getByTestId('run-status'), 'succeeded');
    const panel = page.getByTestId('team-panel');
    for (const agent of ['pragmatist', 'purist', 'skeptic', 'judge', 'scribe']) await panel.getByTestId(`agent-${agent}`).waitFor();
    await expectText(panel.getByTestId('memory-decisions'), 'Raft across three data centers');
    await expectText(panel.getByTestId('memory-decisions'), 'by scribe');
    await expectText(panel.getByTestId('channel-design'), 'pragmatist, purist, skeptic');
    const messages = panel.getByTestId('team-message');
    // The messages come from their own request: wait for the third before counting.
    await messages.nth(2).waitFor({ timeout: 10000 }).catch(() => {});
    if ((await messages.count()) < 3) throw new Error(`${await messages.count()} messages shown, 3 critiques were broadcast`);
    await expectText(messages, 'prefix-minted slugs');
    await expectText(messages.first().getByTestId('delivery'), 'delivered to');
    await shot('team');
  };
  // examples/policy.yaml: the decisions are rows of the event log, denials first to find.
  await test('runpanel-policy-decisions', async (page, shot) => {
    const run = await api('POST', '/runs', { source: readFileSync(join(root, 'examples', 'policy.yaml'), 'utf8') });
    const ended = await runEnded(run.id);
    if (ended.run.status !== 'succeeded') throw new Error(`the policy run is ${ended.run.status}: ${ended.run.error}`);
    await signIn(page);
    await page.goto(`${server.url}/runs/${run.id}`);
    await expectText(page.getByTestId('run-status'), 'succeeded');
    await page.getByLabel('Event kind').selectOption('policy_decided');
    await page.getByLabel('Filter events').fill('denied');
    const rows = page.locator('.log .row[data-kind="policy_decided"]');
    await rows.first().waitFor();
    await expectText(rows.first(), 'by rule no-ci-files');
    await expectText(page.locator('.log'), 'DENIED sandbox.step by rule no-downloads');
    await shot('policy');
  });

  await test('runpanel-team', team);
  await test('runpanel-team-dark', team, { scheme: 'dark' });

  await test('runpanel-team-empty', async (page, shot) => {
    const plain = await api('POST', '/runs', { source: 'version: 1\nname: no-agents\nsteps:\n  - { id: only, tool: echo, with: { text: hi } }\n' });
    await runEnded(plain.id);
    await signIn(page);
    await page.goto(`${server.url}/runs/${plain.id}`);
    await expectText(page.getByTestId('team-empty'), 'This run has no agents');
    await shot('empty');
  });

  await test('runpanel-log-selects-node', async (page, shot) => {
    await signIn(page);
    await page.goto(`${server.url}/runs/${debate.id}`);
    await expectText(page.getByTestId('run-status'), 'succeeded');
    // An event of the log: its step's node is selected and its details open.
    await page.getByLabel('Event kind').selectOption('memory_written');
    const row = page.locator('.log .row[data-step="record"]').first();
    await row.click();
    await page.locator('[data-testid="node-record"].selected').waitFor();
    await expectText(page.locator('#panel-title'), 'record');
    // The selected step's events are highlighted, and "only" keeps just them.
    await page.getByLabel('Event kind').selectOption('');
    await page.locator('.log .row.rv-focus[data-step="record"]').first().waitFor();
    // ... and its checkpoints on the timeline.
    await page.locator('.tt-row.rv-focus').filter({ hasText: 'record' }).first().waitFor();
    await page.getByLabel('only record').check();
    await page.waitForFunction(() => document.querySelectorAll('.log .row').length === document.querySelectorAll('.log .row.rv-focus').length);
    await expectText(page.getByTestId('log-count'), ' of ');
    await top(page);
    await shot('log');
    // Keyboard: Enter on an event of another step selects that one.
    await page.getByLabel('only record').uncheck();
    await page.getByLabel('Filter events').fill('critique_principled');
    const other = page.locator('.log .row[data-step="critique_principled"]').first();
    await other.focus();
    await page.keyboard.press('Enter');
    await page.locator('[data-testid="node-critique_principled"].selected').waitFor();
    // A checkpoint of the timeline selects its step too.
    await page.getByTestId('checkpoint').filter({ hasText: 'pragmatic' }).first().click();
    await page.locator('[data-testid="node-pragmatic"].selected').waitFor();
    await expectText(page.locator('#panel-title'), 'pragmatic');
    // And a message's step in the Team panel.
    await page.getByTestId('team-message').first().getByRole('button').click();
    await page.locator('[data-testid="node-critique_pragmatic"].selected').waitFor();
    await top(page);
    await shot('selected');
  });

  await test('runpanel-log-reveals-node', async (page, shot) => {
    // 60 steps: the graph is fitted around its first ones, the last is out of view until its
    // event is picked in the log.
    const steps = Array.from({ length: 60 }, (_, i) => `  - { id: s${i + 1}, tool: echo, with: { text: "step ${i + 1}" } }`);
    const long = await api('POST', '/runs', { source: `version: 1\nname: long\nsteps:\n${steps.join('\n')}\n` });
    await runEnded(long.id);
    await signIn(page);
    await page.goto(`${server.url}/runs/${long.id}`);
    await expectText(page.getByTestId('run-status'), 'succeeded');
    const inView = async (id) => {
      const g = await page.getByTestId('graph').boundingBox();
      // A node out of view is not rendered at all.
      const node = page.getByTestId(`node-${id}`);
      const n = (await node.count()) ? await node.boundingBox() : null;
      return !!n && n.y >= g.y && n.y + n.height <= g.y + g.height && n.x >= g.x && n.x + n.width <= g.x + g.width;
    };
    await page.waitForTimeout(300);
    if (await inView('s60')) throw new Error('s60 is in view before it is picked');
    await page.getByLabel('Filter events').fill('s60');
    await page.locator('.log .row[data-step="s60"]').first().click();
    await page.locator('[data-testid="node-s60"].selected').waitFor();
    for (let i = 0; !(await inView('s60')); i++) {
      if (i > 30) throw new Error('the picked node was not brought into view');
      await page.waitForTimeout(100);
    }
    await top(page);
    await shot('revealed');
  });
}

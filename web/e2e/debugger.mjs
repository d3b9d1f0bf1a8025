// The debugger's browser tests (run by e2e/run.mjs, with its server, helpers and browser):
// start a stored four-step workflow from the Workflows page with a breakpoint, see it stop
// there, edit a finished step's output in the state inspector (text that is not JSON is
// refused in place), Step and see it stop at the next step, add a breakpoint on the graph of
// the paused run, Continue to it, Continue again, and see the last step's output use the
// edited value. Then (dark) a breakpoint set from the node panel on a run while it runs is
// honoured; the builder's "Debug…" starts a run stepping; a viewer sees no debugger.

const NAME = 'debug-chain';
const WORKFLOW = `version: 1
name: ${NAME}
steps:
  - { id: draft, tool: echo, with: { text: "draft" } }
  - { id: review, tool: echo, with: { text: "review of {{ steps.draft.output }}" } }
  - { id: polish, tool: echo, with: { text: "polished {{ steps.review.output }}" } }
  - { id: publish, tool: echo, with: { text: "published {{ steps.polish.output }}" } }
`;

const SLOW = `version: 1
name: debug-slow
steps:
  - { id: wait, tool: sleep, with: { duration: 3s } }
  - { id: after, tool: echo, with: { text: "after the wait" } }
  - { id: last, tool: echo, with: { text: "last: {{ steps.after.output }}" } }
`;

export async function debuggerTests({ test, signIn, server, api, runEnded, expectText }) {
  const stored = await fetch(`${server.url}/api/v1/workflows`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.key}`, 'content-type': 'application/yaml' },
    body: WORKFLOW,
  });
  if (!stored.ok) throw new Error(`storing ${NAME}: ${stored.status} ${await stored.text()}`);
  const pausedAt = (page, text) => expectText(page.getByTestId('paused-at'), text);

  await test('debugger-break-edit-step-continue', async (page, shot) => {
    await signIn(page);
    await page.goto(`${server.url}/workflows`);
    await page.getByRole('button', { name: `Run ${NAME}` }).click();
    const dialog = page.getByTestId('debug-start');
    await dialog.getByLabel('review').check();
    await expectText(dialog, '1 breakpoint');
    await shot('start-dialog');
    await dialog.getByRole('button', { name: 'Start run' }).click();
    await page.waitForURL(/\/runs\/[0-9a-f]+$/);
    const runId = page.url().split('/').pop();

    await pausedAt(page, 'Paused before review (breakpoint)');
    await expectText(page.getByTestId('run-status'), 'paused');
    const dot = page.getByTestId('bp-review');
    if ((await dot.getAttribute('aria-pressed')) !== 'true') throw new Error('the breakpoint on review is not shown pressed');
    const inspector = page.getByTestId('state-inspector');
    const draft = inspector.getByTestId('inspect-steps.draft.output');
    await expectText(draft, 'draft');
    // Not yet run: review has nothing to edit.
    if (await inspector.getByTestId('inspect-steps.review.output').count()) throw new Error('the inspector shows a step that has not run');
    await shot('paused');

    await draft.getByRole('button', { name: 'Edit steps.draft.output' }).click();
    const box = draft.getByLabel('steps.draft.output');
    await box.fill('"EDITED');
    await expectText(draft.getByRole('alert'), 'not JSON');
    if (!(await draft.getByRole('button', { name: 'Save' }).isDisabled())) throw new Error('a value that is not JSON may be saved');
    await shot('edit-invalid');
    await box.fill('"EDITED"');
    await draft.locator('.field-error').waitFor({ state: 'detached' });
    await draft.getByRole('button', { name: 'Save' }).click();
    await expectText(draft.getByTestId('value'), 'EDITED');
    const st = await api('GET', `/runs/${runId}/state`);
    if (st.steps.draft.output !== 'EDITED') throw new Error(`the edit did not reach the run: ${JSON.stringify(st.steps.draft)}`);

    // Step: review runs (with the edit), the run stops before polish.
    await page.getByRole('button', { name: 'Step', exact: true }).click();
    await pausedAt(page, 'Paused before polish (stepping)');
    await expectText(inspector.getByTestId('inspect-steps.review.output'), 'review of EDITED');
    await shot('stepped');

    // A breakpoint added on the paused run, from the graph, with the keyboard.
    const publish = page.getByTestId('bp-publish');
    await publish.focus();
    await page.keyboard.press('Enter');
    await page.locator('[data-testid="bp-publish"][aria-pressed="true"]').waitFor();
    const dbg = (await api('GET', `/runs/${runId}`)).debug;
    if (!dbg.breakpoints.includes('publish')) throw new Error(`the server has no breakpoint on publish: ${JSON.stringify(dbg)}`);

    await page.getByRole('button', { name: 'Continue' }).click();
    await pausedAt(page, 'Paused before publish (breakpoint)');
    await shot('at-added-breakpoint');
    await page.getByRole('button', { name: 'Continue' }).click();
    await expectText(page.getByTestId('run-status'), 'succeeded');
    if (await page.getByTestId('debugger-bar').count()) throw new Error('the debugger bar stays on a finished run');
    await page.getByTestId('node-publish').click();
    await expectText(page.getByTestId('node-panel'), 'published polished review of EDITED');
    await shot('done');
    const done = await runEnded(runId);
    if (done.run.outputs !== 'published polished review of EDITED') throw new Error(`the run's output: ${JSON.stringify(done.run.outputs)}`);
  });

  await test(
    'debugger-live-breakpoint-dark',
    async (page, shot) => {
      await signIn(page);
      const run = await api('POST', '/runs', { source: SLOW });
      await page.goto(`${server.url}/runs/${run.id}`);
      await expectText(page.getByTestId('run-status'), 'running');
      // From the node panel, while `wait` sleeps.
      await page.getByTestId('node-last').click();
      const toggle = page.getByTestId('node-panel').getByTestId('bp-panel');
      await toggle.click();
      await page.locator('[data-testid="bp-panel"][aria-pressed="true"]').waitFor();
      await page.locator('[data-testid="bp-last"][aria-pressed="true"]').waitFor();
      await pausedAt(page, 'Paused before last (breakpoint)');
      await expectText(page.getByTestId('state-inspector').getByTestId('inspect-steps.after.output'), 'after the wait');
      await shot('live-breakpoint');
      await page.getByRole('button', { name: 'Continue' }).click();
      await expectText(page.getByTestId('run-status'), 'succeeded');
      const done = await runEnded(run.id);
      if (done.run.outputs !== 'last: after the wait') throw new Error(`the run's output: ${JSON.stringify(done.run.outputs)}`);

      // The builder's "Debug…": stepping from the first step.
      await page.goto(`${server.url}/builder/${NAME}`);
      await page.getByRole('button', { name: 'Debug…' }).click();
      const dialog = page.getByTestId('debug-start');
      await dialog.getByLabel('Pause before every step').check();
      await shot('builder-debug-dialog');
      await dialog.getByRole('button', { name: 'Start run' }).click();
      await page.waitForURL(/\/runs\/[0-9a-f]+$/);
      await pausedAt(page, 'Paused before draft (stepping)');
      await shot('builder-stepping');
    },
    { scheme: 'dark' },
  );

  await test('debugger-hidden-for-a-viewer', async (page, shot) => {
    const viewer = await api('POST', '/keys', { role: 'viewer', name: 'e2e debugger viewer' });
    const run = await api('POST', '/runs', { source: WORKFLOW, breakpoints: ['polish'] });
    for (let i = 0; i < 100 && (await api('GET', `/runs/${run.id}`)).run.status !== 'paused'; i++) await new Promise((r) => setTimeout(r, 100));
    await signIn(page, viewer.key);
    await page.goto(`${server.url}/runs/${run.id}`);
    await expectText(page.getByTestId('run-status'), 'paused');
    await page.getByTestId('node-review').waitFor();
    for (const id of ['debugger-bar', 'state-inspector', 'bp-review']) {
      if (await page.getByTestId(id).count()) throw new Error(`a viewer sees ${id}`);
    }
    await page.goto(`${server.url}/workflows`);
    await page.getByTestId('workflows').waitFor();
    if (await page.getByRole('button', { name: `Run ${NAME}` }).count()) throw new Error('a viewer may start a run from the Workflows page');
    await shot('viewer');
  });
}

// Time travel's browser tests (run by e2e/run.mjs, with its server, helpers and browser): run
// a three-step workflow on the scripted model, pick a middle checkpoint on the run viewer's
// timeline with the keyboard, fork from it with an edited value (a value that is not JSON and
// a model that does not exist are refused), see the fork finish, compare it with its
// parent and see the edited step's difference and the totals; choose two runs on the
// dashboard to compare (dark); compare two runs with 1 MB outputs (the figure is printed).

const WORKFLOW = `version: 1
name: timetravel
agents:
  greeter: { model: scripted/hello, role: greeter }
steps:
  - { id: draft, tool: echo, with: { text: "topic: cats and birds" } }
  - { id: expand, tool: echo, with: { text: "about {{ steps.draft.output }}" } }
  - { id: greet, agent: greeter, prompt: "Say hello to {{ steps.expand.output }}." }
`;

export async function timetravelTests({ test, signIn, server, api, runEnded, expectText }) {
  const parent = await api('POST', '/runs', { source: WORKFLOW });
  const done = await runEnded(parent.id);
  if (done.run.status !== 'succeeded') throw new Error(`the time-travel run is ${done.run.status}: ${done.run.error}`);
  let fork;

  await test('timetravel-fork-and-compare', async (page, shot) => {
    await signIn(page);
    await page.goto(`${server.url}/runs/${parent.id}`);
    await expectText(page.getByTestId('run-status'), 'succeeded');
    // The keyboard: Home picks the first checkpoint (draft started), one down is draft finished.
    const timeline = page.getByTestId('timeline');
    await timeline.focus();
    await page.keyboard.press('End');
    await expectText(page.locator('[data-testid="checkpoint"][aria-selected="true"]'), 'run succeeded');
    await page.keyboard.press('Home');
    await page.keyboard.press('ArrowDown');
    const picked = page.locator('[data-testid="checkpoint"][aria-selected="true"]');
    await expectText(picked, 'draft');
    await expectText(picked, 'finished');
    const seq = Number(await picked.getAttribute('data-seq'));
    // The state as it was then: draft's output, and no expand yet.
    const state = page.getByTestId('tt-state');
    await expectText(state, `At seq ${seq}`);
    await expectText(state.getByTestId('tt-step-draft'), 'topic: cats and birds');
    if (await state.getByTestId('tt-step-expand').count()) throw new Error('the state at draft finished shows expand');
    await shot('timeline');

    await state.getByRole('button', { name: 'Fork from here' }).click();
    const dialog = page.getByTestId('fork-dialog');
    await dialog.waitFor();
    const value = dialog.getByLabel('steps.draft.output');
    // Validated as it is typed.
    await value.fill('"topic: dogs');
    await expectText(dialog.getByRole('alert'), 'not JSON');
    if (!(await dialog.getByRole('button', { name: 'Fork and open' }).isDisabled())) throw new Error('a fork with a value that is not JSON may be sent');
    await shot('fork-invalid');
    await value.fill('"topic: dogs and birds"');
    await dialog.locator('.field-error').waitFor({ state: 'detached' });
    const model = dialog.getByLabel('Model of agent greeter');
    if ((await model.inputValue()) !== 'scripted/hello') throw new Error(`the agent's model shows ${await model.inputValue()}`);
    await expectText(dialog.getByTestId('fork-summary'), '1 change');
    await shot('fork-dialog');
    await dialog.getByRole('button', { name: 'Fork and open' }).click();
    await page.waitForURL((u) => /\/runs\/[0-9a-f]+$/.test(u.pathname) && !u.pathname.endsWith(parent.id));
    fork = page.url().split('/').pop();
    await expectText(page.getByTestId('run-status'), 'succeeded');
    await expectText(page.getByTestId('fork-note'), `at seq ${seq}`);
    const detail = await api('GET', `/runs/${fork}`);
    if (detail.forked_from?.run !== parent.id) throw new Error(`the fork's forked_from is ${JSON.stringify(detail.forked_from)}`);
    const expand = detail.steps.find((s) => s.step === 'expand');
    if (expand?.output !== 'about topic: dogs and birds') throw new Error(`the fork's expand output is ${JSON.stringify(expand?.output)}`);
    await shot('fork-done');

    await page.getByTestId('fork-note').getByRole('link', { name: 'Compare with parent' }).click();
    await page.waitForURL(`**/compare/${parent.id}/${fork}`);
    const draft = page.getByTestId('cmp-step-draft');
    await expectText(draft, 'output differs');
    await expectText(draft.locator('del'), 'cats');
    await expectText(draft.locator('ins'), 'dogs');
    if ((await draft.locator('del').count()) !== 1 || (await draft.locator('ins').count()) !== 1) throw new Error('more than the edited word is marked in draft');
    await expectText(page.getByTestId('cmp-step-expand').locator('ins'), 'dogs');
    await expectText(page.getByTestId('cmp-step-greet'), 'same output');
    await expectText(page.getByTestId('cmp-step-greet'), 'scripted/hello');
    const totals = page.getByTestId('cmp-totals');
    await expectText(totals.getByTestId('total-status'), 'succeeded');
    await expectText(totals.getByTestId('total-tokens'), String(done.tokens));
    await expectText(totals.getByTestId('total-steps'), '3');
    await shot('compare');
  });

  await test('timetravel-compare-from-dashboard-dark', async (page, shot) => {
    if (!fork) throw new Error('the fork test did not fork');
    await signIn(page);
    const recent = page.getByTestId('recent');
    await recent.getByLabel(`Choose run ${parent.id} to compare`).check();
    await expectText(page.getByTestId('compare-bar'), 'choose a second run');
    await recent.getByLabel(`Choose run ${fork} to compare`).check();
    await shot('dashboard');
    await page.getByTestId('compare-bar').getByRole('link', { name: /^Compare/ }).click();
    await page.waitForURL(`**/compare/${parent.id}/${fork}`);
    await expectText(page.getByTestId('cmp-step-draft').locator('ins'), 'dogs');
    await shot('compare');
    // The fork's own timeline starts with the copied log: its first checkpoints are the parent's.
    await page.goto(`${server.url}/runs/${fork}`);
    await page.getByTestId('timeline').focus();
    await page.keyboard.press('Home');
    await expectText(page.locator('[data-testid="checkpoint"][aria-selected="true"]'), 'draft');
    await page.getByRole('button', { name: 'Fork from here' }).click();
    const dialog = page.getByTestId('fork-dialog');
    await dialog.waitFor();
    // A model the server does not know: its refusal is shown in the dialog.
    await dialog.getByLabel('Model of agent greeter').fill('scripted/nope');
    await expectText(dialog.getByTestId('fork-summary'), '1 change');
    await dialog.getByRole('button', { name: 'Fork and open' }).click();
    await expectText(dialog.getByRole('alert'), 'scripted/nope');
    await shot('fork-refused');
    await page.keyboard.press('Escape');
    await page.getByTestId('fork-dialog').waitFor({ state: 'detached' });
    // An unknown run on the compare page says which one.
    await page.goto(`${server.url}/compare/${parent.id}/0123456789abcdef0123456789abcdef`);
    await expectText(page.getByRole('alert'), 'Run B (01234567…cdef)');
    await shot('compare-missing');
  }, { scheme: 'dark', allowErrors: true /* the refused fork's 422 and the unknown run's 404 are logged by the browser */ });

  await test('timetravel-compare-1mb', async (page, shot) => {
    const big = 'lorem ipsum dolor '.repeat(58_000);
    const a = await api('POST', '/runs', { source: `version: 1\nname: bigout\nsteps:\n  - { id: big, tool: echo, with: { text: "${big}" } }\n` });
    const da = await runEnded(a.id);
    const edited = `${big.slice(0, 500_000)}CHANGED${big.slice(500_005)}`;
    const b = await api('POST', `/runs/${a.id}/fork`, { at: da.run.last_seq - 1, set: { 'steps.big.output': edited } });
    await runEnded(b.id);
    await signIn(page);
    const t = Date.now();
    await page.goto(`${server.url}/compare/${a.id}/${b.id}`);
    const row = page.getByTestId('cmp-step-big');
    await expectText(row.getByTestId('cmp-diffnote'), 'only in B');
    const opened = Date.now() - t;
    if (opened > 10_000) throw new Error(`two 1 MB outputs took ${opened} ms to compare`);
    // Drawn cut, from shortly before the change at 500,000 characters.
    await expectText(row.locator('ins'), 'CHANGED');
    await expectText(row.locator('pre').first(), 'characters the same before the first difference');
    const drawn = await row.locator('pre').first().evaluate((el) => el.textContent.length);
    if (drawn > 10_000) throw new Error(`${drawn} characters drawn before "show all"`);
    await shot('cut');
    const t2 = Date.now();
    await row.getByRole('button', { name: 'Show all' }).click();
    await page.waitForFunction(() => document.querySelector('[data-testid="cmp-step-big"] pre').textContent.length > 1_000_000);
    console.log(`timetravel-compare-1mb: two 1 MB outputs compared in ${opened} ms (diff included), show all in ${Date.now() - t2} ms`);
    await shot('all');
  });
}

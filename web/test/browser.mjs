// The UI's browser test, run by test/ui (go test) against a real
// `kubetrail serve` holding the recorded incident
// (internal/investigate/testdata/incident) and one hostile event. It reads
// like a user's steps: open, click, expect. Debian's chromium, driven by
// playwright-core; no browser is ever downloaded.
//
//	KUBETRAIL_URL=http://127.0.0.1:PORT KUBETRAIL_TOKEN=T node test/browser.mjs
//
// SCREENSHOTS=DIR also saves a picture of each page there.
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const base = process.env.KUBETRAIL_URL;
const goodToken = process.env.KUBETRAIL_TOKEN;
const shots = process.env.SCREENSHOTS;
if (!base || !goodToken) throw new Error('set KUBETRAIL_URL and KUBETRAIL_TOKEN');

let failed = 0, passed = 0;
async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}
function expect(cond, what) {
  if (!cond) throw new Error(what);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'], // Playwright gives it a fresh profile
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
context.setDefaultTimeout(15000);
const page = await context.newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e.message}`));

// ready waits until the page's script has drawn it.
async function ready() {
  await page.waitForSelector('main[data-ready="1"]');
}
async function open(path) {
  await page.goto(base + path);
  await ready();
}
async function shot(name, fullPage) {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: !!fullPage });
}
const texts = (sel) => page.locator(sel).allTextContents();

await step('without a token, a page sends the reader to the login page', async () => {
  await page.goto(`${base}/search?q=user%3Dattacker`);
  await page.waitForURL(/\/login\?next=/);
  expect(new URL(page.url()).searchParams.get('next') === '/search?q=user%3Dattacker', `next is ${page.url()}`);
});

await step('a wrong token is refused', async () => {
  await page.getByLabel('Bearer token').fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('The server refused this token.').waitFor();
  expect(new URL(page.url()).pathname === '/login', `left the login page for ${page.url()}`);
  expect(await page.evaluate(() => sessionStorage.getItem('kubetrail.token')) === null, 'kept the wrong token');
  await shot('login');
});

await step('the right token signs in and goes back where the reader was', async () => {
  await page.getByLabel('Bearer token').fill(goodToken);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/search\?q=user%3Dattacker$/);
  await ready();
});

await step('overview: charts, panels, and the denied requests entry opens the attacker\'s 403s', async () => {
  await open('/');
  await page.locator('figure.chart canvas').first().waitFor();
  expect((await page.locator('figure.chart').count()) === 2, 'want two charts');
  const summary = await page.locator('p.summary').textContent();
  expect(/^557 events/.test(summary), `summary: ${summary}`);
  const denied = page.getByRole('region', { name: 'Denied requests' });
  const first = (await denied.locator('tbody tr').first().textContent()) || '';
  expect(first.startsWith('attacker'), `first denied row: ${first}`);
  await shot('overview');
  if (shots) {
    await page.emulateMedia({ colorScheme: 'dark' });
    await open('/');
    await page.locator('figure.chart canvas').first().waitFor();
    await shot('overview-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    await open('/');
  }
  await denied.getByRole('link', { name: 'attacker', exact: true }).click();
  await page.waitForURL(/\/search\?/);
  await ready();
  expect((await page.getByLabel('Filter').inputValue()).includes('user="attacker"'), 'filter names attacker');
  const users = await texts('table.events tbody tr.ev td:nth-child(2)');
  const codes = await texts('table.events tbody tr.ev td:nth-child(7)');
  expect(users.length >= 8, `${users.length} rows`);
  expect(users.every((u) => u === 'attacker'), `users: ${users}`);
  expect(codes.every((c) => c === '403'), `codes: ${codes}`);
});

await step('overview: the chart\'s table opens the events of one bar', async () => {
  await open('/');
  const fig = page.locator('figure.chart', { hasText: 'Events by response code' });
  await fig.locator('summary').click();
  await fig.getByRole('link').filter({ hasText: /^[0-9]+$/ }).first().waitFor();
  const col = (await fig.locator('thead th').allTextContents()).indexOf('403');
  expect(col > 0, 'no 403 column');
  const link = fig.locator(`tbody tr td:nth-child(${col + 1}) a`).first();
  const n = Number(await link.textContent());
  await link.click();
  await page.waitForURL(/\/search\?/);
  await ready();
  const codes = await texts('table.events tbody tr.ev td:nth-child(7)');
  expect(codes.length === n && codes.every((c) => c === '403'), `bar said ${n}, search shows ${codes}`);
});

await step('overview: clicking a bar of the chart opens its search', async () => {
  await open('/');
  const canvas = page.locator('figure.chart', { hasText: 'Events by verb' }).locator('.u-over');
  const box = await canvas.boundingBox();
  // The tallest bars sit at the start of the incident (the API server's
  // bootstrap); click low in the plot, where every bar has a segment.
  let landed = false;
  for (let x = 4; x < box.width && !landed; x += box.width / 40) {
    await page.mouse.click(box.x + x, box.y + box.height - 3);
    landed = await page.waitForURL(/\/search\?/, { timeout: 500 }).then(() => true, () => false);
  }
  expect(landed, 'no bar opened a search');
  await ready();
  const q = await page.getByLabel('Filter').inputValue();
  expect(/^verb/.test(q), `filter ${q}`);
  expect((await page.locator('table.events tbody tr.ev').count()) > 0, 'no events in the bar');
});

await step('overview: dragging across a chart zooms to that range', async () => {
  await open('/');
  const over = page.locator('figure.chart', { hasText: 'Events by verb' }).locator('.u-over');
  const box = await over.boundingBox();
  // From a quarter to three quarters of the plot: about 00:33:01 to 00:33:07.
  await page.mouse.move(box.x + box.width / 4, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + (3 * box.width) / 4, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();
  await page.waitForURL(/\/\?since=.*&until=/);
  await ready();
  const u = new URL(page.url());
  const since = Date.parse(u.searchParams.get('since')), until = Date.parse(u.searchParams.get('until'));
  expect(since > Date.parse('2026-12-05T00:33:00Z') && until < Date.parse('2026-12-05T00:33:09Z') && since < until, `range ${u.search}`);
  const summary = await page.locator('p.summary').textContent();
  const n = Number(summary.split(' ')[0]);
  expect(n > 0 && n < 557, `zoomed summary: ${summary}`);
});

await step('search user=attacker: the attacker\'s events, newest first', async () => {
  await open('/search');
  await page.getByLabel('Filter').fill('user=attacker');
  await page.getByLabel('Filter').press('Enter');
  await page.waitForURL(/q=user%3Dattacker/);
  await ready();
  const users = await texts('table.events tbody tr.ev td:nth-child(2)');
  expect(users.length === 33 && users.every((u) => u === 'attacker'), `${users.length} rows: ${users}`);
  const times = await texts('table.events tbody tr.ev td:nth-child(1)');
  expect(times.every((t, i) => i === 0 || t <= times[i - 1]), 'not newest first');
  await shot('search');
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download JSON lines' }).click()]);
  const lines = readFileSync(await download.path(), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  expect(lines.length === 33 && lines.every((e) => e.user.username === 'attacker' && e.kind === 'Event'), `download: ${lines.length} events`);
});

await step('the ClusterRoleBinding event shows its subject', async () => {
  await open('/search?q=' + encodeURIComponent('resource=clusterrolebindings name=backdoor verb=create'));
  await page.locator('table.events tbody tr.ev').first().getByRole('link').first().click();
  await page.waitForURL(/\/event\//);
  await ready();
  const body = page.locator('details.body', { hasText: 'requestObject' });
  await body.locator('summary').click();
  const json = JSON.parse(await body.locator('pre').textContent());
  expect(json.kind === 'ClusterRoleBinding', `kind ${json.kind}`);
  expect(json.subjects && json.subjects[0].name === 'attacker' && json.roleRef.name === 'cluster-admin', JSON.stringify(json));
  await page.getByText('admin', { exact: true }).first().waitFor();
  await shot('event');
});

await step('the filter completes field names and stored values', async () => {
  await open('/search');
  const input = page.getByLabel('Filter');
  const options = page.getByRole('listbox', { name: 'Completions' }).getByRole('option');
  await input.pressSequentially('us');
  await options.first().waitFor();
  const names = await options.locator('.label').allTextContents();
  expect(names.includes('user') && names.includes('user.uid'), `field options: ${names}`);
  expect(await input.getAttribute('aria-expanded') === 'true', 'combobox not expanded');
  await input.press('ArrowDown');
  expect(await input.getAttribute('aria-activedescendant') !== null, 'no active option');
  await input.press('Enter');
  expect(await input.inputValue() === 'user', `took ${await input.inputValue()}`);
  // Values come from the stats API: the users the store holds.
  await input.pressSequentially('=att');
  // The field list (user.uid, ...) may still show until the values come.
  await options.filter({ hasText: 'attacker' }).first().waitFor();
  expect((await options.allTextContents()).join('|') === 'attacker', `value options: ${await options.allTextContents()}`);
  await shot('search-completion');
  await input.press('Tab');
  expect(await input.inputValue() === 'user=attacker', `took ${await input.inputValue()}`);
  // In a list, and quoted when the value needs it.
  await input.fill('');
  await input.pressSequentially('verb=get ns in (kube-');
  await options.filter({ hasText: 'kube-system' }).first().waitFor();
  expect((await options.allTextContents()).includes('kube-system'), `ns options: ${await options.allTextContents()}`);
  await input.fill('');
  await input.pressSequentially('ua=kubectl/v1');
  await options.filter({ hasText: 'kubectl/v1' }).first().waitFor();
  await input.press('ArrowDown');
  await input.press('Enter');
  expect(await input.inputValue() === 'ua="kubectl/v1.32.4 (linux/amd64) kubernetes/4cb5f07"', `took ${await input.inputValue()}`);
  await input.press('Escape');
  expect(await page.getByRole('listbox', { name: 'Completions' }).isHidden(), 'list still open after Escape');
});

await step('every stored event in one table that draws only the rows in view', async () => {
  await open('/search?q=&limit=100000');
  expect((await page.locator('p.summary').textContent()) === '557 events.', await page.locator('p.summary').textContent());
  const table = page.locator('table.events');
  expect(await table.getAttribute('aria-rowcount') === '558', `aria-rowcount ${await table.getAttribute('aria-rowcount')}`);
  const drawn = await page.locator('table.events tbody tr.ev').count();
  expect(drawn > 10 && drawn < 200, `${drawn} rows in the page for 557 events`);
  // Scrolled to the end, the last rows are the oldest events.
  await page.locator('.rows.virtual').evaluate((el) => { el.scrollTop = el.scrollHeight; });
  await page.waitForFunction(() => [...document.querySelectorAll('table.events tbody tr.ev')].pop()?.getAttribute('aria-rowindex') === '558');
  const times = await texts('table.events tbody tr.ev td:nth-child(1)');
  expect(times.every((t, i) => i === 0 || t <= times[i - 1]), 'not newest first at the end');
  expect(times[times.length - 1] < '2026-12-05T00:33:01', `oldest shown ${times[times.length - 1]}`);
});

await step('search results download as CSV, formulas defused', async () => {
  await open('/search?q=' + encodeURIComponent('user=attacker'));
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
  const rows = readFileSync(await download.path(), 'utf8').trimEnd().split('\r\n');
  expect(rows[0] === 'Audit ID,Time (UTC),User,As,Verb,Resource,Namespace/name,Code,Stage,Source IP,User agent', `head: ${rows[0]}`);
  expect(rows.length === 34 && rows.slice(1).every((r) => r.split(',')[2] === 'attacker'), `${rows.length} rows`);
  await open('/search?q=' + encodeURIComponent('name=settings verb=get'));
  const [d2] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
  const csv = readFileSync(await d2.path(), 'utf8');
  expect(csv.includes(`,"'=HYPERLINK(""http://example.com"",""x"")"\r\n`), `the user agent formula was not defused: ${csv}`);
});

await step('an object\'s history: each request in order, with what it changed', async () => {
  await open('/object/configmaps/production/settings');
  const items = page.locator('ol.history > li');
  expect(await items.count() === 3, `${await items.count()} entries`);
  const verbs = await texts('ol.history > li .verb');
  expect(verbs.join(',') === 'create,update,get', `verbs ${verbs}`);
  const update = items.nth(1);
  expect((await update.textContent()).includes('mallory'), 'the update is not mallory\'s');
  expect((await update.locator('pre.diff .del').allTextContents()).map((t) => t.trim()).join('|') === '-    "mode": "safe"', 'removed line');
  expect((await update.locator('pre.diff .add').allTextContents()).map((t) => t.trim()).join('|') === '+    "mode": "open"', 'added line');
  expect((await items.nth(0).locator('pre.diff').textContent()).includes('"mode": "safe"'), 'the created object is not shown');
  await shot('object');
  await page.getByRole('link', { name: 'Changes only' }).click();
  await page.waitForURL(/reads=0/);
  await ready();
  expect(await page.locator('ol.history > li').count() === 2, 'reads still listed');
});

await step('an event links to its object\'s history', async () => {
  await open('/search?q=' + encodeURIComponent('resource=clusterrolebindings name=backdoor verb=create'));
  await page.locator('table.events tbody tr.ev').first().getByRole('link', { name: 'backdoor' }).click();
  await page.waitForURL(/\/object\/clusterrolebindings\/backdoor$/);
  await ready();
  const verbs = await texts('ol.history > li .verb');
  expect(verbs[0] === 'create' && verbs.includes('delete'), `verbs ${verbs}`);
  expect((await page.locator('ol.history > li').first().textContent()).includes('admin'), 'the creator is not admin');
});

await step('an update\'s event shows the diff against the object\'s previous recorded version', async () => {
  // mallory's update of configmap settings (testdata/object.jsonl), after admin's create.
  await open('/event/0b1ec7a1-0000-4000-8000-000000000002');
  const sec = page.getByRole('region', { name: 'What this change did' });
  await sec.locator('pre.diff').waitFor();
  expect((await sec.textContent()).includes('The diff against the previous recorded version'), await sec.textContent());
  const del = (await sec.locator('pre.diff .del').allTextContents()).map((t) => t.trim());
  const add = (await sec.locator('pre.diff .add').allTextContents()).map((t) => t.trim());
  expect(del.join('|') === '-    "mode": "safe"' && add.join('|') === '+    "mode": "open"', `removed ${del}, added ${add}`);
  await shot('event-diff');
  await sec.getByRole('link', { name: 'The history of configmaps/settings' }).click();
  await page.waitForURL(/\/object\/configmaps\/production\/settings$/);
  await ready();
  // A create has no such section; a patch logged without its response shows the patch.
  await page.locator('ol.history > li').first().getByRole('link', { name: 'event' }).click();
  await page.waitForURL(/\/event\//);
  await ready();
  expect((await page.locator('h2').first().textContent()).length > 0, 'the create\'s event is not shown');
  expect(await page.getByRole('region', { name: 'What this change did' }).count() === 0, 'a create shows a change section');
  await open('/event/e9879070-7013-4431-bb91-600cd605a6a3');
  const patch = page.getByRole('region', { name: 'What this change did' });
  await patch.getByText('the patch it sent').waitFor();
  expect(await patch.locator('pre.diff').count() === 0, 'a diff for a patch whose response was not logged');
});

await step('an update with no earlier body recorded says so', async () => {
  // The history the server gives when the object's earlier versions were
  // logged without their bodies: the update's object, whole, as first seen.
  await page.route('**/api/v1/investigate/history?*', (r) => r.fulfill({ status: 200, contentType: 'application/json',
    body: JSON.stringify({ records: [{ time: '2026-12-05T00:33:06.000Z', auditID: '0b1ec7a1-0000-4000-8000-000000000002', verb: 'update',
      body: 'responseObject', diff: '@@ -0,0 +1,3 @@\n+{\n+  "kind": "ConfigMap"\n+}' }] }) }));
  try {
    await open('/event/0b1ec7a1-0000-4000-8000-000000000002');
    const sec = page.getByRole('region', { name: 'What this change did' });
    await sec.getByText('No previous body of this object was recorded').waitFor();
    expect(!(await sec.textContent()).includes('The diff against the previous'), 'calls the whole object a diff');
  } finally {
    await page.unroute('**/api/v1/investigate/history?*');
  }
});

await step('keyboard only: search, then open a result', async () => {
  await open('/search');
  // The empty search page puts the cursor in the filter.
  await page.keyboard.type('user=attacker verb=delete');
  await page.keyboard.press('Enter');
  await page.waitForURL(/q=user%3Dattacker/);
  await ready();
  // Tab from the last download button to the first result's link.
  await page.getByRole('button', { name: 'Download CSV' }).focus();
  await page.keyboard.press('Tab');
  expect(await page.evaluate(() => document.activeElement.closest('table.events') !== null), 'focus did not reach the results');
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/event\//);
  await ready();
});

await step('every input and select has a label', async () => {
  for (const path of ['/', '/search?q=user%3Dattacker', '/alerts', '/object/configmaps/production/settings', '/policy']) {
    await open(path);
    const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select')]
      .filter((el) => el.labels.length === 0 && !el.getAttribute('aria-label')).map((el) => el.name));
    expect(unlabelled.length === 0, `${path}: unlabelled ${unlabelled}`);
  }
});

await step('a filter error is shown at its column', async () => {
  await open('/search?q=' + encodeURIComponent('verb=get usr=x'));
  const err = page.locator('.filter-error');
  await err.waitFor();
  const text = await err.textContent();
  expect(text.includes('unknown field "usr"'), text);
  expect((await err.locator('pre').textContent()).endsWith('\n         ^'), 'caret not under column 10');
  expect(await page.getByLabel('Filter').getAttribute('aria-invalid') === 'true', 'input not marked invalid');
});

await step('/user/attacker: the timeline, in order', async () => {
  await open('/user/attacker');
  const items = await texts('ol.timeline li .sentence');
  const times = await texts('ol.timeline li time');
  expect(items[0] === 'attacker was denied list secrets in production 6 times in 217 ms', `first: ${items[0]}`);
  const grant = items.indexOf('admin created clusterrolebinding backdoor granting cluster-admin to attacker');
  const read = items.indexOf('attacker read secret db-creds in production');
  expect(grant > 0 && read > grant, `grant at ${grant}, read at ${read}: ${items.join(' | ')}`);
  expect(times.every((t, i) => i === 0 || t >= times[i - 1]), `times out of order: ${times}`);
  await shot('user');
});

await step('alerts: detection\'s alerts, each opening its events', async () => {
  await open('/alerts');
  const rules = await texts('table.alerts tbody td:nth-child(3)');
  expect(rules.includes('Binding to cluster-admin'), `rules: ${rules}`);
  await shot('alerts', true);
  await page.locator('table.alerts tr', { hasText: 'Binding to cluster-admin' }).getByRole('link', { name: 'event' }).click();
  await page.waitForURL(/\/event\//);
  await ready();
  expect((await page.locator('h2').count()) >= 1, 'no event shown');
});

await step('alerts: the chart by severity counts the list, and a bar opens its events', async () => {
  await open('/alerts');
  const fig = page.locator('figure.chart', { hasText: 'Alerts by severity' });
  await fig.locator('canvas').waitFor();
  const table = fig.locator('details.as-table');
  await table.locator('summary').click();
  const heads = await table.locator('thead th').allTextContents();
  const listed = await texts('table.alerts tbody td:nth-child(2)');
  for (const sev of ['critical', 'high', 'medium', 'low', 'info']) {
    const col = heads.indexOf(sev);
    expect(col > 0, `no ${sev} column: ${heads}`);
    const sum = (await table.locator(`tbody tr td:nth-child(${col + 1})`).allTextContents()).reduce((a, t) => a + Number(t || 0), 0);
    const want = listed.filter((s) => s === sev).length;
    expect(sum === want, `${sev}: the chart counts ${sum}, the list ${want}`);
  }
  const link = table.locator('tbody a').first();
  await link.click();
  await page.waitForURL(/\/(search|event)\b/);
  await ready();
  expect((await page.locator('table.events tbody tr.ev, section.event').count()) > 0, 'the bar opened no event');
});

await step('alerts: the count of a rule opens the list of its alerts', async () => {
  await open('/alerts');
  const row = page.locator('table.by-rule tbody tr', { hasText: 'Binding to cluster-admin' });
  const n = Number(await row.locator('td').textContent());
  const total = (await texts('table.alerts tbody tr')).length;
  expect(n > 0 && n < total, `${n} of ${total} alerts`);
  await row.getByRole('link').click();
  await page.waitForURL(/rule=Binding/);
  await ready();
  const rules = await texts('table.alerts tbody td:nth-child(3)');
  expect(rules.length === n && rules.every((r) => r === 'Binding to cluster-admin'), `listed ${rules}`);
});

await step('with no alerts on the server, the alerts page and the overview say why', async () => {
  // The answers of serve --detect=false (internal/server/alerts.go) and
  // of serve --store clickhouse:// without an alert store in its --data
  // (alertsdir.go): the page shows the server's reason.
  for (const why of ['detection is off on this server (serve --detect=false): it stores no alert',
    'no alert store in /d/alerts: with ClickHouse, rules run in kubetrail detect --follow --store URL --data DIR, which keeps its alerts in DIR/alerts; give serve the same --data to list them here']) {
    await page.route('**/api/v1/alerts?*', (r) => r.fulfill({ status: 404, contentType: 'application/json', body: JSON.stringify({ error: why }) + '\n' }));
    try {
      await open('/alerts');
      await page.getByText(`No alerts here: ${why}.`).waitFor();
      await open('/');
      await page.getByRole('region', { name: 'Latest alerts' }).getByText(`No alerts here: ${why}.`).waitFor();
    } finally {
      await page.unroute('**/api/v1/alerts?*'); // the steps after this one see the real API
    }
  }
});

await step('hostile text in an event renders as text', async () => {
  // The Go test stored an event whose user agent and object name are markup.
  await open('/search?q=' + encodeURIComponent('ua~"<script>"'));
  const ua = await texts('table.events tbody td.ua');
  const name = await texts('table.events tbody tr.ev td:nth-child(6)');
  expect(ua.length === 1 && ua[0] === '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">', `ua cell: ${ua}`);
  expect(name[0] === 'default/<img src=x onerror="window.__pwned=3">', `name cell: ${name}`);
  expect(await page.locator('main img, main script').count() === 0, 'markup from the event became elements');
  await page.locator('table.events tbody tr.ev').first().getByRole('link').first().click();
  await page.waitForURL(/\/event\//);
  await ready();
  expect((await page.locator('main').textContent()).includes('<script>window.__pwned=1</script>'), 'event page lacks the text');
  expect(await page.locator('main img, main script').count() === 0, 'markup became elements on the event page');
  expect(await page.evaluate(() => window.__pwned) === undefined, 'the hostile markup ran');
});

await step('follow: a live event appears without reloading', async () => {
  await open('/search?q=' + encodeURIComponent('user=follower') + '&follow=1');
  await page.getByText(/Following: new events appear/).waitFor();
  const ev = { kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Metadata', auditID: 'f0110000-0000-4000-8000-000000000001',
    stage: 'ResponseComplete', requestURI: '/api/v1/namespaces', verb: 'list', user: { username: 'follower' },
    sourceIPs: ['127.0.0.1'], responseStatus: { metadata: {}, code: 200 },
    requestReceivedTimestamp: new Date().toISOString(), stageTimestamp: new Date().toISOString() };
  const res = await fetch(`${base}/ingest/webhook`, { method: 'POST', headers: { Authorization: `Bearer ${goodToken}`, 'Content-Type': 'application/json' }, body: JSON.stringify(ev) });
  expect(res.ok, `webhook ${res.status}`);
  await page.locator('table.events tbody tr.ev', { hasText: 'follower' }).waitFor({ timeout: 10000 });
  expect(/^1 events; following/.test(await page.locator('p.summary').textContent()), await page.locator('p.summary').textContent());
  await page.getByRole('button', { name: 'Stop following' }).click();
  await page.getByText(/following ended/).waitFor();
});

await step('policy: a pasted policy\'s finding at its line, a request explained, the stored events simulated', async () => {
  // Secrets at RequestResponse: policy check's secrets-above-metadata, at rule 1 (line 6).
  const pol = ['apiVersion: audit.k8s.io/v1', 'kind: Policy', 'rules:', '  - level: None', '    users: ["system:kube-proxy"]',
    '  - level: RequestResponse', '    resources:', '      - group: ""', '        resources: ["secrets"]', '  - level: Metadata', ''].join('\n');
  await open('/policy');
  await page.getByLabel('Audit policy').fill(pol);
  await page.getByRole('button', { name: 'Check' }).click();
  const finding = page.locator('ul.findings li', { hasText: 'secrets-above-metadata' });
  await finding.waitFor();
  const where = await finding.locator('.where').textContent();
  expect(where === '6:5', `the finding is at ${where}, want 6:5`);
  await finding.locator('.where').click();
  const at = await page.evaluate(() => {
    const t = document.getElementById('policy-text');
    const before = t.value.slice(0, t.selectionStart).split('\n');
    return { focused: document.activeElement === t, line: before.length, column: before[before.length - 1].length + 1 };
  });
  expect(at.focused && at.line === 6 && at.column === 5, `caret at ${JSON.stringify(at)}, want 6:5 in the policy`);

  await page.getByLabel('User').fill('attacker');
  await page.getByLabel('Resource').fill('secrets');
  await page.getByLabel('Namespace').fill('production');
  await page.getByRole('button', { name: 'Explain' }).click();
  const decision = page.locator('.policy-explain .decision');
  await decision.waitFor();
  const said = await decision.textContent();
  expect(said.startsWith('Rule 1 (line 6) decides: level RequestResponse.'), said);
  expect((await texts('.policy-explain ul.misses li')).some((m) => m.startsWith('rule 0 (line 4): users')), 'rule 0 not said to miss on users');

  await page.getByLabel('Since').fill('2000-01-01T00:00:00Z');
  await page.getByRole('button', { name: 'Simulate' }).click();
  await page.locator('table.by-rule').waitFor();
  const rules = await texts('table.by-rule tbody th');
  const counts = (await texts('table.by-rule tbody td:nth-child(2)')).map(Number);
  expect(rules.includes('rule 1 (line 6)') && rules.includes('rule 2 (line 10)'), `rules: ${rules}`);
  expect(counts.every((n) => n > 0) && counts.reduce((a, b) => a + b, 0) > 500, `volume per rule: ${counts}`);
  expect((await texts('table.by-level tbody th')).includes('RequestResponse'), 'no RequestResponse level');
  expect((await page.locator('.policy-simulate').textContent()).includes('would be logged with their contents'), 'the secrets warning is missing');
  await shot('policy', true);
});

await step('signing out forgets the token', async () => {
  await open('/');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/login$/);
  await page.goto(`${base}/alerts`);
  await page.waitForURL(/\/login\?next=%2Falerts/);
});

await step('no Content-Security-Policy violation and no script error on any page', async () => {
  const bad = consoleErrors.filter((m) => /Content Security Policy|Refused to|uncaught/i.test(m));
  expect(bad.length === 0, bad.join('\n'));
});

await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

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
async function shot(name) {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`) });
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
  expect(/^554 events/.test(summary), `summary: ${summary}`);
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
  const users = await texts('table.events tbody td:nth-child(2)');
  const codes = await texts('table.events tbody td:nth-child(7)');
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
  const codes = await texts('table.events tbody td:nth-child(7)');
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
  expect((await page.locator('table.events tbody tr').count()) > 0, 'no events in the bar');
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
  expect(n > 0 && n < 554, `zoomed summary: ${summary}`);
});

await step('search user=attacker: the attacker\'s events, newest first', async () => {
  await open('/search');
  await page.getByLabel('Filter').fill('user=attacker');
  await page.getByLabel('Filter').press('Enter');
  await page.waitForURL(/q=user%3Dattacker/);
  await ready();
  const users = await texts('table.events tbody td:nth-child(2)');
  expect(users.length === 33 && users.every((u) => u === 'attacker'), `${users.length} rows: ${users}`);
  const times = await texts('table.events tbody td:nth-child(1)');
  expect(times.every((t, i) => i === 0 || t <= times[i - 1]), 'not newest first');
  await shot('search');
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download JSON lines' }).click()]);
  const lines = readFileSync(await download.path(), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  expect(lines.length === 33 && lines.every((e) => e.user.username === 'attacker' && e.kind === 'Event'), `download: ${lines.length} events`);
});

await step('the ClusterRoleBinding event shows its subject', async () => {
  await open('/search?q=' + encodeURIComponent('resource=clusterrolebindings name=backdoor verb=create'));
  await page.locator('table.events tbody tr').first().getByRole('link').first().click();
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

await step('keyboard only: search, then open a result', async () => {
  await open('/search');
  // The empty search page puts the cursor in the filter.
  await page.keyboard.type('user=attacker verb=delete');
  await page.keyboard.press('Enter');
  await page.waitForURL(/q=user%3Dattacker/);
  await ready();
  // Tab from the download button to the first result's link.
  await page.getByRole('button', { name: 'Download JSON lines' }).focus();
  await page.keyboard.press('Tab');
  expect(await page.evaluate(() => document.activeElement.closest('table.events') !== null), 'focus did not reach the results');
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/event\//);
  await ready();
});

await step('every input and select has a label', async () => {
  for (const path of ['/', '/search?q=user%3Dattacker', '/alerts']) {
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
  const rules = await texts('table tbody td:nth-child(3)');
  expect(rules.includes('Binding to cluster-admin'), `rules: ${rules}`);
  await shot('alerts');
  await page.locator('tr', { hasText: 'Binding to cluster-admin' }).getByRole('link', { name: 'event' }).click();
  await page.waitForURL(/\/event\//);
  await ready();
  expect((await page.locator('h2').count()) >= 1, 'no event shown');
});

await step('with detection off, the alerts page and the overview say so', async () => {
  // The answer serve --detect=false gives (internal/server/alerts.go).
  await page.route('**/api/v1/alerts?*', (r) => r.fulfill({ status: 404, contentType: 'application/json',
    body: '{"error":"detection is off on this server (serve --detect=false): it stores no alert"}\n' }));
  try {
    await open('/alerts');
    await page.getByText('Detection is off on this server (serve --detect=false), so it keeps no alerts.').waitFor();
    await open('/');
    await page.getByRole('region', { name: 'Latest alerts' }).getByText('Detection is off on this server: it keeps no alerts.').waitFor();
  } finally {
    await page.unroute('**/api/v1/alerts?*'); // the steps after this one see the real API
  }
});

await step('hostile text in an event renders as text', async () => {
  // The Go test stored an event whose user agent and object name are markup.
  await open('/search?q=' + encodeURIComponent('ua~"<script>"'));
  const ua = await texts('table.events tbody td.ua');
  const name = await texts('table.events tbody td:nth-child(6)');
  expect(ua.length === 1 && ua[0] === '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">', `ua cell: ${ua}`);
  expect(name[0] === 'default/<img src=x onerror="window.__pwned=3">', `name cell: ${name}`);
  expect(await page.locator('main img, main script').count() === 0, 'markup from the event became elements');
  await page.locator('table.events tbody tr').first().getByRole('link').first().click();
  await page.waitForURL(/\/event\//);
  await ready();
  expect((await page.locator('main').textContent()).includes('<script>window.__pwned=1</script>'), 'event page lacks the text');
  expect(await page.locator('main img, main script').count() === 0, 'markup became elements on the event page');
  expect(await page.evaluate(() => window.__pwned) === undefined, 'the hostile markup ran');
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

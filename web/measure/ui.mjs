// Measures the web UI's pages in Debian's Chromium for the bench
// (bench/run/ui.go, `make bench`; never CI): for each page, the time from
// the navigation to the page drawn (the UI's performance mark
// "kubetrail:ready", set when main[data-ready] is), and each API answer
// behind it (the Performance API's resource entries: request start to
// the last byte), medians of RUNS fresh loads. For the scroll page, it
// then scrolls the results from the top to the end in 40 steps, each
// waiting two frames, and reports the median and the slowest step.
//
//	KUBETRAIL_URL=http://127.0.0.1:PORT PAGES='[{"name":"overview","path":"/"}]' RUNS=5 node measure/ui.mjs
//
// It prints one JSON object: {"pages":[{"name","path","ms","api":[{"url","ms"}],"rows","medianStepMs","worstStepMs"}]}.
import { chromium } from 'playwright-core';

const base = process.env.KUBETRAIL_URL;
const pages = JSON.parse(process.env.PAGES || '[]');
const runs = Number(process.env.RUNS || 5);
if (!base || !pages.length) throw new Error('set KUBETRAIL_URL and PAGES');

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : 0;
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const out = [];
for (const p of pages) {
  const times = [], api = new Map();
  let rows = 0, typical = 0, worst = 0;
  for (let i = 0; i < runs; i++) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(300000);
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(base + p.path);
    await page.waitForSelector('main[data-ready="1"]');
    const m = await page.evaluate(() => ({
      ready: performance.getEntriesByName('kubetrail:ready')[0].startTime,
      api: performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/'))
        .map((e) => ({ url: e.name.replace(location.origin, ''), ms: e.responseEnd - e.requestStart })),
      error: document.querySelector('main .status.error, main .filter-error')?.textContent || '',
    }));
    if (m.error || errors.length) throw new Error(`${p.path}: ${m.error || errors.join('; ')}`);
    times.push(m.ready);
    for (const a of m.api) api.set(a.url, [...(api.get(a.url) || []), a.ms]);
    if (p.scroll && i === 0) {
      rows = Number(await page.locator('table.events').getAttribute('aria-rowcount')) - 1;
      // Scroll in 40 steps from the top to the end, a frame each, and
      // keep the slowest frame.
      [typical, worst] = await page.locator('.rows').evaluate(async (el) => {
        const steps = [];
        for (let k = 1; k <= 40; k++) {
          const t0 = performance.now();
          el.scrollTop = (el.scrollHeight * k) / 40;
          await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
          steps.push(performance.now() - t0);
        }
        steps.sort((a, b) => a - b);
        return [steps[19], steps[39]];
      });
    }
    await context.close();
  }
  out.push({ name: p.name, path: p.path, ms: median(times), rows, medianStepMs: typical, worstStepMs: worst,
    api: [...api].map(([url, ms]) => ({ url, ms: median(ms) })) });
}
await browser.close();
console.log(JSON.stringify({ pages: out }));

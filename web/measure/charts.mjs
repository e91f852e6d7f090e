// Measures the two candidate chart libraries for docs/adr/0014: the size of
// a minified bundle drawing one stacked time chart, and the time Chromium
// takes to draw 10,000 time buckets x 8 stacked series with each. Not part
// of the build or of CI. Run it in a scratch folder:
//
//	npm install --no-save esbuild@0.28.2 playwright-core@1.65.2 uplot@1.6.32 echarts@6.1.0
//	cp measure/charts.mjs . && node charts.mjs
import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';

const N = 10000, K = 8, RUNS = 7;

// Both draw the same data: K series of N points, stacked.
const data = `
  const N = ${N}, K = ${K};
  const xs = new Float64Array(N), ys = [];
  for (let i = 0; i < N; i++) xs[i] = 1700000000 + i * 60;
  let seed = 1;
  const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  for (let k = 0; k < K; k++) { const y = new Array(N); for (let i = 0; i < N; i++) y[i] = Math.round(rnd() * 100); ys.push(y); }
`;
// Each library draws it twice: as stacked bars, and as stacked areas (what
// a chart wider than its pixels turns into); ECharts also as a tree-shaken
// build (echarts/core with only what the chart needs).
const uplot = (bars) => `import uPlot from 'uplot';
    ${data}
    window.draw = (el) => {
      // Stack by cumulative sums, top series drawn first (as the UI does).
      const cum = []; let acc = new Array(N).fill(0);
      for (let k = 0; k < K; k++) { acc = acc.map((v, i) => v + ys[k][i]); cum.push(acc); }
      const series = [{}], d = [Array.from(xs)];
      for (let k = K - 1; k >= 0; k--) { series.push({ label: 's' + k, stroke: '#000', fill: 'hsl(' + k * 40 + ',60%,60%)', ${bars ? "paths: uPlot.paths.bars({ size: [1, Infinity] })" : ''} }); d.push(cum[k]); }
      return new uPlot({ width: 1200, height: 300, series }, d, el);
    };`;
const echartsOf = (bars, imports) => `${imports}
    ${data}
    window.draw = (el) => {
      const c = echarts.init(el, null, { renderer: 'canvas', width: 1200, height: 300 });
      c.setOption({ animation: false, xAxis: { type: 'time' }, yAxis: { type: 'value' }, tooltip: { trigger: 'axis' },
        series: ys.map((y, k) => ({ type: ${bars ? "'bar', large: true" : "'line', areaStyle: {}, showSymbol: false"}, stack: 'all', name: 's' + k, data: y.map((v, i) => [xs[i] * 1000, v]) })) });
      return c;
    };`;
const full = "import * as echarts from 'echarts';";
const core = `import * as echarts from 'echarts/core';
  import { BarChart, LineChart } from 'echarts/charts';
  import { GridComponent, TooltipComponent } from 'echarts/components';
  import { CanvasRenderer } from 'echarts/renderers';
  echarts.use([BarChart, LineChart, GridComponent, TooltipComponent, CanvasRenderer]);`;
const entries = {
  'uplot bars': uplot(true), 'uplot areas': uplot(false),
  'echarts bars': echartsOf(true, full), 'echarts areas': echartsOf(false, full),
  'echarts/core bars': echartsOf(true, core), 'echarts/core areas': echartsOf(false, core),
};

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
for (const [name, contents] of Object.entries(entries)) {
  const out = await esbuild.build({ stdin: { contents, resolveDir: process.cwd() }, bundle: true, minify: true, write: false, format: 'iife', legalComments: 'none' });
  const js = out.outputFiles[0].contents;
  const css = name.startsWith('uplot') ? readFileSync('node_modules/uplot/dist/uPlot.min.css', 'utf8') : '';
  const times = [];
  for (let r = 0; r < RUNS; r++) {
    const page = await browser.newPage();
    await page.setContent('<div id=c></div>');
    if (css) await page.addStyleTag({ content: css });
    await page.addScriptTag({ content: Buffer.from(js).toString() });
    // Time from the call to the end of the next frame, so drawing counts.
    times.push(await page.evaluate(() => new Promise((done) => {
      const t0 = performance.now();
      window.draw(document.getElementById('c'));
      requestAnimationFrame(() => setTimeout(() => done(performance.now() - t0), 0));
    })));
    await page.close();
  }
  times.sort((a, b) => a - b);
  console.log(`${name}: bundle ${js.length} B minified, ${gzipSync(js).length} B gzip (+ ${css.length} B css); ` +
    `draw ${N}x${K} stacked: median ${times[RUNS >> 1].toFixed(1)} ms, min ${times[0].toFixed(1)}, max ${times[RUNS - 1].toFixed(1)} (${RUNS} runs)`);
}
await browser.close();

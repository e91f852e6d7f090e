// Stacked bar charts of counts over time (uPlot; docs/adr/0014), each
// with the same numbers as a table of links for keyboard and screen
// reader users: every bar segment and every cell opens its search.
import uPlot from 'uplot';
import { h } from './dom.js';

// The Okabe-Ito palette: told apart with every common colour-vision
// deficiency. Grey is the eighth colour (Okabe-Ito's black, which would
// vanish on a dark background).
export const palette = ['#0072B2', '#56B4E9', '#009E73', '#E69F00', '#F0E442', '#D55E00', '#CC79A7', '#999999'];

// Bucket widths the charts choose from: the smallest that gives at most
// maxBuckets bars.
const steps = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200, 86400, 7 * 86400, 30 * 86400].map((s) => s * 1000);
const maxBuckets = 120;

// timeBuckets cuts [from, to) (ms) into bars: their width (ms) and start
// times, the first aligned to a multiple of the width.
export function timeBuckets(from, to) {
  const interval = steps.find((s) => (to - from) / s <= maxBuckets) || steps[steps.length - 1];
  const buckets = [];
  for (let b = Math.floor(from / interval) * interval; b < to; b += interval) buckets.push(b);
  return { interval, buckets };
}

function cssVar(name) {
  return getComputedStyle(document.body).getPropertyValue(name).trim() || '#888';
}

// stackedChart draws series (each {label, color, values}, one value per
// bucket; buckets are start times in ms, interval ms wide) stacked in the
// order given, the first at the bottom. pick(series, bucket) is the link
// for one segment; zoom(fromMs, toMs) is called when a range is dragged.
export function stackedChart({ title, buckets, interval, series, pick, zoom }) {
  const fig = h('figure', { class: 'chart' });
  const caption = h('figcaption', {}, title);
  const plot = h('div', { class: 'plot', role: 'img', 'aria-label': `${title}: a stacked bar chart; the table below holds the same numbers` });
  fig.append(caption, plot);

  // uPlot has no stacking: draw cumulative sums, the tallest first, so
  // each series' visible part is its own count.
  const cum = [];
  let acc = buckets.map(() => 0);
  for (const s of series) {
    acc = acc.map((v, i) => v + s.values[i]);
    cum.push(acc);
  }
  const xs = buckets.map((b) => (b + interval / 2) / 1000); // bar centres, seconds
  const fg = cssVar('--fg'), grid = cssVar('--grid');
  const opts = {
    width: 800,
    height: 240,
    scales: { x: { time: true, range: () => [buckets[0] / 1000, (buckets[buckets.length - 1] + interval) / 1000] } },
    axes: [{ stroke: fg, grid: { stroke: grid } }, { stroke: fg, grid: { stroke: grid } }],
    cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false } },
    legend: { live: true },
    series: [{ value: (u, v, si, idx) => (idx == null ? '' : new Date(buckets[idx]).toISOString()) }],
    hooks: { setSelect: [] },
  };
  const data = [xs];
  for (let k = series.length - 1; k >= 0; k--) {
    const s = series[k];
    opts.series.push({
      label: s.label,
      stroke: s.color,
      fill: s.color,
      width: 0,
      points: { show: false },
      paths: uPlot.paths.bars({ size: [0.9, 80], gap: 1 }),
      value: (u, v, si, idx) => (idx == null ? '–' : String(s.values[idx])),
    });
    data.push(cum[k]);
  }
  // A drag zooms; a click (no drag) opens the segment under the pointer.
  let down = null;
  opts.hooks.setSelect.push((u) => {
    if (u.select.width > 4 && zoom) {
      const from = u.posToVal(u.select.left, 'x') * 1000, to = u.posToVal(u.select.left + u.select.width, 'x') * 1000;
      zoom(from, to);
    }
  });
  const u = new uPlot(opts, data, plot);
  u.over.addEventListener('mousedown', (e) => { down = [e.clientX, e.clientY]; });
  u.over.addEventListener('click', (e) => {
    if (!down || Math.abs(e.clientX - down[0]) > 4) return;
    const idx = u.cursor.idx;
    if (idx == null) return;
    const y = u.posToVal(u.cursor.top, 'y');
    for (let k = 0; k < series.length; k++) {
      const lo = k === 0 ? 0 : cum[k - 1][idx];
      if (y >= lo && y < cum[k][idx] && series[k].values[idx] > 0) {
        location.assign(pick(k, idx));
        return;
      }
    }
  });
  // Follow the width of the page.
  const fit = () => u.setSize({ width: Math.max(300, plot.clientWidth), height: 240 });
  new ResizeObserver(fit).observe(plot);

  fig.append(chartTable(title, buckets, series, pick));
  return fig;
}

// chartTable is the chart as a table: a row per bucket with events, a
// column per series, each count a link to its search.
function chartTable(title, buckets, series, pick) {
  const head = h('tr', {}, h('th', { scope: 'col' }, 'Time (UTC)'), series.map((s) => h('th', { scope: 'col' }, s.label)));
  const rows = [];
  buckets.forEach((b, i) => {
    if (!series.some((s) => s.values[i] > 0)) return;
    rows.push(h('tr', {},
      h('th', { scope: 'row' }, new Date(b).toISOString()),
      series.map((s, k) => h('td', { class: 'num' }, s.values[i] > 0 ? h('a', { href: pick(k, i) }, s.values[i]) : ''))));
  });
  return h('details', { class: 'as-table' },
    h('summary', {}, `${title} as a table`),
    h('table', {}, h('caption', {}, title), h('thead', {}, head), h('tbody', {}, rows)));
}

// The overview (/): events over time by verb and by response code, the
// busiest users and resources, denied requests, secret access and exec
// sessions by people, and the latest alerts. Every bar and row opens the
// search of the events behind it.
import { getJSON, getLines, APIError } from '../api.js';
import { h, quote, searchLink, status, url, userLabel, fmtTime } from '../dom.js';
import { stackedChart, palette, timeBuckets } from '../chart.js';

// Filters of the panels, in the filter language (docs/query.md).
export const filters = {
  denied: '(code in (401,403) or decision=forbid)',
  secrets: 'resource=secrets user!~"^system:"',
  execs: 'subresource in (exec,attach,portforward)',
};

const verbs = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];
const verbSeries = [
  ...verbs.map((v) => ({ label: v, filter: `verb=${v}`, has: (k) => k === v })),
  { label: 'other', filter: `verb not in (${verbs.join(',')})`, has: (k) => !verbs.includes(k) },
];
const codeSeries = [
  { label: '2xx', filter: 'code>=200 code<300', has: (c) => c >= 200 && c < 300 },
  { label: '3xx', filter: 'code>=300 code<400', has: (c) => c >= 300 && c < 400 },
  { label: '401', filter: 'code=401', has: (c) => c === 401 },
  { label: '403', filter: 'code=403', has: (c) => c === 403 },
  { label: 'other 4xx', filter: 'code>=400 code<500 code not in (401,403)', has: (c) => c >= 400 && c < 500 && c !== 401 && c !== 403 },
  { label: '5xx', filter: 'code>=500', has: (c) => c >= 500 },
  { label: 'no code', filter: 'not code>0', has: (c) => !(c > 0) },
];
const codeColors = ['#009E73', '#56B4E9', '#E69F00', '#D55E00', '#F0E442', '#CC79A7', '#999999'];

// endOf is the inclusive end of [from, to) for the API's until (inclusive,
// in microseconds): the last microsecond before to.
export function endOf(toMs) {
  return new Date(toMs - 1).toISOString().replace('Z', '999Z');
}

// extent finds when the selected events happened: an hourly count, then
// by the second when they all fall in a few hours.
async function extent(since, until) {
  const span = (groups) => {
    const ts = groups.map((g) => Date.parse(g.time));
    return ts.length ? [Math.min(...ts), Math.max(...ts)] : null;
  };
  const hourly = (await getJSON('/api/v1/stats', { interval: '1h', since, until })).body;
  const s = span(hourly.groups);
  if (!s) return null;
  if (s[1] - s[0] > 2 * 3600e3) return [s[0], s[1] + 3600e3];
  const fine = (await getJSON('/api/v1/stats', { interval: '1s', since: since || new Date(s[0]).toISOString(), until: until || endOf(s[1] + 3600e3) })).body;
  const f = span(fine.groups) || s;
  return [f[0], f[1] + 1000];
}

function rangeForm(since, until) {
  const preset = (label, s) => h('li', {}, h('a', { href: url('/', { since: s }), 'aria-current': since === s && !until ? 'true' : null }, label));
  return h('form', { class: 'range', action: '/', method: 'get' },
    h('label', {}, 'Since ', h('input', { name: 'since', value: since, placeholder: '24h or 2026-12-05T00:00:00Z', size: 24 })),
    h('label', {}, 'Until ', h('input', { name: 'until', value: until, placeholder: 'now', size: 24 })),
    h('button', { type: 'submit' }, 'Show'),
    h('ul', { class: 'presets', 'aria-label': 'Ranges' }, preset('All', ''), preset('Last hour', '1h'), preset('24 hours', '24h'), preset('7 days', '7d'), preset('30 days', '30d')));
}

// topPanel is a table of the largest groups of one stats question.
async function topPanel({ title, by, filter, since, until, label, link, empty }) {
  const sec = h('section', { class: 'panel', 'aria-label': title }, h('h2', {}, title));
  try {
    const ans = (await getJSON('/api/v1/stats', { by, filter, since, until, top: 10 })).body;
    if (!ans.groups.length) {
      sec.append(h('p', { class: 'empty' }, empty));
      return sec;
    }
    const max = Math.max(...ans.groups.map((g) => g.count));
    const rows = ans.groups.map((g) => {
      const bar = h('span', { class: 'bar' });
      bar.style.width = `${(100 * g.count) / max}%`;
      return h('tr', {},
        h('td', {}, h('a', { href: link(g.key) }, label(g.key))),
        h('td', { class: 'num' }, g.count),
        h('td', { class: 'barcell', 'aria-hidden': 'true' }, bar));
    });
    sec.append(h('table', {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, by.split(',').join(' / ')), h('th', { scope: 'col', class: 'num' }, 'events'), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'share')))),
      h('tbody', {}, rows)));
    if (ans.totalGroups > ans.groups.length) sec.append(h('p', { class: 'note' }, `${ans.totalGroups} in all; the 10 largest shown.`));
  } catch (e) {
    sec.append(errorText(e));
  }
  return sec;
}

function errorText(e) {
  return status(e instanceof APIError ? `The server answered ${e.status}: ${e.message}` : `Could not ask the server: ${e.message}`, 'error');
}

async function alertsPanel() {
  const sec = h('section', { class: 'panel', 'aria-label': 'Latest alerts' }, h('h2', {}, 'Latest alerts'));
  try {
    const { items } = await getLines('/api/v1/alerts', { limit: 10 });
    if (!items.length) {
      sec.append(h('p', { class: 'empty' }, 'No alert stored.'));
      return sec;
    }
    sec.append(h('ul', { class: 'alerts' }, items.reverse().map((a) => h('li', {},
      h('span', { class: `sev sev-${a.severity}` }, a.severity), ' ',
      h('a', { href: url('/search', { q: (a.auditIDs || []).map((id) => `auditid=${quote(id)}`).join(' or ') }) }, a.rule), ' ',
      h('span', { class: 'muted' }, `${userLabel(a.user)} · ${fmtTime(a.time)}`)))));
    sec.append(h('p', {}, h('a', { href: '/alerts' }, 'All alerts')));
  } catch (e) {
    // 404: this server keeps no alerts; its message says why (detection
    // off, or on ClickHouse, where detect --follow keeps them elsewhere).
    if (e instanceof APIError && e.status === 404) sec.append(h('p', { class: 'empty' }, `No alerts here: ${e.message}.`));
    else sec.append(errorText(e));
  }
  return sec;
}

// series counts stats groups (by one field, per bucket) into the chart's
// series.
function countSeries(groups, defs, buckets, interval, field, parse) {
  const index = new Map(buckets.map((b, i) => [b, i]));
  const values = defs.map(() => buckets.map(() => 0));
  for (const g of groups) {
    const i = index.get(Math.floor(Date.parse(g.time) / interval) * interval);
    if (i === undefined) continue;
    const v = parse(g.key[field]);
    const k = defs.findIndex((d) => d.has(v));
    if (k >= 0) values[k][i] += g.count;
  }
  return values;
}

export async function overview(main, params) {
  const since = params.get('since') || '', until = params.get('until') || '';
  document.title = 'Overview · kubetrail';
  main.append(h('h1', {}, 'Overview'), rangeForm(since, until));
  const loading = status('Loading…');
  main.append(loading);
  let ext;
  try {
    ext = await extent(since, until);
  } catch (e) {
    loading.replaceWith(errorText(e));
    return;
  }
  const charts = h('div', { class: 'charts' });
  if (!ext) {
    charts.append(h('p', { class: 'empty' }, 'No events in this range.'));
  } else {
    const { interval, buckets } = timeBuckets(ext[0], ext[1]);
    const first = buckets[0];
    const q = { interval: `${interval / 1000}s`, since: since || new Date(first).toISOString(), until };
    const [byVerb, byCode] = await Promise.all([
      getJSON('/api/v1/stats', { ...q, by: 'verb' }),
      getJSON('/api/v1/stats', { ...q, by: 'code' }),
    ]).catch((e) => {
      charts.append(errorText(e));
      return [null, null];
    });
    if (byVerb) {
      const total = byVerb.body.total;
      charts.append(h('p', { class: 'summary' }, `${total} events from ${new Date(ext[0]).toISOString()} to ${new Date(ext[1]).toISOString()}, in bars of ${interval / 1000} s. Drag across a chart to zoom; click a bar to see its events.`));
      const pickFor = (defs) => (k, i) => searchLink(defs[k].filter, new Date(buckets[i]).toISOString(), endOf(buckets[i] + interval));
      const zoom = (from, to) => location.assign(url('/', { since: new Date(from).toISOString(), until: new Date(to).toISOString() }));
      const vv = countSeries(byVerb.body.groups, verbSeries, buckets, interval, 'verb', (x) => x);
      charts.append(stackedChart({ title: 'Events by verb', buckets, interval, zoom, pick: pickFor(verbSeries),
        series: verbSeries.map((d, k) => ({ label: d.label, color: palette[k], values: vv[k] })) }));
      const cv = countSeries(byCode.body.groups, codeSeries, buckets, interval, 'code', (x) => (x ? Number(x) : 0));
      charts.append(stackedChart({ title: 'Events by response code', buckets, interval, zoom, pick: pickFor(codeSeries),
        series: codeSeries.map((d, k) => ({ label: d.label, color: codeColors[k], values: cv[k] })) }));
    }
  }
  loading.replaceWith(charts);
  const r = { since, until };
  const userFilter = (base) => (key) => searchLink(`${base ? base + ' ' : ''}user=${quote(key.user)}`.trim(), since, until);
  const panels = await Promise.all([
    topPanel({ ...r, title: 'Top users', by: 'user', label: (k) => userLabel(k.user), link: userFilter(''), empty: 'No events.' }),
    topPanel({ ...r, title: 'Top resources', by: 'resource', label: (k) => k.resource || '(non-resource requests)',
      link: (k) => searchLink(`resource=${quote(k.resource)}`, since, until), empty: 'No events.' }),
    topPanel({ ...r, title: 'Denied requests', by: 'user', filter: filters.denied, label: (k) => userLabel(k.user),
      link: userFilter(filters.denied), empty: 'No request was denied.' }),
    topPanel({ ...r, title: 'Secret access by people', by: 'user,verb', filter: filters.secrets, label: (k) => `${userLabel(k.user)} ${k.verb}`,
      link: (k) => searchLink(`${filters.secrets} user=${quote(k.user)} verb=${quote(k.verb)}`, since, until), empty: 'No secret access outside system: users.' }),
    topPanel({ ...r, title: 'Exec, attach and port-forward', by: 'user', filter: filters.execs, label: (k) => userLabel(k.user),
      link: userFilter(filters.execs), empty: 'No exec, attach or port-forward.' }),
    alertsPanel(),
  ]);
  main.append(h('div', { class: 'panels' }, panels));
}

// The alerts (/alerts?since=&severity=&rule=): what detection stored, as a
// chart over time stacked by severity, a count per rule (each opening the
// list of that rule's alerts), and the list, newest first, each alert
// opening the events behind it.
import { getLines, APIError } from '../api.js';
import { h, quote, status, url, fmtTime, userLabel } from '../dom.js';
import { stackedChart, timeBuckets } from '../chart.js';

// Severities from the most to the least severe: the chart stacks the most
// severe at the bottom. Okabe-Ito colours, hot to cold.
const severities = [
  { name: 'critical', color: '#D55E00' },
  { name: 'high', color: '#E69F00' },
  { name: 'medium', color: '#F0E442' },
  { name: 'low', color: '#56B4E9' },
  { name: 'info', color: '#999999' },
];

// eventsLink opens the events behind alerts: one event's page, or the
// search of their audit IDs.
function eventsLink(ids, label) {
  if (!ids.length) return '';
  return h('a', { href: ids.length === 1 ? `/event/${encodeURIComponent(ids[0])}` : url('/search', { q: ids.map((i) => `auditid=${quote(i)}`).join(' or ') }) }, label);
}

// chart counts the alerts (oldest first) per bar and severity; a segment
// opens the events of its alerts.
function chart(items) {
  const ts = items.map((a) => Date.parse(a.time)).filter((t) => !Number.isNaN(t));
  if (!ts.length) return null;
  const { interval, buckets } = timeBuckets(Math.min(...ts), Math.max(...ts) + 1000);
  const values = severities.map(() => buckets.map(() => 0));
  const ids = severities.map(() => buckets.map(() => []));
  for (const a of items) {
    const k = severities.findIndex((s) => s.name === a.severity);
    const i = Math.floor((Date.parse(a.time) - buckets[0]) / interval);
    if (k < 0 || !(i >= 0 && i < buckets.length)) continue;
    values[k][i]++;
    ids[k][i].push(...(a.auditIDs || []));
  }
  const pick = (k, i) => {
    const l = eventsLink([...new Set(ids[k][i])], '');
    return l ? l.getAttribute('href') : '#';
  };
  return stackedChart({ title: 'Alerts by severity', buckets, interval, pick,
    series: severities.map((s, k) => ({ label: s.name, color: s.color, values: values[k] })) });
}

// byRule is a table of the rules that raised alerts, most alerts first,
// each count opening the list of that rule's alerts.
function byRule(items, since, severity) {
  const counts = new Map();
  for (const a of items) counts.set(a.rule, (counts.get(a.rule) || 0) + 1);
  const rows = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([rule, n]) => h('tr', {},
    h('th', { scope: 'row' }, rule),
    h('td', { class: 'num' }, h('a', { href: url('/alerts', { since, severity, rule }), 'aria-label': `${n} alerts of ${rule}` }, n))));
  return h('section', { class: 'panel rules', 'aria-label': 'Alerts by rule' }, h('h2', {}, 'Alerts by rule'),
    h('table', { class: 'by-rule' }, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Rule'), h('th', { scope: 'col', class: 'num' }, 'Alerts'))),
      h('tbody', {}, rows)));
}

export async function alerts(main, params) {
  const since = params.get('since') || '', severity = params.get('severity') || '', rule = params.get('rule') || '';
  document.title = 'Alerts · kubetrail';
  const sev = h('select', { name: 'severity' }, ['', 'low', 'medium', 'high', 'critical'].map((s) =>
    h('option', { value: s, selected: s === severity }, s ? `${s} and above` : 'any')));
  main.append(h('h1', {}, 'Alerts'), h('form', { class: 'range', action: '/alerts', method: 'get' },
    h('label', {}, 'Since ', h('input', { name: 'since', value: since, placeholder: '24h', size: 20 })),
    h('label', {}, 'Severity ', sev),
    rule ? h('label', {}, 'Rule ', h('input', { name: 'rule', value: rule, size: 30 })) : null,
    h('button', { type: 'submit' }, 'Show')));
  if (rule) main.append(h('p', {}, `Only the alerts of the rule ${rule}. `, h('a', { href: url('/alerts', { since, severity }) }, 'Every rule')));
  const out = h('div', {}, status('Loading…'));
  main.append(out);
  let ans;
  try {
    ans = await getLines('/api/v1/alerts', { since, severity, rule, limit: 1000 });
  } catch (e) {
    if (e instanceof APIError && e.status === 404) out.replaceChildren(h('p', { class: 'empty', role: 'status' }, `No alerts here: ${e.message}.`));
    else out.replaceChildren(status(e instanceof APIError ? `The server answered ${e.status}${e.parameter ? ` about ${e.parameter}` : ''}: ${e.message}` : `Could not ask the server: ${e.message}`, 'error'));
    return;
  }
  if (!ans.items.length) {
    out.replaceChildren(h('p', { class: 'empty' }, 'No alert matches.'));
    return;
  }
  const parts = [h('p', { class: 'summary' }, `${ans.items.length} alerts. Click a bar to see the events behind its alerts; the list is newest first.`)];
  if (ans.damage.length) parts.push(status(`Damaged alerts left out: ${ans.damage.join('; ')}`, 'error'));
  parts.push(h('div', { class: 'charts' }, chart(ans.items)), byRule(ans.items, since, severity));
  const rows = ans.items.slice().reverse().map((a) => {
    const ids = a.auditIDs || [];
    return h('tr', {},
      cellTime(a.time),
      h('td', {}, h('span', { class: `sev sev-${a.severity}` }, a.severity)),
      h('td', {}, a.rule),
      h('td', {}, a.user ? h('a', { href: `/user/${encodeURIComponent(a.user)}` }, a.user) : userLabel('')),
      h('td', { class: 'msg' }, a.message),
      h('td', {}, eventsLink(ids, ids.length === 1 ? 'event' : `${ids.length} events`)));
  });
  parts.push(h('div', { class: 'scroll' }, h('table', { class: 'alerts' },
    h('thead', {}, h('tr', {}, ['Time (UTC)', 'Severity', 'Rule', 'User', 'Message', 'Events'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows))));
  out.replaceChildren(...parts);
}

function cellTime(t) {
  return h('td', {}, h('time', { datetime: t }, fmtTime(t)));
}

// The alerts (/alerts?since=&severity=): what detection stored, newest
// first, each opening the events behind it.
import { getLines, APIError } from '../api.js';
import { h, quote, status, url, fmtTime, userLabel } from '../dom.js';

export async function alerts(main, params) {
  const since = params.get('since') || '', severity = params.get('severity') || '';
  document.title = 'Alerts · kubetrail';
  const sev = h('select', { name: 'severity' }, ['', 'low', 'medium', 'high', 'critical'].map((s) =>
    h('option', { value: s, selected: s === severity }, s ? `${s} and above` : 'any')));
  main.append(h('h1', {}, 'Alerts'), h('form', { class: 'range', action: '/alerts', method: 'get' },
    h('label', {}, 'Since ', h('input', { name: 'since', value: since, placeholder: '24h', size: 20 })),
    h('label', {}, 'Severity ', sev), h('button', { type: 'submit' }, 'Show')));
  const out = h('div', {}, status('Loading…'));
  main.append(out);
  let ans;
  try {
    ans = await getLines('/api/v1/alerts', { since, severity, limit: 1000 });
  } catch (e) {
    if (e instanceof APIError && e.status === 404) out.replaceChildren(h('p', { class: 'empty', role: 'status' }, 'Detection is off on this server (serve --detect=false), so it keeps no alerts.'));
    else out.replaceChildren(status(e instanceof APIError ? `The server answered ${e.status}${e.parameter ? ` about ${e.parameter}` : ''}: ${e.message}` : `Could not ask the server: ${e.message}`, 'error'));
    return;
  }
  if (!ans.items.length) {
    out.replaceChildren(h('p', { class: 'empty' }, 'No alert matches.'));
    return;
  }
  const rows = ans.items.reverse().map((a) => {
    const ids = a.auditIDs || [];
    return h('tr', {},
      cellTime(a.time),
      h('td', {}, h('span', { class: `sev sev-${a.severity}` }, a.severity)),
      h('td', {}, a.rule),
      h('td', {}, a.user ? h('a', { href: `/user/${encodeURIComponent(a.user)}` }, a.user) : userLabel('')),
      h('td', { class: 'msg' }, a.message),
      h('td', {}, ids.length ? h('a', { href: ids.length === 1 ? `/event/${encodeURIComponent(ids[0])}` : url('/search', { q: ids.map((i) => `auditid=${quote(i)}`).join(' or ') }) },
        ids.length === 1 ? 'event' : `${ids.length} events`) : ''));
  });
  const parts = [h('p', { class: 'summary' }, `${ans.items.length} alerts, newest first.`)];
  if (ans.damage.length) parts.push(status(`Damaged alerts left out: ${ans.damage.join('; ')}`, 'error'));
  parts.push(h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, ['Time (UTC)', 'Severity', 'Rule', 'User', 'Message', 'Events'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows))));
  out.replaceChildren(...parts);
}

function cellTime(t) {
  return h('td', {}, h('time', { datetime: t }, fmtTime(t)));
}

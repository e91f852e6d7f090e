// The search (/search?q=FILTER&since=&until=&sort=&limit=): the filter
// language over GET /api/v1/events, the results as a table, each row
// opening its event; a filter error is shown at its column.
import { getLines, APIError } from '../api.js';
import { h, status, fmtTime, userLabel } from '../dom.js';

const defaultLimit = 500;

function field(label, name, value, attrs) {
  return h('label', { class: `field field-${name}` }, h('span', {}, label), h('input', { name, value, ...attrs }));
}

// filterError shows the API's message under the filter, with a caret
// under the column it names, and puts the cursor there.
function filterError(input, e) {
  const id = 'filter-error';
  input.setAttribute('aria-invalid', 'true');
  input.setAttribute('aria-describedby', id);
  const box = h('div', { id, class: 'filter-error', role: 'alert' }, h('p', {}, `Filter error: ${e.message}`));
  if (e.column > 0) {
    box.append(h('pre', { 'aria-hidden': 'true' }, input.value, '\n', ' '.repeat(e.column - 1) + '^'));
    input.focus();
    input.setSelectionRange(e.column - 1, e.column - 1);
  }
  return box;
}

function cell(v, cls) {
  return h('td', { class: cls }, v == null ? '' : v);
}

function row(ev) {
  const o = ev.objectRef || {};
  const res = [o.apiGroup ? `${o.resource}.${o.apiGroup}` : o.resource, o.subresource].filter(Boolean).join('/');
  const ips = ev.sourceIPs || [];
  return h('tr', {},
    h('td', {}, ev.auditID ? h('a', { href: `/event/${encodeURIComponent(ev.auditID)}`, title: `audit ID ${ev.auditID}` }, fmtTime(ev.stageTimestamp || ev.requestReceivedTimestamp)) : fmtTime(ev.stageTimestamp)),
    h('td', {}, ev.user && ev.user.username ? h('a', { href: `/user/${encodeURIComponent(ev.user.username)}` }, ev.user.username) : userLabel('')),
    cell(ev.impersonatedUser && ev.impersonatedUser.username),
    cell(ev.verb),
    cell(res || ev.requestURI),
    cell([o.namespace, o.name].filter(Boolean).join('/')),
    cell(ev.responseStatus && ev.responseStatus.code, 'num'),
    cell(ev.stage),
    cell(ips.length ? ips[ips.length - 1] + (ips.length > 1 ? ` (+${ips.length - 1})` : '') : ''),
    cell(ev.userAgent, 'ua'));
}

export async function search(main, params) {
  const q = params.get('q') || '', since = params.get('since') || '', until = params.get('until') || '';
  const sort = params.get('sort') || '-time';
  const limit = Number(params.get('limit')) > 0 ? Number(params.get('limit')) : defaultLimit;
  document.title = q ? `${q} · Search · kubetrail` : 'Search · kubetrail';
  const input = h('input', { id: 'q', name: 'q', value: q, class: 'filter', spellcheck: 'false', autocomplete: 'off',
    placeholder: 'verb=delete resource=secrets ns=production', 'aria-describedby': 'filter-help' });
  const sortSel = h('select', { name: 'sort' },
    h('option', { value: '-time', selected: sort === '-time' }, 'newest first'),
    h('option', { value: 'time', selected: sort === 'time' }, 'oldest first'));
  const form = h('form', { class: 'search', action: '/search', method: 'get', role: 'search' },
    h('label', { for: 'q', class: 'field field-q' }, h('span', {}, 'Filter')), input,
    h('p', { id: 'filter-help', class: 'help' }, 'The filter language of docs/query.md, e.g. user=attacker code>=400, or subresource in (exec,attach).'),
    h('div', { class: 'row' },
      field('Since', 'since', since, { placeholder: '1h, 7d or 2026-12-05T00:00:00Z', size: 24 }),
      field('Until', 'until', until, { placeholder: 'now', size: 24 }),
      h('label', { class: 'field' }, h('span', {}, 'Order'), sortSel),
      field('At most', 'limit', String(limit), { type: 'number', min: 1, size: 6 }),
      h('button', { type: 'submit' }, 'Search')));
  main.append(h('h1', {}, 'Search'), form);
  if (!params.has('q') && !since && !until) {
    input.focus();
    return;
  }
  const out = h('div', { class: 'results' }, status('Searching…'));
  main.append(out);
  const api = { filter: q, since, until, sort, limit: limit + 1 };
  let ans;
  try {
    ans = await getLines('/api/v1/events', api);
  } catch (e) {
    out.replaceChildren(e instanceof APIError && e.column > 0 ? filterError(input, e)
      : status(e instanceof APIError ? `The server answered ${e.status}${e.parameter ? ` about ${e.parameter}` : ''}: ${e.message}` : `Could not ask the server: ${e.message}`, 'error'));
    return;
  }
  const more = ans.items.length > limit;
  const events = ans.items.slice(0, limit);
  const kept = ans.text.split('\n').filter((l) => l.trim() !== '').slice(0, limit).join('\n') + '\n';
  const download = h('button', { type: 'button', onclick: () => {
    const a = h('a', { href: '#', download: 'kubetrail-events.jsonl' });
    a.href = URL.createObjectURL(new Blob([kept], { type: 'application/x-ndjson' }));
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  } }, 'Download JSON lines');
  const summary = h('p', { class: 'summary', role: 'status' },
    events.length === 0 ? 'No event matches.' : `${events.length}${more ? '+' : ''} events${more ? ` (the first ${limit}; raise "At most" or narrow the filter for more)` : ''}.`);
  const parts = [summary];
  if (ans.damage.length) parts.push(status(`Damaged data left out of this answer: ${ans.damage.join('; ')}`, 'error'));
  if (events.length) {
    parts.push(h('div', { class: 'toolbar' }, download));
    const head = ['Time (UTC)', 'User', 'As', 'Verb', 'Resource', 'Namespace/name', 'Code', 'Stage', 'Source IP', 'User agent'];
    parts.push(h('div', { class: 'scroll' }, h('table', { class: 'events' },
      h('caption', { class: 'visually-hidden' }, 'Matching events'),
      h('thead', {}, h('tr', {}, head.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, events.map(row)))));
  }
  out.replaceChildren(...parts);
}

// The search (/search?q=FILTER&since=&until=&sort=&limit=&follow=1): the
// filter language over GET /api/v1/events, with completion of field names
// and values; the results stream into a table that stays fast at 100,000
// rows (table.js), each row opening its event, user and object. With
// follow, the newest events come first and live ones are added as they
// are stored. A filter error is shown at its column.
import { streamLines, APIError } from '../api.js';
import { h, status, fmtTime, userLabel } from '../dom.js';
import { attachCompletion } from '../complete.js';
import { VirtualTable } from '../table.js';
import { objectPath } from './object.js';

const defaultLimit = 10000;

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

const head = ['Time (UTC)', 'User', 'As', 'Verb', 'Resource', 'Namespace/name', 'Code', 'Stage', 'Source IP', 'User agent'];

// columns are an event's cells, as text: the table's and the CSV's.
function columns(ev) {
  const o = ev.objectRef || {};
  const res = [o.apiGroup ? `${o.resource}.${o.apiGroup}` : o.resource, o.subresource].filter(Boolean).join('/');
  const ips = ev.sourceIPs || [];
  return [fmtTime(ev.stageTimestamp || ev.requestReceivedTimestamp), (ev.user && ev.user.username) || '',
    (ev.impersonatedUser && ev.impersonatedUser.username) || '', ev.verb || '', res || ev.requestURI || '',
    [o.namespace, o.name].filter(Boolean).join('/'), ev.responseStatus && ev.responseStatus.code != null ? String(ev.responseStatus.code) : '',
    ev.stage || '', ips.length ? ips[ips.length - 1] + (ips.length > 1 ? ` (+${ips.length - 1})` : '') : '', ev.userAgent || ''];
}

function row(ev) {
  const c = columns(ev);
  const o = ev.objectRef || {};
  const u = ev.user && ev.user.username;
  const obj = o.resource && o.name ? objectPath(o.resource, o.namespace, o.name) : '';
  return h('tr', { class: 'ev' },
    h('td', {}, ev.auditID ? h('a', { href: `/event/${encodeURIComponent(ev.auditID)}`, title: `audit ID ${ev.auditID}` }, c[0]) : c[0]),
    h('td', {}, u ? h('a', { href: `/user/${encodeURIComponent(u)}` }, u) : userLabel('')),
    h('td', {}, c[2]), h('td', {}, c[3]), h('td', {}, c[4]),
    h('td', {}, obj ? h('a', { href: obj, title: 'the history of this object' }, c[5]) : c[5]),
    h('td', { class: 'num' }, c[6]), h('td', {}, c[7]), h('td', {}, c[8]),
    h('td', { class: 'ua', title: c[9] }, c[9]));
}

// csvCell quotes a cell (RFC 4180), and puts a ' before text a
// spreadsheet would run as a formula (=, +, -, @, tab, CR first): user
// agents and names are the client's to choose.
export function csvCell(s) {
  let v = String(s);
  if (/^[=+\-@\t\r]/.test(v)) v = `'${v}`;
  return /[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

function save(name, type, text) {
  const a = h('a', { href: '#', download: name });
  a.href = URL.createObjectURL(new Blob([text], { type }));
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

export async function search(main, params) {
  const q = params.get('q') || '', since = params.get('since') || '', until = params.get('until') || '';
  const sort = params.get('sort') || '-time';
  const follow = params.get('follow') === '1';
  const limit = Number(params.get('limit')) > 0 ? Number(params.get('limit')) : defaultLimit;
  document.title = q ? `${q} · Search · kubetrail` : 'Search · kubetrail';
  const input = h('input', { id: 'q', name: 'q', value: q, class: 'filter', spellcheck: 'false', autocomplete: 'off',
    placeholder: 'verb=delete resource=secrets ns=production', 'aria-describedby': 'filter-help' });
  const completions = attachCompletion(input, { since, until });
  const sortSel = h('select', { name: 'sort' },
    h('option', { value: '-time', selected: sort === '-time' }, 'newest first'),
    h('option', { value: 'time', selected: sort === 'time' }, 'oldest first'));
  const form = h('form', { class: 'search', action: '/search', method: 'get', role: 'search' },
    h('label', { for: 'q', class: 'field field-q' }, h('span', {}, 'Filter')), h('div', { class: 'combo' }, input, completions),
    h('p', { id: 'filter-help', class: 'help' }, 'The filter language of docs/query.md, e.g. user=attacker code>=400, or subresource in (exec,attach). Field names and stored values complete as you type (↓ for the list).'),
    h('div', { class: 'row' },
      field('Since', 'since', since, { placeholder: '1h, 7d or 2026-12-05T00:00:00Z', size: 24 }),
      field('Until', 'until', until, { placeholder: 'now', size: 24 }),
      h('label', { class: 'field' }, h('span', {}, 'Order'), sortSel),
      field('At most', 'limit', String(limit), { type: 'number', min: 1, size: 7 }),
      h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'follow', value: '1', checked: follow }), 'Follow live'),
      h('button', { type: 'submit' }, 'Search')));
  main.append(h('h1', {}, 'Search'), form);
  if (!params.has('q') && !since && !until) {
    input.focus();
    return;
  }
  const out = h('div', { class: 'results' }, status('Searching…'));
  main.append(out);

  // events and lines hold what arrived, in the order the API sent it; with
  // follow that is oldest first (the snapshot, then live), shown reversed
  // for newest first.
  const events = [], lines = [];
  const reversed = follow && sort === '-time';
  const at = (i) => events[reversed ? events.length - 1 - i : i];
  const table = new VirtualTable('events', 'Matching events', head, () => events.length, (i) => row(at(i)));
  const summary = h('p', { class: 'summary', role: 'status' }, 'Searching…');
  let more = false, ended = false, streamError = '';
  const tell = () => {
    const n = events.length;
    let s = n === 0 ? 'No event matches.' : `${n}${more ? '+' : ''} events`;
    if (more) s += ` (the first ${limit}; raise "At most" or narrow the filter for more)`;
    if (follow) s += n === 0 ? ` Following${ended ? ' ended' : ': new events appear as they are stored'}.` : `; following${ended ? ' ended' : ', new events appear at the ' + (reversed ? 'top' : 'bottom')}.`;
    else if (n) s += '.';
    summary.textContent = s;
  };
  const ctl = new AbortController();
  const stop = h('button', { type: 'button', onclick: () => { ctl.abort(); stop.disabled = true; } }, 'Stop following');
  const downloads = h('div', { class: 'toolbar' },
    h('button', { type: 'button', onclick: () => save('kubetrail-events.jsonl', 'application/x-ndjson', lines.map((l, i) => lines[reversed ? lines.length - 1 - i : i]).join('\n') + '\n') }, 'Download JSON lines'),
    ' ',
    h('button', { type: 'button', onclick: () => {
      const rows = [['Audit ID', ...head].map(csvCell).join(',')];
      for (let i = 0; i < events.length; i++) rows.push([at(i).auditID || '', ...columns(at(i))].map(csvCell).join(','));
      save('kubetrail-events.csv', 'text/csv', rows.join('\r\n') + '\r\n');
    } }, 'Download CSV'),
    follow ? [' ', stop] : null);
  const damageBox = h('div', {});
  let drawn = false;
  const draw = () => {
    if (!drawn) {
      out.replaceChildren(summary, damageBox, downloads, table.el);
      drawn = true;
    }
    tell();
    table.refresh();
  };
  const api = { filter: q, since, until, sort: follow ? 'time' : sort, limit: follow ? limit : limit + 1, follow: follow ? 1 : '' };
  // Redraws come at most once a frame, however fast the lines arrive.
  let frame = 0, first;
  const firstBatch = new Promise((resolve) => { first = resolve; });
  const done = streamLines('/api/v1/events', api, (items, ls) => {
    for (let k = 0; k < items.length; k++) {
      const it = items[k];
      if (it.kind !== 'Event' && it.error) {
        streamError = it.error;
        continue;
      }
      if (!follow && events.length >= limit) {
        more = true;
        continue;
      }
      events.push(it);
      lines.push(ls[k]);
    }
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; draw(); first(); });
  }, ctl.signal).then((damage) => {
    ended = true;
    stop.disabled = true;
    if (damage.length) damageBox.replaceChildren(status(`Damaged data left out of this answer: ${damage.join('; ')}`, 'error'));
    if (streamError) damageBox.append(status(streamError, 'error'));
    draw();
    if (!events.length) {
      table.el.remove();
      downloads.remove();
    }
  }, (e) => {
    if (e instanceof APIError && e.column > 0) out.replaceChildren(filterError(input, e));
    else out.replaceChildren(status(e instanceof APIError ? `The server answered ${e.status}${e.parameter ? ` about ${e.parameter}` : ''}: ${e.message}` : `Could not ask the server: ${e.message}`, 'error'));
  });
  // A search is drawn when its answer ended; a follower's once its first
  // events are (or, with none yet, after a moment), while it goes on.
  if (follow) await Promise.race([done, firstBatch, new Promise((r) => setTimeout(r, 500))]);
  else await done;
  if (follow && !drawn) draw();
}

// A user (/user/NAME): the timeline investigation of what the user did,
// or what was done as them, oldest first.
import { getJSON, APIError } from '../api.js';
import { h, quote, searchLink, status, url, fmtTime } from '../dom.js';

export async function user(main, name, params) {
  const since = params.get('since') || '', until = params.get('until') || '';
  document.title = `${name} · kubetrail`;
  main.append(h('h1', {}, 'User ', h('code', {}, name)),
    h('p', {}, h('a', { href: searchLink(`user=${quote(name)} or as=${quote(name)}`, since, until) }, 'Every event by or as this user')));
  const out = h('div', {}, status('Loading…'));
  main.append(out);
  let ans;
  try {
    ans = (await getJSON('/api/v1/investigate/timeline', { user: name, since, until, table: 1 })).body;
  } catch (e) {
    out.replaceChildren(status(e instanceof APIError ? `The server answered ${e.status}${e.parameter ? ` about ${e.parameter}` : ''}: ${e.message}` : `Could not ask the server: ${e.message}`, 'error'));
    return;
  }
  const recs = ans.records || [];
  const notes = ((ans.table && ans.table.notes) || []).map((n) => h('p', { class: 'note' }, n));
  if (!recs.length) {
    out.replaceChildren(h('p', { class: 'empty' }, (ans.table && ans.table.empty) || 'Nothing in this range.'), ...notes);
    return;
  }
  const items = recs.map((r) => {
    const ids = r.auditIDs || [];
    const denied = /^40[13]/.test(r.result || '');
    return h('li', { class: denied ? 'denied' : '' },
      h('time', { datetime: r.time }, fmtTime(r.time)), ' ',
      h('span', { class: 'sentence' }, r.sentence), ' ',
      h('span', { class: 'result' }, r.result),
      ids.length ? [' ', h('a', { href: ids.length === 1 ? `/event/${encodeURIComponent(ids[0])}` : url('/search', { q: ids.map((i) => `auditid=${quote(i)}`).join(' or ') }) },
        ids.length === 1 ? 'event' : `${ids.length} events`)] : []);
  });
  out.replaceChildren(h('p', { class: 'summary' }, `${recs.length} entries, oldest first.`), h('ol', { class: 'timeline' }, items), ...notes);
}

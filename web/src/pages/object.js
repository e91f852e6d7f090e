// An object (/object/RESOURCE/NAME, or /object/RESOURCE/NAMESPACE/NAME):
// every request that touched it, oldest first, from the history
// investigation (GET /api/v1/investigate/history, docs/investigations.md):
// each change with what it did to the object, a unified diff between the
// object's successive versions (read from the events' responseObject, or
// requestObject), or the patch it sent when the response did not show the
// object. ?reads=0 leaves out get, list and watch; ?system=1 adds the
// control plane's requests.
import { getJSON, APIError } from '../api.js';
import { h, quote, searchLink, status, url, fmtTime } from '../dom.js';
import { diffView, firstSeen } from '../diff.js';

// objectPath is the page of an object.
export function objectPath(resource, namespace, name) {
  const seg = [resource, namespace, name].filter(Boolean).map(encodeURIComponent);
  return `/object/${seg.join('/')}`;
}

function change(r) {
  const denied = r.code === 401 || r.code === 403;
  const verb = [r.verb, r.subresource].filter(Boolean).join(' ');
  const what = [];
  if (r.diff) {
    const created = firstSeen(r.diff);
    what.push(h('details', { class: 'change', open: true },
      h('summary', {}, created ? `The object as ${r.verb === 'create' ? 'created' : 'first seen'} (${r.body})` : `What changed (${r.body})`),
      diffView(r.diff, `diff of the ${r.verb} at ${fmtTime(r.time)}`)));
  } else if (r.patch) {
    what.push(h('details', { class: 'change', open: true }, h('summary', {}, 'The patch it sent (the response did not show the object)'),
      h('pre', {}, JSON.stringify(r.patch, null, 2))));
  } else if (r.unchanged) {
    what.push(h('p', { class: 'muted' }, 'It left the object as it was.'));
  }
  return h('li', { class: denied ? 'denied' : '' },
    h('time', { datetime: r.time }, fmtTime(r.time)), ' ',
    r.user ? h('a', { href: `/user/${encodeURIComponent(r.user)}` }, r.user) : '(unauthenticated)',
    r.impersonatedUser ? ` as ${r.impersonatedUser}` : '', ' ',
    h('span', { class: 'verb' }, verb), ' ',
    h('span', { class: 'result' }, [r.code, r.decision].filter((x) => x != null && x !== '').join(' ')), ' ',
    r.auditID ? h('a', { href: `/event/${encodeURIComponent(r.auditID)}` }, 'event') : null,
    what);
}

export async function object(main, path, params) {
  const parts = path.split('/').map(decodeURIComponent);
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) {
    main.append(h('h1', {}, 'Object'), status('Want /object/RESOURCE/NAME or /object/RESOURCE/NAMESPACE/NAME.', 'error'));
    return;
  }
  const [resource, namespace, name] = parts.length === 3 ? parts : [parts[0], '', parts[1]];
  const reads = params.get('reads') !== '0', system = params.get('system') === '1';
  const since = params.get('since') || '', until = params.get('until') || '';
  const label = `${resource}/${name}`;
  document.title = `${label}${namespace ? ` in ${namespace}` : ''} · kubetrail`;
  const here = objectPath(resource, namespace, name);
  const filter = [`resource=${quote(resource)}`, namespace ? `ns=${quote(namespace)}` : '', `name=${quote(name)}`].filter(Boolean).join(' ');
  main.append(h('h1', {}, 'Object ', h('code', {}, label), namespace ? [' in ', h('code', {}, namespace)] : ''),
    h('p', {},
      h('a', { href: searchLink(filter, since, until) }, 'Every event on this object'), ' · ',
      h('a', { href: url(here, { reads: reads ? '0' : '', system: system ? '1' : '', since, until }) }, reads ? 'Changes only' : 'Reads too'), ' · ',
      h('a', { href: url(here, { reads: reads ? '' : '0', system: system ? '' : '1', since, until }) }, system ? 'Without the control plane' : 'With the control plane')));
  const out = h('div', {}, status('Loading…'));
  main.append(out);
  let ans, damage;
  try {
    ({ body: ans, damage } = await getJSON('/api/v1/investigate/history', { resource, name, namespace, since, until,
      reads: reads ? 'true' : '', 'include-system': system ? 'true' : '', table: 1 }));
  } catch (e) {
    out.replaceChildren(status(e instanceof APIError ? `The server answered ${e.status}${e.parameter ? ` about ${e.parameter}` : ''}: ${e.message}` : `Could not ask the server: ${e.message}`, 'error'));
    return;
  }
  const recs = ans.records || [];
  const notes = ((ans.table && ans.table.notes) || []).map((n) => h('p', { class: 'note' }, n));
  const parts2 = [];
  if (damage.length) parts2.push(status(`Damaged data left out of this answer: ${damage.join('; ')}`, 'error'));
  if (!recs.length) {
    out.replaceChildren(...parts2, h('p', { class: 'empty' }, (ans.table && ans.table.empty) || 'No request touched this object in this range.'), ...notes);
    return;
  }
  out.replaceChildren(...parts2, h('p', { class: 'summary' }, `${recs.length} requests${reads ? '' : ' that changed it'}, oldest first.`),
    h('ol', { class: 'timeline history' }, recs.map(change)), ...notes);
}

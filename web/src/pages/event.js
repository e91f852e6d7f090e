// An event (/event/AUDITID): every event stored with that audit ID (audit
// IDs are not unique: every stage of a request shares one, and a client
// may choose it), every field, the request and response bodies folded;
// for an update or patch, the diff against the object's previous version.
import { getJSON, getLines, APIError } from '../api.js';
import { h, quote, status, fmtTime, userLabel } from '../dom.js';
import { diffView, firstSeen } from '../diff.js';
import { objectPath } from './object.js';

// Fields shown folded: bodies, and managedFields inside them.
const folded = new Set(['requestObject', 'responseObject']);

// value renders any JSON value as nested lists, every scalar as text.
function value(v) {
  if (v === null) return h('span', { class: 'null' }, 'null');
  if (Array.isArray(v)) {
    if (v.length === 0) return h('span', { class: 'muted' }, '[]');
    if (v.every((x) => x === null || typeof x !== 'object')) return h('span', {}, v.map((x) => String(x)).join(', '));
    return h('ol', { class: 'arr' }, v.map((x) => h('li', {}, value(x))));
  }
  if (typeof v === 'object') return Object.keys(v).length ? fields(v) : h('span', { class: 'muted' }, '{}');
  if (v === '') return h('span', { class: 'muted' }, '""');
  return h('span', { class: typeof v }, String(v));
}

function fields(obj) {
  const dl = h('dl', { class: 'fields' });
  for (const [k, v] of Object.entries(obj)) {
    if (folded.has(k)) {
      const text = JSON.stringify(v, null, 2);
      dl.append(h('dt', {}, k), h('dd', {}, h('details', { class: 'body' },
        h('summary', {}, `${k}${v && v.kind ? ` (${v.kind})` : ''}, ${text.length} characters`),
        h('pre', {}, text))));
      continue;
    }
    dl.append(h('dt', {}, k), h('dd', {}, value(v)));
  }
  return dl;
}

export async function event(main, id) {
  document.title = `Event ${id} · kubetrail`;
  main.append(h('h1', {}, 'Event ', h('code', {}, id)));
  const out = h('div', {}, status('Loading…'));
  main.append(out);
  let ans;
  try {
    ans = await getLines('/api/v1/events', { filter: `auditid=${quote(id)}`, envelope: 1, sort: 'time' });
  } catch (e) {
    out.replaceChildren(status(e instanceof APIError ? `The server answered ${e.status}: ${e.message}` : `Could not ask the server: ${e.message}`, 'error'));
    return;
  }
  if (!ans.items.length) {
    out.replaceChildren(status(`No event has the audit ID ${id}.`, 'error'));
    return;
  }
  const parts = [h('p', { class: 'summary' }, ans.items.length === 1 ? 'One event has this audit ID.'
    : `${ans.items.length} events have this audit ID: every stage of a request shares it, and a client may choose it, so they need not be one request.`)];
  if (ans.damage.length) parts.push(status(`Damaged data left out of this answer: ${ans.damage.join('; ')}`, 'error'));
  const change = ans.items.map((env) => env.event || {}).find((ev) => ['update', 'patch'].includes(ev.verb) && ev.objectRef && ev.objectRef.resource && ev.objectRef.name);
  if (change) parts.push(await changeSection(id, change));
  for (const env of ans.items) {
    const ev = env.event || {};
    const u = ev.user && ev.user.username;
    const o = ev.objectRef || {};
    parts.push(h('section', { class: 'event' },
      h('h2', {}, `${ev.stage || 'event'} · ${fmtTime(ev.stageTimestamp)}`),
      h('p', { class: 'muted' }, 'User ', u ? h('a', { href: `/user/${encodeURIComponent(u)}` }, u) : userLabel(''),
        ` · cluster ${env.cluster || '(none)'} · stored ${fmtTime(env.received)}`,
        o.resource && o.name ? [' · ', h('a', { href: objectPath(o.resource, o.namespace, o.name) }, `history of ${o.resource}/${o.name}`)] : null),
      fields(ev)));
  }
  out.replaceChildren(...parts);
}

// changeSection shows what an update or patch did to its object: the diff
// against the object's previous recorded version, as the object's history
// (the same investigation as the object page) computes it. The history is
// asked with the control plane's requests, so that this change is in it
// whoever made it, and up to this change, so that later ones do not push
// it out of a limited answer.
async function changeSection(id, ev) {
  const o = ev.objectRef;
  const sec = h('section', { class: 'event diff-of-change', 'aria-label': 'What this change did' }, h('h2', {}, 'What this change did'),
    h('p', {}, h('a', { href: objectPath(o.resource, o.namespace, o.name) }, `The history of ${o.resource}/${o.name}`)));
  let recs;
  try {
    const { body } = await getJSON('/api/v1/investigate/history', { resource: o.resource, name: o.name, namespace: o.namespace || '', until: ev.stageTimestamp || '', 'include-system': 'true' });
    recs = body.records || [];
  } catch (e) {
    sec.append(status(e instanceof APIError ? `The history of the object could not be read: the server answered ${e.status}: ${e.message}` : `Could not ask the server: ${e.message}`, 'error'));
    return sec;
  }
  const r = recs.find((x) => x.auditID === id);
  if (!r) sec.append(h('p', { class: 'empty' }, 'This request is not in the object\'s history (it did not reach the object), so there is no diff.'));
  else if (r.diff && !firstSeen(r.diff)) sec.append(h('p', {}, `The diff against the previous recorded version of the object (this one read from ${r.body}):`), diffView(r.diff, `diff of the ${r.verb} at ${fmtTime(r.time)}`));
  else if (r.diff) sec.append(h('p', { class: 'note' }, `No previous body of this object was recorded, so there is nothing to compare with: the object as this ${r.verb} left it (${r.body}).`), diffView(r.diff, `the object after the ${r.verb} at ${fmtTime(r.time)}`));
  else if (r.unchanged) sec.append(h('p', {}, 'It left the object as its previous recorded version was.'));
  else if (r.patch) sec.append(h('p', { class: 'note' }, 'The response did not show the object, so there is no diff: the patch it sent.'), h('pre', {}, JSON.stringify(r.patch, null, 2)));
  else sec.append(h('p', { class: 'note' }, 'No body of the object was recorded for this request (logged at Metadata level, a failed request, or a Status reply), so what it changed is not in the log.'));
  return sec;
}

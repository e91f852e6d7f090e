// Completion in the filter input: field names as they are typed, and,
// after "FIELD=" (or !=, ~, <, >, "FIELD in ("), the values the store
// holds for that field, from GET /api/v1/stats?by=COLUMN (the most
// frequent first). An ARIA combobox: arrows choose, Enter or Tab takes the
// choice, Escape closes the list.
import { getJSON } from './api.js';
import { fields } from './fields.js';
import { h } from './dom.js';

const keywords = new Set(['and', 'or', 'not', 'in']);
const maxShown = 12;
const valuesPerField = 500;

// context says what is being typed before the cursor: a value of a field
// (field, prefix) or a field name (prefix), with where that word starts.
export function context(text) {
  let m = /([A-Za-z][\w.]*)\s*(!=|!~|>=|<=|=|~|<|>)\s*(["']?)([^\s"'()[\],=!~<>&|]*)$/.exec(text);
  if (m) return { kind: 'value', field: m[1], prefix: m[4], start: text.length - m[4].length - m[3].length };
  m = /([A-Za-z][\w.]*)\s+(?:not\s+)?in\s*\(([^)]*,)?\s*(["']?)([^\s"'()[\],=!~<>&|]*)$/i.exec(text);
  if (m) return { kind: 'value', field: m[1], prefix: m[4], start: text.length - m[4].length - m[3].length };
  m = /(?:^|[\s(])([A-Za-z][\w.]*)$/.exec(text);
  if (m && !keywords.has(m[1].toLowerCase())) return { kind: 'field', prefix: m[1], start: text.length - m[1].length };
  return null;
}

// bare reports whether a value can be written without quotes (docs/query.md,
// "Values, quoting and globs"); a '*' would be a glob, so it is quoted.
export function bare(v) {
  return v !== '' && !/[\s()[\],"'=!~<>&|*\\]/.test(v) && !keywords.has(v.toLowerCase());
}

function written(v) {
  return bare(v) ? v : '"' + v.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"';
}

// statsColumn is the stats column of a field as written (its canonical
// name, or the alias the language accepts for it).
function statsColumn(name) {
  const n = name.toLowerCase();
  const aliases = { username: 'user', 'user.username': 'user', groups: 'group', 'user.groups': 'group', namespace: 'ns',
    'objectref.namespace': 'ns', 'objectref.name': 'name', 'objectref.resource': 'resource', 'objectref.subresource': 'subresource',
    'objectref.apigroup': 'apigroup', 'objectref.apiversion': 'apiversion', 'responsestatus.code': 'code',
    'responsestatus.status': 'status', 'responsestatus.reason': 'reason', sourceip: 'ip', sourceips: 'ip', useragent: 'ua',
    impersonateduser: 'as', 'impersonateduser.username': 'as' };
  const f = fields.find((x) => x.name.toLowerCase() === (aliases[n] || n));
  return f && f.stats;
}

// attachCompletion makes input a combobox over the field names and the
// store's values; since and until narrow the values to the range searched.
export function attachCompletion(input, range) {
  const list = h('ul', { id: `${input.id}-completions`, class: 'completions', role: 'listbox', 'aria-label': 'Completions', hidden: true });
  input.setAttribute('role', 'combobox');
  input.setAttribute('aria-autocomplete', 'list');
  input.setAttribute('aria-expanded', 'false');
  input.setAttribute('aria-controls', list.id);
  const cache = new Map(); // stats column -> Promise of values
  let options = [], active = -1, ctx = null, asked = 0;

  function values(col) {
    if (!cache.has(col)) {
      cache.set(col, getJSON('/api/v1/stats', { by: col, top: valuesPerField, since: range.since, until: range.until })
        .then(({ body }) => body.groups.map((g) => g.key[col]).filter((v) => v != null && v !== ''))
        .catch(() => []));
    }
    return cache.get(col);
  }
  function close() {
    list.hidden = true;
    list.replaceChildren();
    options = [];
    active = -1;
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
  }
  function show(items) {
    options = items.slice(0, maxShown);
    active = -1;
    input.removeAttribute('aria-activedescendant');
    if (!options.length) return close();
    list.replaceChildren(...options.map((o, i) => h('li', { id: `${list.id}-${i}`, role: 'option', 'aria-selected': 'false',
      onmousedown: (e) => { e.preventDefault(); take(i); } }, h('span', { class: 'label' }, o.label), o.doc ? h('span', { class: 'doc' }, o.doc) : null)));
    list.hidden = false;
    input.setAttribute('aria-expanded', 'true');
  }
  function move(d) {
    if (!options.length) return;
    active = (active + d + options.length) % options.length;
    list.querySelectorAll('li').forEach((li, i) => li.setAttribute('aria-selected', String(i === active)));
    input.setAttribute('aria-activedescendant', `${list.id}-${active}`);
    list.children[active].scrollIntoView({ block: 'nearest' });
  }
  function take(i) {
    const o = options[i];
    const pos = input.selectionStart;
    const before = input.value.slice(0, ctx.start), after = input.value.slice(pos);
    input.value = before + o.insert + after;
    const at = before.length + o.insert.length;
    input.setSelectionRange(at, at);
    close();
    input.focus();
    if (ctx.kind === 'field') update(); // the operator comes next: nothing to offer yet
  }
  async function update() {
    // Every call supersedes the ones before it, including those still
    // waiting for values: they must not show a list for an old context.
    const n = ++asked;
    const pos = input.selectionStart;
    if (pos !== input.selectionEnd) return close();
    const c = context(input.value.slice(0, pos));
    ctx = c;
    if (!c) return close();
    const p = c.prefix.toLowerCase();
    if (c.kind === 'field') {
      if (p === '') return close();
      show(fields.filter((f) => f.name.toLowerCase().startsWith(p) && f.name.toLowerCase() !== p)
        .map((f) => ({ label: f.name, doc: f.doc, insert: f.keyed ? `${f.name}[` : f.name })));
      return;
    }
    const col = statsColumn(c.field);
    if (!col) return close();
    const vals = await values(col);
    if (n !== asked) return; // typed on meanwhile
    show(vals.filter((v) => v.toLowerCase().startsWith(p) && v !== c.prefix).map((v) => ({ label: v, insert: written(v) })));
  }
  input.addEventListener('input', update);
  input.addEventListener('blur', () => setTimeout(close, 100));
  input.addEventListener('keydown', (e) => {
    if (list.hidden) {
      if (e.key === 'ArrowDown' || (e.key === ' ' && e.ctrlKey)) {
        e.preventDefault();
        update();
      }
      return;
    }
    if (e.key === 'ArrowDown') move(1);
    else if (e.key === 'ArrowUp') move(-1);
    else if ((e.key === 'Enter' || e.key === 'Tab') && active >= 0) take(active);
    else if (e.key === 'Tab' && options.length === 1) take(0);
    else if (e.key === 'Escape') close();
    else return;
    e.preventDefault();
  });
  return list;
}

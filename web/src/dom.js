// Building the page. Every value from the API goes into the page as text
// (text nodes, attribute values), never as markup: no innerHTML anywhere,
// so a user agent or an object name holding "<script>" shows as written.

// h creates an element. attrs: class, on* listeners, anything else as an
// attribute (href only to this server's own paths). children: strings and
// numbers become text nodes; null, undefined and false are skipped; arrays
// are flattened.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'href') el.setAttribute('href', localHref(v));
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

// append adds children to el as h does.
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// localHref keeps links on this server: a path (not "//host") or a
// fragment. Links are built from data (user names, audit IDs), so a
// "javascript:" value must never become one.
export function localHref(v) {
  const s = String(v);
  return (s.startsWith('/') && !s.startsWith('//')) || s.startsWith('#') ? s : '#';
}

// url builds a path with query parameters, leaving out empty ones.
export function url(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v != null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

// quote writes a value for the filter language: double quotes, with \ and
// " escaped (docs/query.md, "Values, quoting and globs").
export function quote(v) {
  return '"' + String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"';
}

// searchLink is a link to the search page for filter q over [since, until].
export function searchLink(q, since, until) {
  return url('/search', { q, since, until });
}

// status is a polite live region: what is loading, or what went wrong.
export function status(text, kind) {
  return h('p', { class: `status ${kind || ''}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}

// fmtTime prints an RFC 3339 time as the CLI does (UTC, milliseconds).
export function fmtTime(t) {
  if (!t) return '';
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toISOString();
}

// userLabel names a user; a request that failed authentication has none.
export function userLabel(u) {
  return u ? u : '(unauthenticated)';
}

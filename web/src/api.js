// The public HTTP API, with the bearer token of this browser tab. The UI
// uses nothing else (docs/ui.md): whatever it shows, the API answers.
import { url } from './dom.js';

const tokenKey = 'kubetrail.token';

// The token lives in sessionStorage: it is this tab's, and gone when the
// tab closes.
export const token = {
  get: () => sessionStorage.getItem(tokenKey),
  set: (t) => sessionStorage.setItem(tokenKey, t),
  clear: () => sessionStorage.removeItem(tokenKey),
};

// APIError is an answer other than 2xx: the API's {"error"} message, with
// the column of a filter error and the parameter at fault.
export class APIError extends Error {
  constructor(status, body) {
    super(body.error || `HTTP ${status}`);
    this.status = status;
    this.column = body.column || 0;
    this.parameter = body.parameter || '';
    this.errors = body.errors || []; // a policy that does not load: its problems
  }
}

// Unauthorized is thrown after the page was sent to the login page.
export class Unauthorized extends Error {}

// request asks the API; t overrides the stored token (the login page
// tries one before keeping it), signal may abort it. With body it is a
// POST of that text (the policy API takes a policy so). A 401 sends the
// reader to the login page, to come back here.
export async function request(path, params, t, signal, body) {
  const headers = {};
  const tok = t ?? token.get();
  if (tok) headers.Authorization = `Bearer ${tok}`;
  const init = { headers, credentials: 'same-origin', signal };
  if (body !== undefined) {
    init.method = 'POST';
    init.body = body;
    headers['Content-Type'] = 'application/yaml';
  }
  const res = await fetch(url(path, params), init);
  if (res.status === 401 && t === undefined) {
    const here = location.pathname + location.search;
    location.assign(url('/login', { next: here, expired: tok ? '1' : '' }));
    throw new Unauthorized('unauthorized');
  }
  if (!res.ok) {
    let body = {};
    try {
      body = JSON.parse(await res.text());
    } catch {
      // not the API's JSON: the status says it
    }
    throw new APIError(res.status, body);
  }
  return res;
}

// damage lists what an answer left out because it is damaged
// (the Kubetrail-Damage header, one value per file, query-escaped).
export function damage(res) {
  const v = res.headers.get('Kubetrail-Damage');
  if (!v) return [];
  return v.split(',').map((s) => decodeURIComponent(s.trim().replace(/\+/g, ' ')));
}

// getJSON asks for a JSON answer.
export async function getJSON(path, params) {
  const res = await request(path, params);
  return { body: await res.json(), damage: damage(res) };
}

// postJSON sends body (a policy) and reads a JSON answer.
export async function postJSON(path, params, body) {
  const res = await request(path, params, undefined, undefined, body);
  return { body: await res.json(), damage: damage(res) };
}

// getLines asks for a JSON-lines answer: the parsed items, and the text
// as it came (for download).
export async function getLines(path, params) {
  const res = await request(path, params);
  const text = await res.text();
  const items = [];
  for (const line of text.split('\n')) if (line.trim() !== '') items.push(JSON.parse(line));
  return { items, text, damage: damage(res) };
}

// streamLines asks for a JSON-lines answer and hands the items to onItems
// as they arrive, a batch per chunk read (with each item's line as it
// came, for download), so that the first rows show before the last are
// read and a follow=1 answer goes on showing live events. It returns the
// damage header when the answer ends; signal stops it.
export async function streamLines(path, params, onItems, signal) {
  const res = await request(path, params, undefined, signal);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let rest = '';
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (e) {
      if (signal && signal.aborted) break;
      throw e;
    }
    if (chunk.done) break;
    const text = rest + dec.decode(chunk.value, { stream: true });
    const end = text.lastIndexOf('\n');
    if (end < 0) {
      rest = text;
      continue;
    }
    rest = text.slice(end + 1);
    const items = [], lines = [];
    for (const line of text.slice(0, end).split('\n')) {
      if (line.trim() === '') continue;
      items.push(JSON.parse(line));
      lines.push(line);
    }
    if (items.length) onItems(items, lines);
  }
  if (rest.trim() !== '') onItems([JSON.parse(rest)], [rest]);
  return damage(res);
}

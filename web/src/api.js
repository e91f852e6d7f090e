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
  }
}

// Unauthorized is thrown after the page was sent to the login page.
export class Unauthorized extends Error {}

// request asks the API; t overrides the stored token (the login page
// tries one before keeping it). A 401 sends the reader to the login page,
// to come back here.
export async function request(path, params, t) {
  const headers = {};
  const tok = t ?? token.get();
  if (tok) headers.Authorization = `Bearer ${tok}`;
  const res = await fetch(url(path, params), { headers, credentials: 'same-origin' });
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

// getLines asks for a JSON-lines answer: the parsed items, and the text
// as it came (for download).
export async function getLines(path, params) {
  const res = await request(path, params);
  const text = await res.text();
  const items = [];
  for (const line of text.split('\n')) if (line.trim() !== '') items.push(JSON.parse(line));
  return { items, text, damage: damage(res) };
}

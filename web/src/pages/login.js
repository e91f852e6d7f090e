// The login page (/login?next=PATH): a bearer token of serve's
// --token-file, tried on the API before it is kept (in this tab's
// sessionStorage) and sent with every API call.
import { request, token, APIError } from '../api.js';
import { h, localHref, status } from '../dom.js';

export function login(main, params) {
  document.title = 'Sign in · kubetrail';
  const next = localHref(params.get('next') || '/');
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, size: 40 });
  const msg = h('div', { 'aria-live': 'assertive' });
  if (params.get('expired')) msg.append(status('The server refused the token this tab had; sign in again.', 'error'));
  const form = h('form', { class: 'login', onsubmit: async (e) => {
    e.preventDefault();
    msg.replaceChildren(status('Checking…'));
    try {
      // Any authenticated call: the list of investigations is small.
      await request('/api/v1/investigate', {}, input.value.trim());
      token.set(input.value.trim());
      location.assign(next === '#' ? '/' : next);
    } catch (err) {
      input.setAttribute('aria-invalid', 'true');
      msg.replaceChildren(status(err instanceof APIError && err.status === 401 ? 'The server refused this token.'
        : err instanceof APIError ? `The server answered ${err.status}: ${err.message}` : `Could not reach the server: ${err.message}`, 'error'));
      input.focus();
    }
  } },
  h('label', { for: 'token' }, 'Bearer token'), input,
  h('p', { class: 'help' }, 'A token from the file given to kubetrail serve --token-file. It is kept in this tab only, until the tab is closed or you sign out.'),
  h('button', { type: 'submit' }, 'Sign in'), msg);
  main.append(h('h1', {}, 'Sign in'), form);
  input.focus();
}

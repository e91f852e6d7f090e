// The UI's entry: every page is this one shell (internal/server/ui.go);
// the path says which page to render. Links and forms are plain: each
// page is a full load of its own URL, so every view can be bookmarked.
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { token, Unauthorized } from './api.js';
import { h, status } from './dom.js';
import { overview } from './pages/overview.js';
import { search } from './pages/search.js';
import { event } from './pages/event.js';
import { user } from './pages/user.js';
import { object } from './pages/object.js';
import { alerts } from './pages/alerts.js';
import { policy } from './pages/policy.js';
import { login } from './pages/login.js';

const routes = [
  [/^\/$/, 'overview', (m, p) => overview(m, p)],
  [/^\/search$/, 'search', (m, p) => search(m, p)],
  [/^\/event\/(.+)$/, '', (m, p, id) => event(m, id)],
  [/^\/user\/(.+)$/, '', (m, p, name) => user(m, name, p)],
  // An object's path is decoded segment by segment by its page.
  [/^\/object\/(.+)$/, '', (m, p) => object(m, location.pathname.slice('/object/'.length), p)],
  [/^\/alerts$/, 'alerts', (m, p) => alerts(m, p)],
  [/^\/policy$/, 'policy', (m) => policy(m)],
  [/^\/login$/, '', (m, p) => login(m, p)],
];

function session() {
  const el = document.getElementById('session');
  if (token.get()) {
    el.append(h('button', { type: 'button', class: 'link', onclick: () => { token.clear(); location.assign('/login'); } }, 'Sign out'));
  } else if (location.pathname !== '/login') {
    el.append(h('a', { href: '/login' }, 'Sign in'));
  }
}

async function start() {
  const main = document.getElementById('main');
  main.replaceChildren();
  session();
  const params = new URLSearchParams(location.search);
  for (const [re, nav, render] of routes) {
    const m = re.exec(location.pathname);
    if (!m) continue;
    for (const a of document.querySelectorAll('nav a[data-page]')) if (a.dataset.page === nav) a.setAttribute('aria-current', 'page');
    try {
      await render(main, params, m[1] && decodeURIComponent(m[1]));
    } catch (e) {
      if (!(e instanceof Unauthorized)) main.append(status(`Something went wrong: ${e.message}`, 'error'));
    }
    main.dataset.ready = '1'; // for the browser tests: the page is drawn
    performance.mark('kubetrail:ready'); // for the bench (bench/run/ui.go)
    return;
  }
  main.append(h('h1', {}, 'Not found'), h('p', {}, 'No page here. ', h('a', { href: '/' }, 'Overview')));
}

start();

// The policy page (/policy): a policy pasted or loaded from a file,
// checked as `kubetrail policy check` does (each finding at its
// line:column, a click puts the caret there), one request explained as
// `policy explain` does, and the stored events replayed under it as
// `policy simulate` does (volume per rule and per level). The policy goes
// to the API in the request body only: it is not in the URL, nor kept.
import { postJSON, APIError } from '../api.js';
import { h, status } from '../dom.js';

export async function policy(main) {
  document.title = 'Policy · kubetrail';
  const text = h('textarea', { id: 'policy-text', name: 'policy', rows: 18, spellcheck: 'false', class: 'policy',
    placeholder: 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata' });
  const file = h('input', { type: 'file', name: 'file', accept: '.yaml,.yml,.json,text/yaml,application/json' });
  file.addEventListener('change', async () => {
    if (file.files.length) text.value = await file.files[0].text();
  });
  const checkOut = h('div', { class: 'policy-check', 'aria-live': 'polite' });
  const explainOut = h('div', { class: 'policy-explain', 'aria-live': 'polite' });
  const simOut = h('div', { class: 'policy-simulate', 'aria-live': 'polite' });

  const field = (label, name, attrs) => h('label', {}, label + ' ', h('input', { name, ...attrs }));
  const explainForm = h('form', { class: 'range', onsubmit: (e) => { e.preventDefault(); explain(text, explainForm, explainOut); } },
    field('User', 'user', { size: 14, placeholder: 'alice' }),
    field('Groups', 'groups', { size: 14, placeholder: 'dev, ops' }),
    h('label', {}, h('input', { type: 'checkbox', name: 'unauthenticated' }), ' Unauthenticated'),
    field('Verb', 'verb', { size: 8, value: 'get' }),
    field('Resource', 'resource', { size: 16, placeholder: 'pods/exec' }),
    field('Namespace', 'namespace', { size: 12 }),
    field('Name', 'name', { size: 12 }),
    field('URL', 'url', { size: 12, placeholder: '/healthz' }),
    h('button', { type: 'submit' }, 'Explain'));
  const since = h('input', { name: 'since', value: '24h', size: 20 });

  main.append(h('h1', {}, 'Policy'),
    h('p', {}, 'Paste an audit policy or load its file. It is sent to the server only to answer, and kept nowhere.'),
    h('div', { class: 'policy-source' },
      h('label', { for: 'policy-text' }, 'Audit policy'), text,
      h('p', { class: 'row' }, h('label', {}, 'Load a file ', file),
        h('button', { type: 'button', onclick: () => check(text, checkOut) }, 'Check'))),
    h('h2', {}, 'Findings'), checkOut,
    h('h2', {}, 'Explain a request'), explainForm, explainOut,
    h('h2', {}, 'Simulate over the stored events'),
    h('form', { class: 'range', onsubmit: (e) => { e.preventDefault(); simulate(text, since.value, simOut); } },
      h('label', {}, 'Since ', since), h('button', { type: 'submit' }, 'Simulate')),
    simOut);
  checkOut.append(h('p', { class: 'empty' }, 'Check the policy to see its findings.'));
}

// failure says what went wrong; a policy that does not load lists its
// problems as check does.
function failure(out, text, e) {
  if (e instanceof APIError && e.errors.length) {
    out.replaceChildren(status('The policy does not load:', 'error'), problems(text, e.errors.map((p) => ({ ...p, severity: 'error' }))));
    return;
  }
  out.replaceChildren(status(e instanceof APIError ? `The server answered ${e.status}${e.parameter ? ` about ${e.parameter}` : ''}: ${e.message}` : `Could not ask the server: ${e.message}`, 'error'));
}

async function check(text, out) {
  out.replaceChildren(status('Checking…'));
  let ans;
  try {
    ans = (await postJSON('/api/v1/policy/check', {}, text.value)).body;
  } catch (e) {
    failure(out, text, e);
    return;
  }
  const items = ans.errors.map((p) => ({ ...p, severity: 'error', code: p.ignored ? 'ignored-field' : 'load', fix: p.hint }))
    .concat(ans.findings);
  const errs = items.filter((f) => f.severity === 'error').length;
  const warns = items.filter((f) => f.severity === 'warning').length;
  out.replaceChildren(h('p', { class: 'summary' }, `${ans.rules} rules, ${errs} errors, ${warns} warnings, ${items.length - errs - warns} notes.`));
  if (items.length) out.append(problems(text, items));
}

// problems lists findings or load errors, each a button that puts the
// caret at its line and column in the policy.
function problems(text, items) {
  return h('ul', { class: 'findings' }, items.map((f) => {
    const where = f.line ? `${f.line}:${f.column || 1}` : 'policy';
    return h('li', {},
      h('button', { type: 'button', class: 'link where', onclick: () => caret(text, f.line, f.column) }, where), ' ',
      h('span', { class: `sev sev-${f.severity === 'error' ? 'high' : f.severity === 'warning' ? 'medium' : 'low'}` }, f.severity), ' ',
      f.code ? h('code', {}, f.code) : null, f.code ? ' ' : null,
      f.path ? `${f.path}: ` : null, f.message,
      f.fix ? h('span', { class: 'fix' }, ` Fix: ${f.fix}`) : null);
  }));
}

// caret moves the policy's caret to line:column (1-based) and scrolls it
// into view.
function caret(text, line, column) {
  if (!line) return;
  const lines = text.value.split('\n');
  let at = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) at += lines[i].length + 1;
  at += Math.min(Math.max((column || 1) - 1, 0), (lines[line - 1] || '').length);
  text.focus();
  text.setSelectionRange(at, at);
  const lh = parseFloat(getComputedStyle(text).lineHeight) || 18;
  text.scrollTop = Math.max(0, (line - 3) * lh);
}

async function explain(text, form, out) {
  const v = (n) => form.elements[n].value.trim();
  const params = new URLSearchParams();
  for (const n of ['verb', 'resource', 'namespace', 'name', 'url']) if (v(n)) params.set(n, v(n));
  if (form.elements.unauthenticated.checked) params.set('unauthenticated', '1');
  else if (v('user')) params.set('user', v('user'));
  for (const g of v('groups').split(',')) if (g.trim()) params.append('group', g.trim());
  out.replaceChildren(status('Explaining…'));
  let x;
  try {
    x = (await postJSON('/api/v1/policy/explain?' + params.toString(), {}, text.value)).body;
  } catch (e) {
    failure(out, text, e);
    return;
  }
  const parts = [h('p', { class: 'decision' }, x.rule < 0 ? `No rule matches: level ${x.level} (not logged).` : `Rule ${x.rule} (line ${x.ruleLine}) decides: level ${x.level}.`,
    x.omitStages.length ? ` No event at ${x.omitStages.join(', ')}.` : '', x.omitManagedFields ? ' managedFields dropped.' : '')];
  if (x.ruleText && x.ruleText.length) parts.push(h('pre', { class: 'rule' }, x.ruleText.join('\n')));
  if (x.misses.length) {
    parts.push(h('p', {}, 'Earlier rules, and why they do not match:'), h('ul', { class: 'misses' }, x.misses.map((m) =>
      h('li', {}, `rule ${m.rule}${m.line ? ` (line ${m.line})` : ''}: `, h('code', {}, m.criterion), ` ${m.reason}`))));
  }
  out.replaceChildren(...parts);
}

// humanBytes writes a size as the CLI does (KiB, MiB, GiB).
function humanBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i ? `${n.toFixed(1)} ${units[i]}` : `${n} B`;
}

async function simulate(text, since, out) {
  out.replaceChildren(status('Replaying the stored events…'));
  let ans, damage;
  try {
    ({ body: ans, damage } = await postJSON('/api/v1/policy/simulate', { since }, text.value));
  } catch (e) {
    failure(out, text, e);
    return;
  }
  const row = (name, t) => h('tr', {}, h('th', { scope: 'row' }, name), h('td', { class: 'num' }, String(t.events)), h('td', { class: 'num' }, humanBytes(t.bytes)));
  const head = (what) => h('thead', {}, h('tr', {}, [what, 'Events', 'Bytes'].map((t) => h('th', { scope: 'col' }, t))));
  const parts = [h('p', { class: 'summary' }, `${ans.events} stored events since ${ans.since} (${humanBytes(ans.bytes)}): the policy would log ${ans.kept} (${humanBytes(ans.keptBytes)}).`)];
  if (damage.length) parts.push(status(`Damaged events left out: ${damage.join('; ')}`, 'error'));
  if (ans.events) {
    parts.push(h('div', { class: 'sim-tables' },
      h('table', { class: 'by-rule' }, h('caption', {}, 'Per rule'), head('Rule'),
        h('tbody', {}, ans.byRule.map((t) => row(t.rule < 0 ? 'no rule (None)' : `rule ${t.rule}${t.line ? ` (line ${t.line})` : ''}`, t)))),
      h('table', { class: 'by-level' }, h('caption', {}, 'Per level'), head('Level'),
        h('tbody', {}, ans.byLevel.map((t) => row(t.level, t))))));
  }
  if (ans.unknown) parts.push(h('p', {}, `${ans.unknown} events are asked at a higher level than they were recorded at: their sizes are lower bounds.`));
  if (ans.secretsExposed) {
    parts.push(status(`${ans.secretsExposed} events on secrets, configmaps or tokens would be logged with their contents, for example:`, 'error'),
      h('ul', {}, ans.examples.map((x) => h('li', {}, x.what, x.count > 1 ? ` (${x.count} times)` : ''))));
  }
  out.replaceChildren(...parts);
}

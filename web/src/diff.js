// Diffs between an object's versions, as the history investigation
// computes them (GET /api/v1/investigate/history): the object page shows
// one per change, the event page the one of its own update or patch.
import { h } from './dom.js';

// diffView shows a unified diff, a line each, removed and added lines
// marked by class (and by their - and + for those who cannot see colour).
export function diffView(text, label) {
  const lines = text.split('\n');
  return h('pre', { class: 'diff', 'aria-label': label }, lines.map((l) => h('span', {
    class: l.startsWith('@@') ? 'hunk' : l.startsWith('+') ? 'add' : l.startsWith('-') ? 'del' : '',
  }, l, '\n')));
}

// firstSeen tells a diff that adds the whole object: a creation, or a
// change with no earlier version recorded to compare with.
export function firstSeen(diff) {
  return /^@@ -0,0 /.test(diff);
}

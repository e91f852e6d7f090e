// A table of many rows that stays fast: past `virtualAbove` rows only the
// rows in view (and a screenful around them) are in the page, between two
// spacer rows as tall as the rows left out, so that 100,000 results scroll
// as smoothly as 100. Rows have one fixed height (cells do not wrap) for
// that. Below the threshold every row is in the page (the browser's find
// works on all of them). Sizes are set through the CSSOM, which the
// Content-Security-Policy allows (no style attributes).
import { h } from './dom.js';

const virtualAbove = 500;
const overscan = 30;

// VirtualTable shows count() rows; row(i) builds the i-th. Call refresh()
// when rows were added.
export class VirtualTable {
  constructor(cls, caption, head, count, row) {
    this.count = count;
    this.row = row;
    this.body = h('tbody', {});
    this.table = h('table', { class: cls },
      h('caption', { class: 'visually-hidden' }, caption),
      h('thead', {}, h('tr', { 'aria-rowindex': 1 }, head.map((t) => h('th', { scope: 'col' }, t)))),
      this.body);
    this.el = h('div', { class: 'scroll rows' }, this.table);
    this.rowHeight = 0;
    this.first = -1;
    this.last = -1;
    this.shown = 0;
    this.el.addEventListener('scroll', () => this.schedule());
    window.addEventListener('resize', () => this.schedule());
  }

  schedule() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.draw(false);
    });
  }

  refresh() {
    this.draw(true);
  }

  draw(changed) {
    const n = this.count();
    this.table.setAttribute('aria-rowcount', String(n + 1));
    if (n <= virtualAbove) {
      if (changed || this.shown !== n || this.first !== 0) {
        this.body.replaceChildren(...Array.from({ length: n }, (_, i) => this.numbered(i)));
        this.first = 0;
        this.last = n;
        this.shown = n;
      }
      this.el.classList.remove('virtual');
      return;
    }
    this.el.classList.add('virtual');
    if (!this.rowHeight) {
      const probe = this.numbered(0);
      this.body.replaceChildren(probe);
      this.rowHeight = probe.getBoundingClientRect().height || 28;
    }
    const rh = this.rowHeight;
    const headH = this.table.tHead.getBoundingClientRect().height;
    const top = Math.max(0, this.el.scrollTop - headH);
    const first = Math.max(0, Math.floor(top / rh) - overscan);
    const last = Math.min(n, Math.ceil((top + this.el.clientHeight) / rh) + overscan);
    if (!changed && first === this.first && last === this.last) return;
    this.first = first;
    this.last = last;
    this.shown = n;
    const rows = [this.spacer(first * rh)];
    for (let i = first; i < last; i++) rows.push(this.numbered(i));
    rows.push(this.spacer((n - last) * rh));
    this.body.replaceChildren(...rows);
  }

  numbered(i) {
    const tr = this.row(i);
    tr.setAttribute('aria-rowindex', String(i + 2));
    return tr;
  }

  spacer(px) {
    const td = h('td', { colspan: this.table.tHead.rows[0].cells.length });
    const tr = h('tr', { class: 'spacer', 'aria-hidden': 'true' }, td);
    td.style.height = `${px}px`;
    return tr;
  }
}

// The history view: dismissed notifications, newest first, read-only
// (GET /notifications?is_dismissed=true). Kept apart from the live list:
// the live store forgets dismissed items on purpose, so they never come back there.

import { request } from './api.js';

function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

function row(n) {
  // Text only, never HTML: titles are written by arbitrary apps on the phone.
  const li = document.createElement('li');
  li.className = 'note dismissed';
  li.dataset.id = n.id;
  const head = document.createElement('div');
  head.className = 'note-head';
  for (const [cls, text] of [['app', n.app_name || ''], [`cat cat-${String(n.category || '').toLowerCase()}`, n.category || '']]) {
    const span = document.createElement('span');
    span.className = cls;
    span.textContent = text;
    head.append(span);
  }
  const time = document.createElement('time');
  time.className = 'time';
  time.dateTime = n.created_at || '';
  time.textContent = when(n.created_at);
  head.append(time);
  const title = document.createElement('h3');
  title.className = 'title';
  title.textContent = n.title || n.app_name || '';
  li.append(head, title);
  if (n.body) {
    const body = document.createElement('p');
    body.className = 'body';
    body.textContent = n.body;
    li.append(body);
  }
  return li;
}

export class History {
  constructor(list, more) {
    this.list = list;
    this.more = more;
    this.cursor = null;
    this.filters = {};
    this.generation = 0;
  }

  /** Start over with these filters ({category, q}); resolves when the first page is shown. */
  async reload(filters) {
    this.filters = filters;
    this.cursor = null;
    this.list.replaceChildren();
    return this.next(++this.generation);
  }

  async next(gen = this.generation) {
    const q = new URLSearchParams({ is_dismissed: 'true', limit: '50' });
    if (this.filters.category) q.set('category', this.filters.category);
    if (this.filters.q) q.set('q', this.filters.q);
    if (this.cursor) q.set('before', this.cursor);
    const page = await request('GET', `/notifications?${q}`);
    if (gen !== this.generation) return; // a newer reload won
    this.list.append(...(page.notifications || []).map(row));
    this.cursor = page.next_cursor || null;
    this.more.hidden = !this.cursor;
  }
}

/**
 * The "History" toggle: swaps the live list for the dismissed one. ``filters``
 * gives the current {category, q}; ``render`` redraws the live list.
 */
export class HistoryView {
  constructor({ filters, render, showError }) {
    this.filters = filters;
    this.render = render;
    this.showError = showError;
    this.history = null;
    const $ = (id) => document.getElementById(id);
    this.$ = $;
    $('history-toggle').addEventListener('click', () => this.toggle());
    $('history-more').addEventListener('click', () => this.history && this.history.next().catch(() => {}));
  }

  get active() { return this.history !== null; }

  toggle() {
    const $ = this.$;
    const on = !this.history;
    $('history-toggle').setAttribute('aria-pressed', String(on));
    for (const id of ['notifications', 'mark-all-read', 'clear-all']) $(id).hidden = on;
    $('history').hidden = !on;
    if (on) {
      $('empty').hidden = true;
      $('load-more').hidden = true;
      this.history = new History($('history'), $('history-more'));
      this.refresh();
    } else {
      this.history = null;
      $('history').replaceChildren();
      $('history-more').hidden = true;
      this.render();
    }
  }

  off() { if (this.history) this.toggle(); }

  async refresh() {
    if (!this.history) return;
    this.showError('');
    try {
      await this.history.reload(this.filters());
    } catch (err) {
      if (err.status !== 401) this.showError(`Could not load the history: ${err.message}`);
    }
  }
}

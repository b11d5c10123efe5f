// DOM rendering. Everything that came from a notification or a device is set
// with textContent or attributes on elements made by createElement: titles are
// written by arbitrary apps on the phone and must never be parsed as HTML.

import { formatWhen, fullWhen } from './dates.js';

export const $ = (id) => document.getElementById(id);

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'text') node.textContent = value;
    else if (key === 'class') node.className = value;
    else if (key in node && !key.startsWith('aria') && !key.startsWith('data')) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

/** The words used for a notification in labels, never empty. */
export function labelOf(n) {
  return (n.title || '').trim() || (n.app_name || '').trim() || 'notification';
}

// -- notifications ----------------------------------------------------------

const noteNodes = new Map(); // id -> <li>, kept across renders so focus and scroll survive

function createNote(n, { onRead, onDismiss, onInvoke }) {
  const li = el('li', { class: 'note', 'data-id': n.id });
  const dot = el('span', { class: 'dot', role: 'img', 'aria-label': 'unread' });
  const app = el('span', { class: 'app' });
  const cat = el('span', { class: 'cat' });
  const time = el('time', { class: 'time' });
  const title = el('h3', { class: 'title' });
  const body = el('p', { class: 'body' });
  const read = el('button', { type: 'button', class: 'read', text: 'Read' });
  const dismiss = el('button', { type: 'button', class: 'dismiss', text: 'Dismiss' });
  read.addEventListener('click', () => onRead(li.dataset.id));
  dismiss.addEventListener('click', () => onDismiss(li.dataset.id));
  const invokes = el('div', { class: 'note-actions' });
  li.append(
    el('div', { class: 'note-head' }, [dot, app, cat, time]),
    title, body, invokes,
    el('div', { class: 'actions' }, [read, dismiss]),
  );
  li.parts = { dot, app, cat, time, title, body, read, dismiss, invokes };
  li.onInvoke = onInvoke;
  return li;
}

/**
 * The notification's own actions: a button each, a reply box for "reply".
 * Rebuilt only when the actions change (an update in place), so a reply
 * being typed survives every other render.
 */
function renderInvokes(li, n) {
  const actions = Array.isArray(n.actions) ? n.actions : [];
  const key = JSON.stringify(actions);
  if (li.dataset.actionsKey === key) return;
  li.dataset.actionsKey = key;
  const label = labelOf(n);
  const parts = actions.map((a) => {
    if (a.type === 'reply') {
      const input = el('input', {
        type: 'text', maxLength: 2000, placeholder: a.label || 'Reply', 'aria-label': `${a.label || 'Reply'}: ${label}`,
      });
      const send = el('button', { type: 'submit', text: 'Send', 'aria-label': `Send ${a.label || 'reply'}: ${label}` });
      const form = el('form', { class: 'reply' }, [input, send]);
      form.addEventListener('submit', (ev) => {
        ev.preventDefault();
        const text = input.value;
        if (!text.trim()) return;
        input.value = '';
        li.onInvoke(li.dataset.id, a.id, text);
      });
      return form;
    }
    const button = el('button', { type: 'button', class: 'invoke', text: a.label || a.id, 'aria-label': `${a.label || a.id}: ${label}` });
    button.addEventListener('click', () => li.onInvoke(li.dataset.id, a.id));
    return button;
  });
  li.parts.invokes.replaceChildren(...parts);
  li.parts.invokes.hidden = parts.length === 0;
}

function updateNote(li, n) {
  const p = li.parts;
  const label = labelOf(n);
  li.classList.toggle('unread', !n.is_read);
  li.dataset.unread = String(!n.is_read);
  li.dataset.category = n.category || '';
  p.dot.hidden = Boolean(n.is_read);
  p.app.textContent = n.app_name || '';
  p.cat.textContent = n.category || '';
  p.cat.className = `cat cat-${String(n.category || '').toLowerCase()}`;
  p.time.textContent = formatWhen(n.created_at);
  p.time.setAttribute('datetime', n.created_at || '');
  p.time.title = fullWhen(n.created_at);
  p.title.textContent = n.title || n.app_name || '';
  p.body.textContent = n.body || '';
  p.body.hidden = !n.body;
  // Hiding a focused button drops focus to <body>; hand it to Dismiss instead.
  if (n.is_read && document.activeElement === p.read) p.dismiss.focus();
  p.read.hidden = Boolean(n.is_read);
  p.read.setAttribute('aria-label', `Mark read: ${label}`);
  p.dismiss.setAttribute('aria-label', `Dismiss: ${label}`);
  renderInvokes(li, n);
}

/** Keyed update: existing rows are moved, not rebuilt, so a focused button keeps focus. */
export function renderNotifications(list, items, handlers) {
  const keep = new Set(items.map((n) => n.id));
  let refocus = null;
  for (const [id, li] of noteNodes) {
    if (keep.has(id)) continue;
    if (li.contains(document.activeElement)) refocus = li.nextElementSibling || li.previousElementSibling;
    li.remove();
    noteNodes.delete(id);
  }
  let prev = null;
  for (const n of items) {
    let li = noteNodes.get(n.id);
    if (!li) {
      li = createNote(n, handlers);
      noteNodes.set(n.id, li);
    }
    updateNote(li, n);
    const want = prev ? prev.nextElementSibling : list.firstElementChild;
    if (li !== want) list.insertBefore(li, want);
    prev = li;
  }
  // A keyboard user who dismissed an item lands on its neighbour, not on <body>.
  if (refocus && refocus.isConnected) refocus.querySelector('button:not([hidden])')?.focus();
}

export function clearNotifications(list) {
  noteNodes.clear();
  list.replaceChildren();
}

// -- devices ----------------------------------------------------------------

export function renderDevices(list, devices, ownId, { onRename, onRevoke, onKeys }) {
  const editing = list.querySelector('form.rename');
  if (editing) return; // do not yank the input from under the user; next render catches up
  list.replaceChildren(...devices.map((d) => deviceRow(d, ownId, { onRename, onRevoke, onKeys })));
}

function deviceRow(d, ownId, { onRename, onRevoke, onKeys }) {
  const own = d.id === ownId;
  const online = d.status === 'online';
  const name = el('span', { class: 'device-name', text: d.device_name || d.id });
  const status = el('span', {
    class: `status ${online ? 'online' : 'offline'}`,
    text: online ? 'online' : 'offline',
    'data-status': online ? 'online' : 'offline',
  });
  const meta = el('span', { class: 'device-type muted small', text: d.device_type || '' });
  // Online says it all; otherwise when it was last heard from (socket or REST post).
  const seen = !online && d.last_seen ? formatWhen(d.last_seen) : '';
  const lastSeen = el('span', { class: 'last-seen muted small', text: seen ? `last seen ${seen}` : '' });
  if (seen) { lastSeen.title = fullWhen(d.last_seen); lastSeen.setAttribute('datetime', d.last_seen); }
  lastSeen.hidden = !seen;
  const head = el('div', { class: 'device-head' }, [name]);
  if (own) head.append(el('span', { class: 'tag', text: 'this browser' }));
  const rename = el('button', { type: 'button', text: 'Rename', 'aria-label': `Rename device: ${d.device_name}` });
  const actions = el('div', { class: 'actions' }, [rename]);
  if (onKeys) {
    const keys = el('button', { type: 'button', text: 'API keys', 'aria-label': `API keys of device: ${d.device_name}` });
    keys.addEventListener('click', () => onKeys(d));
    actions.append(keys);
  }
  if (!own) {
    const revoke = el('button', { type: 'button', class: 'danger', text: 'Revoke', 'aria-label': `Revoke device: ${d.device_name}` });
    revoke.addEventListener('click', () => onRevoke(d));
    actions.append(revoke);
  }
  const li = el('li', { class: 'device', 'data-id': d.id, 'data-own': String(own) }, [
    head, el('div', { class: 'device-meta' }, [status, lastSeen, meta]), actions,
  ]);
  rename.addEventListener('click', () => startRename(li, d, onRename));
  return li;
}

function startRename(li, d, onRename) {
  const input = el('input', { type: 'text', value: d.device_name || '', maxLength: 100, required: true, 'aria-label': `New name for ${d.device_name}` });
  const save = el('button', { type: 'submit', class: 'primary', text: 'Save', 'aria-label': `Save name for ${d.device_name}` });
  const cancel = el('button', { type: 'button', text: 'Cancel', 'aria-label': 'Cancel rename' });
  const form = el('form', { class: 'rename' }, [input, el('div', { class: 'actions' }, [save, cancel])]);
  const original = [...li.childNodes];
  cancel.addEventListener('click', () => { li.replaceChildren(...original); });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    li.replaceChildren(...original);
    onRename(d, value);
  });
  li.replaceChildren(form);
  input.focus();
  input.select();
}

// -- connection indicator ---------------------------------------------------

const CONN_TEXT = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
  revoked: 'Disconnected: this browser was revoked',
  stopped: 'Disconnected',
};

export function renderConnection(state) {
  const box = $('conn');
  box.dataset.state = state;
  $('conn-text').textContent = CONN_TEXT[state] || state;
}

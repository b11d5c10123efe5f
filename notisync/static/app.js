// NotiSync dashboard: wires the session, this browser's device, the live
// stream and the views together. Modules: api.js (REST + tokens),
// socket.js (stream), store.js (state), ui.js (DOM).

import * as api from './api.js';
import { Stream, lastIdKey } from './socket.js';
import { NotificationStore } from './store.js';
import { initHub, loadHub, devicesChanged } from './hub.js';
import { Popups } from './popups.js';
import { $, renderNotifications, clearNotifications, renderDevices, renderConnection, labelOf } from './ui.js';

const OWN_PREFIX = 'notisync.';
const deviceKey = (userId) => `notisync.device.${userId}`;

const store = new NotificationStore();
// Browser pop-ups while the tab is hidden; clicking one focuses us and sends clicked.
const popups = new Popups({ onActivate: (id) => act(id, 'clicked') });
let devices = [];
let deviceId = null;
let stream = null;
let listGeneration = 0; // a newer list request makes older answers irrelevant
let startTimer = 0;
let epoch = 0;          // bumped by teardown: work started for an older session stops

// -- views -------------------------------------------------------------------

function showAuth(message = '') {
  $('app-view').hidden = true;
  $('account').hidden = true;
  $('conn').hidden = true;
  $('auth-view').hidden = false;
  $('auth-error').textContent = message;
  document.title = 'NotiSync';
}

function showApp() {
  const session = api.currentSession();
  $('auth-view').hidden = true;
  $('app-view').hidden = false;
  $('account').hidden = false;
  $('conn').hidden = false;
  $('account-email').textContent = session.user.email;
  $('banner').hidden = true;
}

function render() {
  const items = store.visible();
  renderNotifications($('notifications'), items, { onRead, onDismiss, onInvoke });
  $('enable-popups').hidden = popups.permission !== 'default';
  $('empty').hidden = !store.loaded || items.length > 0;
  $('load-more').hidden = !store.cursor;
  const unread = items.filter((n) => !n.is_read).length;
  $('unread-count').textContent = unread ? `${unread} unread` : '';
  document.title = unread ? `(${unread}) NotiSync` : 'NotiSync';
}

function showDevices() {
  // The server never tells a device about itself, and our own presence may
  // not be registered yet when we list: our socket state is the truth.
  const online = stream && stream.state === 'connected';
  const shown = devices.map((d) => (d.id === deviceId ? { ...d, status: online ? 'online' : 'offline' } : d));
  renderDevices($('devices'), shown, deviceId, { onRename, onRevoke });
  devicesChanged();
}

// -- auth --------------------------------------------------------------------

async function onAuthSubmit(ev) {
  ev.preventDefault();
  const mode = ev.submitter && ev.submitter.value === 'signup' ? 'signup' : 'login';
  const email = $('email').value.trim();
  const password = $('password').value;
  const error = $('auth-error');
  error.textContent = '';
  if (!email || !password) { error.textContent = 'Enter your email and password.'; return; }
  if (mode === 'signup' && password.length < 8) { error.textContent = 'The password needs at least 8 characters.'; return; }
  const buttons = $('auth-form').querySelectorAll('button');
  buttons.forEach((b) => { b.disabled = true; });
  try {
    await (mode === 'signup' ? api.signup(email, password) : api.login(email, password));
    $('password').value = '';
    await start();
  } catch (err) {
    error.textContent = authMessage(err, mode);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function authMessage(err, mode) {
  if (err.status === 409) return 'An account with this email already exists. Log in instead.';
  if (err.status === 401) return 'Wrong email or password.';
  if (err.status === 429) return 'Too many attempts. Wait a minute and try again.';
  if (err.status === 400) return Object.values(err.fields).join(' ') || err.message;
  return `Could not ${mode === 'signup' ? 'sign up' : 'log in'}: ${err.message}`;
}

async function logout() {
  const ownDevice = deviceId;
  teardown();
  // Logging out ends this browser as a device too: otherwise its queue would
  // keep filling for a device id nobody will ever use again.
  if (ownDevice && api.currentSession()) {
    try { await api.revokeDevice(ownDevice); } catch { /* best effort */ }
  }
  api.clearSession();
  for (let i = localStorage.length - 1; i >= 0; i -= 1) {
    const key = localStorage.key(i);
    if (key && key.startsWith(OWN_PREFIX)) localStorage.removeItem(key);
  }
  for (let i = sessionStorage.length - 1; i >= 0; i -= 1) {
    const key = sessionStorage.key(i);
    if (key && key.startsWith(OWN_PREFIX)) sessionStorage.removeItem(key);
  }
  showAuth();
}

function teardown() {
  epoch += 1;
  clearTimeout(startTimer);
  if (stream) stream.stop();
  stream = null;
  deviceId = null;
  devices = [];
  listGeneration += 1;
  store.reset(null);
  clearNotifications($('notifications'));
  $('devices').replaceChildren();
}

// -- start-up ----------------------------------------------------------------

function deviceName() {
  const ua = navigator.userAgent;
  const browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox'
    : /Chrom(e|ium)\//.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : 'Browser';
  const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Mac OS/.test(ua) ? 'macOS'
    : /Windows/.test(ua) ? 'Windows' : /Linux/.test(ua) ? 'Linux' : 'web';
  return `${browser} on ${os}`;
}

/** Register once per user and browser; the POST is idempotent for a known id. */
async function ensureDevice(userId) {
  let id = localStorage.getItem(deviceKey(userId));
  for (let tries = 0; tries < 2; tries += 1) {
    if (!id) id = crypto.randomUUID();
    try {
      const device = await api.registerDevice(id, deviceName());
      localStorage.setItem(deviceKey(userId), device.id);
      return device.id;
    } catch (err) {
      // 409: the stored id was revoked (or is someone else's): start over with a new one.
      if (err.status !== 409) throw err;
      localStorage.removeItem(lastIdKey(id));
      id = null;
    }
  }
  throw new Error('could not register this browser');
}

async function start() {
  teardown();
  showApp();
  renderConnection('connecting');
  const mine = epoch;
  try {
    const id = await ensureDevice(api.currentSession().user.id);
    if (mine !== epoch) return; // logged out while registering
    deviceId = id;
  } catch (err) {
    if (mine !== epoch) return;
    if (err.status === 401) return; // the session ended; the login form is showing
    // Server unreachable or busy: keep trying, as the socket would.
    renderConnection('reconnecting');
    $('list-error').textContent = `Could not register this browser (${err.message}); retrying…`;
    startTimer = setTimeout(start, 3_000 + Math.random() * 2_000);
    return;
  }
  // The stream's resume point is taken before the history is fetched, so
  // nothing can fall between the two; frames that overlap the page merge by id.
  const current = new Stream({ deviceId, getTicket: api.wsTicket, onFrame, onState, onPolicyClose });
  stream = current;
  await Promise.all([reloadList(), refreshDevices(), loadHub()]);
  if (mine === epoch) current.start(); // unless logged out meanwhile
}

// -- notifications -------------------------------------------------------------

async function reloadList(category = store.category) {
  const gen = ++listGeneration;
  store.reset(category);
  clearNotifications($('notifications'));
  render();
  await loadPage(gen);
}

async function loadPage(gen = listGeneration) {
  const list = $('notifications');
  list.setAttribute('aria-busy', 'true');
  $('list-error').textContent = '';
  try {
    const page = await api.listNotifications({ category: store.category, before: store.cursor });
    if (gen !== listGeneration) return;
    store.addPage(page);
  } catch (err) {
    if (gen === listGeneration && err.status !== 401) $('list-error').textContent = `Could not load notifications: ${err.message}`;
  } finally {
    list.setAttribute('aria-busy', 'false');
  }
  render();
}

async function act(id, action) {
  const previous = store.items.get(id);
  popups.withdraw(id);
  if (action === 'dismissed') store.dismiss(id); else store.markRead(id); // clicked also marks read
  render(); // optimistic: the server only ever moves flags forward, so it will agree
  try {
    await api.actOn(id, action, deviceId);
  } catch (err) {
    if (err.status === 404) { store.dismiss(id); render(); return; } // gone (expired): drop it
    $('list-error').textContent = `Could not update “${previous ? labelOf(previous) : 'notification'}”: ${err.message}`;
    if (previous && action === 'dismissed') store.dismissed.delete(id);
    if (previous && action === 'read' && !previous.is_read) store.read.delete(id);
    if (previous) store.items.set(id, previous);
    render();
  }
}

async function onInvoke(id, actionId, replyText) {
  $('list-error').textContent = '';
  try {
    await api.invokeAction(id, actionId, replyText, deviceId);
  } catch (err) {
    const n = store.items.get(id);
    $('list-error').textContent = `Could not send to the phone (“${n ? labelOf(n) : 'notification'}”): ${err.message}`;
  }
}

const onRead = (id) => act(id, 'read');
const onDismiss = (id) => act(id, 'dismissed');

function setFilter(button) {
  document.querySelectorAll('.filter').forEach((b) => b.setAttribute('aria-pressed', String(b === button)));
  reloadList(button.dataset.category || null);
}

// -- stream --------------------------------------------------------------------

function onFrame(frame) {
  const data = frame.data || {};
  switch (frame.type) {
    case 'new_notification':
      store.upsert(data);
      popups.show(data);
      render();
      break;
    case 'notification_updated':
      store.upsert(data); // same id: the card changes in place, flags only ever move forward
      popups.update(data);
      render();
      break;
    case 'notification_sync':
      store.applySync(data);
      if (data.is_read || data.is_dismissed) popups.withdraw(data.notification_id);
      render();
      break;
    case 'device_status': {
      const known = devices.find((d) => d.id === data.device_id);
      if (known) { known.status = data.status; showDevices(); } else { refreshDevices(); }
      break;
    }
    case 'sync_required':
      // The stream could not cover the gap: REST is the source of truth.
      reloadList();
      break;
    default:
      break; // pong, ack, error: nothing to show
  }
}

function onState(state) {
  renderConnection(state);
  showDevices();
  // Presence may have changed while we were away. (Once revoked, this tab's
  // session has ended too: a REST call now would only send it to the login form.)
  if (state === 'connected') refreshDevices();
  if (state === 'revoked') {
    $('banner-text').textContent = 'This browser was removed from your devices, so it no longer receives notifications.';
    $('banner').hidden = false;
  }
}

/** After a 1008 close: the reason says "device revoked" when it is; else ask REST whether our device still exists. */
async function onPolicyClose(reason) {
  // Revoking this browser also ends its session, so REST could only answer 401 now.
  if (reason === 'device revoked') return 'revoked';
  try {
    await api.getDevice(deviceId);
    return 'retry';
  } catch (err) {
    if (err.status === 404) return 'revoked';
    if (err.status === 401) return 'session';
    return 'retry';
  }
}

// -- devices ---------------------------------------------------------------------

async function refreshDevices() {
  try {
    const body = await api.listDevices();
    devices = body.devices || [];
    $('devices-error').textContent = '';
    showDevices();
  } catch (err) {
    if (err.status !== 401) $('devices-error').textContent = `Could not load devices: ${err.message}`;
  }
}

async function onRename(device, name) {
  try {
    const updated = await api.renameDevice(device.id, name);
    devices = devices.map((d) => (d.id === updated.id ? { ...d, ...updated } : d));
  } catch (err) {
    $('devices-error').textContent = `Could not rename “${device.device_name}”: ${err.message}`;
  }
  showDevices();
}

async function onRevoke(device) {
  if (!window.confirm(`Revoke “${device.device_name}”? It will be signed out and stop receiving notifications.`)) return;
  try {
    await api.revokeDevice(device.id);
    devices = devices.filter((d) => d.id !== device.id);
  } catch (err) {
    if (err.status !== 404) $('devices-error').textContent = `Could not revoke “${device.device_name}”: ${err.message}`;
  }
  refreshDevices();
}

// -- boot --------------------------------------------------------------------------

function boot() {
  api.setSessionEndHandler((message) => { teardown(); showAuth(message); });
  initHub(() => devices);
  $('auth-form').addEventListener('submit', onAuthSubmit);
  $('logout').addEventListener('click', logout);
  $('load-more').addEventListener('click', () => loadPage());
  $('reregister').addEventListener('click', () => {
    localStorage.removeItem(deviceKey(api.currentSession().user.id));
    start();
  });
  document.querySelectorAll('.filter').forEach((b) => b.addEventListener('click', () => setFilter(b)));
  $('enable-popups').addEventListener('click', async () => { await popups.ask(); render(); });
  // Background tabs have their timers throttled: check the token when we come back.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && api.currentSession()) api.scheduleRefresh();
  });
  if (api.currentSession()) {
    api.scheduleRefresh();
    start();
  } else {
    showAuth();
  }
}

boot();

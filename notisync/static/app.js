// NotiSync dashboard: wires the session, this browser's device, the live
// stream and the views together. Modules: api.js (REST + tokens, with
// keptstore.js for "Keep me signed in"), signin.js (the sign-in form),
// device.js (this browser's device id), socket.js (stream), store.js (state),
// ui.js and dates.js (DOM), devicelist.js (Devices).

import * as api from './api.js';
import { Stream } from './socket.js';
import { clearOwnStorage, ensureDevice, forgetDevice } from './device.js';
import { fetchCounts, actOnAll, debounce } from './bulk.js';
import { HistoryView } from './history.js';
import { KeysPanel } from './keys.js';
import { NotificationStore } from './store.js';
import { initHub, loadHub } from './hub.js';
import { DeviceList } from './devicelist.js';
import { TabSync } from './tabs.js';
import { Popups } from './popups.js';
import { authMessage, browserName, initSignIn, signInChoices } from './signin.js';
import { $, renderNotifications, clearNotifications, renderConnection, labelOf } from './ui.js';

const store = new NotificationStore();
// Browser pop-ups while the tab is hidden; clicking one focuses us and sends clicked.
const popups = new Popups({ onActivate: (id) => act(id, 'clicked') });
let deviceId = null;
let stream = null;
let listGeneration = 0; // a newer list request makes older answers irrelevant
let startTimer = 0;
let epoch = 0;          // bumped by teardown: work started for an older session stops
let counts = null;      // GET /notifications/counts: the badge, whatever page is loaded
let historyView = null;    // the History toggle and its dismissed-items view (history.js)
let keysPanel = null;   // a device's API keys (keys.js)
let devices = null;     // the Devices panel (devicelist.js)
let tabs = null;        // sibling tabs of this device (tabs.js)
let chosenName = null;  // the device name typed at sign-in (signin.js)

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
  $('empty').hidden = historyView.active || !store.loaded || items.length > 0;
  $('load-more').hidden = historyView.active || !store.cursor;
  const unread = counts ? counts.unread : items.filter((n) => !n.is_read).length;
  $('mark-all-read').disabled = !items.some((n) => !n.is_read);
  $('clear-all').disabled = items.length === 0;
  $('unread-count').textContent = unread ? `${unread} unread` : '';
  document.title = unread ? `(${unread}) NotiSync` : 'NotiSync';
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
  const { name, keep } = signInChoices($('auth-form'));
  chosenName = name;
  const buttons = $('auth-form').querySelectorAll('button');
  buttons.forEach((b) => { b.disabled = true; });
  try {
    await (mode === 'signup' ? api.signup(email, password, keep) : api.login(email, password, keep));
    $('password').value = '';
    await start();
  } catch (err) {
    error.textContent = authMessage(err, mode);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
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
  clearOwnStorage();
  showAuth();
}

function teardown() {
  epoch += 1;
  clearTimeout(startTimer);
  if (stream) stream.stop();
  stream = null;
  deviceId = null;
  devices.reset();
  listGeneration += 1;
  store.reset(null);
  store.q = '';
  $('search').value = '';
  historyView.off();
  keysPanel.close();
  counts = null;
  clearNotifications($('notifications'));
}

// -- start-up ----------------------------------------------------------------

async function start() {
  teardown();
  showApp();
  renderConnection('connecting');
  const mine = epoch;
  try {
    const id = await ensureDevice(api.currentSession().user.id, chosenName || browserName());
    if (mine !== epoch) return; // logged out while registering
    deviceId = id;
    devices.ownId = id;
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
  await Promise.all([reloadList(), devices.refresh(), loadHub()]);
  if (mine === epoch) current.start(); // unless logged out meanwhile
}

// -- notifications -------------------------------------------------------------

async function reloadCounts() {
  // Offline, a fetch can only fail (and log); coming back online asks again.
  if (!navigator.onLine || !api.currentSession()) return;
  const mine = epoch;
  try {
    const fresh = await fetchCounts();
    if (mine === epoch) { counts = fresh; render(); }
  } catch { /* the badge keeps its last value; the next change asks again */ }
}

const countsSoon = debounce(reloadCounts, 250);

async function onAll(action) {
  const label = store.category || 'all categories';
  if (action === 'dismissed' && !window.confirm(`Clear every notification in ${label}?`)) return;
  $('list-error').textContent = '';
  try {
    await actOnAll(action, { category: store.category, deviceId });
    for (const n of store.visible()) { if (action === 'read') store.markRead(n.id); else store.dismiss(n.id); }
    tabs.post({ bulk: true });
    if (action === 'dismissed') await reloadList(); else render();
  } catch (err) {
    if (err.status !== 401) $('list-error').textContent = `Could not update the notifications: ${err.message}`;
  }
  countsSoon();
}

async function reloadList(category = store.category) {
  countsSoon();
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
    const page = await api.listNotifications({ category: store.category, before: store.cursor, q: store.q });
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
    tabs.post({ id, action });
    countsSoon();
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
  document.querySelectorAll('.filter[data-category]').forEach((b) => b.setAttribute('aria-pressed', String(b === button)));
  reloadList(button.dataset.category || null);
  historyView.refresh();
}

const searchSoon = debounce(() => {
  const q = $('search').value.trim();
  if (q === store.q) return;
  store.q = q;
  reloadList();
  historyView.refresh();
}, 300);

// -- stream --------------------------------------------------------------------

function onFrame(frame) {
  const data = frame.data || {};
  switch (frame.type) {
    case 'new_notification':
      devices.saw(data.source_device_id, data.created_at);
      store.upsert(data);
      popups.show(data);
      render();
      countsSoon();
      break;
    case 'notification_updated':
      store.upsert(data); // same id: the card changes in place, flags only ever move forward
      popups.update(data);
      render();
      countsSoon();
      break;
    case 'notification_sync':
      store.applySync(data);
      if (data.is_read || data.is_dismissed) popups.withdraw(data.notification_id);
      render();
      countsSoon();
      break;
    case 'device_status':
      devices.status(data, frame.timestamp);
      break;
    case 'device_changed': // added, renamed or revoked elsewhere: one GET brings the list up to date
      devices.refresh();
      break;
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
  devices.show();
  // Presence may have changed while we were away. (Once revoked, this tab's
  // session has ended too: a REST call now would only send it to the login form.)
  if (state === 'connected') { devices.refresh(); countsSoon(); }
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

// -- boot --------------------------------------------------------------------------

function boot() {
  keysPanel = new KeysPanel($('keys-panel'));
  initSignIn($('auth-form'));
  tabs = new TabSync(() => deviceId, (msg) => {
    if (msg.bulk) { reloadList(); historyView.refresh(); return; }
    if (msg.action === 'dismissed') store.dismiss(msg.id); else store.markRead(msg.id);
    popups.withdraw(msg.id);
    render();
    countsSoon();
  });
  devices = new DeviceList({ ownOnline: () => Boolean(stream && stream.state === 'connected'), keysPanel });
  historyView = new HistoryView({
    filters: () => ({ category: store.category, q: store.q }),
    render,
    showError: (text) => { $('list-error').textContent = text; },
  });
  api.setSessionEndHandler((message) => { teardown(); showAuth(message); });
  initHub(() => devices.items);
  $('auth-form').addEventListener('submit', onAuthSubmit);
  $('logout').addEventListener('click', logout);
  $('load-more').addEventListener('click', () => loadPage());
  $('mark-all-read').addEventListener('click', () => onAll('read'));
  $('clear-all').addEventListener('click', () => onAll('dismissed'));
  $('search').addEventListener('input', searchSoon);
  $('reregister').addEventListener('click', () => {
    forgetDevice(api.currentSession().user.id);
    start();
  });
  document.querySelectorAll('.filter[data-category]').forEach((b) => b.addEventListener('click', () => setFilter(b)));
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

// REST client and the tab's session. By default the tokens live in
// sessionStorage (one login per tab, gone when the tab closes). With "Keep me
// signed in" they live in localStorage instead, shared by every tab of this
// browser and kept across restarts; logout removes them. The access token is
// refreshed before it expires, so neither REST calls nor socket reconnects
// ever present a dead one.

import { readKept, writeKept } from './keptstore.js';

const SESSION_KEY = 'notisync.session';
const API = '/api/v1';
// Refresh tokens rotate and a reused one ends the session, so tabs sharing a
// kept session take turns: one refresh at a time in the whole browser.
const REFRESH_LOCK = 'notisync.refresh';

export class ApiError extends Error {
  constructor(status, code, message, fields) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code || 'error';
    this.fields = fields || {};
  }
}

let session = readSession();
let refreshing = null;   // the one refresh in flight: rotation kills the old token, so never two at once
let refreshTimer = 0;
let onSessionEnd = () => {};

function parseSession(text) {
  try {
    const s = JSON.parse(text || 'null');
    return s && s.access_token && s.refresh_token && s.user ? s : null;
  } catch {
    return null;
  }
}

/** This tab's own session first, else the one kept for every tab ("Keep me signed in"). */
function readSession() {
  return parseSession(sessionStorage.getItem(SESSION_KEY)) || parseSession(localStorage.getItem(SESSION_KEY));
}

const storageOf = (s) => (s && s.keep ? localStorage : sessionStorage);

// Another tab refreshed the kept session: take its tokens, ours are now used up.
window.addEventListener('storage', (ev) => {
  if (ev.key !== SESSION_KEY || ev.storageArea !== localStorage || !session || !session.keep) return;
  if (ev.newValue === null) { // signed out in another tab (or its session ended): so is this one
    session = null;
    clearTimeout(refreshTimer);
    onSessionEnd('You were signed out in another tab.');
    return;
  }
  const fresh = parseSession(ev.newValue);
  if (fresh && fresh.user.id === session.user.id) { session = fresh; scheduleRefresh(); }
});

/** Called when the server refuses our refresh token: the UI goes back to the login form. */
export function setSessionEndHandler(fn) { onSessionEnd = fn; }

export function currentSession() { return session; }

function storeTokens(body, extra = {}) {
  const keep = 'keep' in extra ? extra.keep : Boolean(session && session.keep);
  const deviceId = 'device_id' in extra ? extra.device_id : (session && session.device_id) || null;
  session = {
    keep,
    device_id: deviceId, // the device this session is bound to (POST /devices gave it)
    access_token: body.access_token,
    refresh_token: body.refresh_token,
    // Local clock: only the remaining lifetime matters, not the server's time.
    expires_at: Date.now() + (Number(body.expires_in) || 900) * 1000,
    lifetime: (Number(body.expires_in) || 900) * 1000,
    user: body.user,
  };
  storageOf(session).setItem(SESSION_KEY, JSON.stringify(session));
  (session.keep ? sessionStorage : localStorage).removeItem(SESSION_KEY);
  scheduleRefresh();
  return session.keep ? writeKept(session).catch(() => {}) : Promise.resolve();
}

/** Forget the tokens in this tab and, if kept, in every tab of this browser. */
export function clearSession() {
  session = null;
  clearTimeout(refreshTimer);
  sessionStorage.removeItem(SESSION_KEY);
  localStorage.removeItem(SESSION_KEY);
  writeKept(null).catch(() => {});
}

/** Refresh a minute (or a fifth of the lifetime, if shorter) before expiry. */
export function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (!session) return;
  const lead = Math.min(60_000, (session.lifetime || 900_000) / 5);
  const delay = Math.max(0, session.expires_at - lead - Date.now());
  refreshTimer = setTimeout(() => {
    refresh().catch(() => {
      // Network trouble: try again soon; a 401 has already ended the session.
      if (session) refreshTimer = setTimeout(scheduleRefresh, 5_000);
    });
  }, delay);
}

export function refresh() {
  if (!refreshing) {
    const run = session && session.keep && navigator.locks
      ? navigator.locks.request(REFRESH_LOCK, refreshShared) : doRefresh();
    refreshing = run.finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** Under the browser-wide lock: if another tab already rotated the kept tokens, use theirs. */
async function refreshShared() {
  let stored = null;
  try { stored = await readKept(); } catch { stored = parseSession(localStorage.getItem(SESSION_KEY)); }
  if (session && stored && stored.user.id === session.user.id && stored.refresh_token !== session.refresh_token) {
    // Ours is spent (another tab rotated it): theirs is the one to use, or to refresh with.
    session = stored;
    if (session.expires_at - Date.now() > 10_000) {
      scheduleRefresh();
      return session.access_token;
    }
  }
  return doRefresh();
}

async function doRefresh() {
  if (!session) throw new ApiError(401, 'no_session', 'not logged in');
  const res = await fetch(`${API}/auth/refresh`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ refresh_token: session.refresh_token }),
  });
  const body = await parse(res);
  if (res.status === 401) {
    clearSession();
    onSessionEnd('Your session has expired. Please log in again.');
  }
  if (!res.ok) throw errorFrom(res, body);
  await storeTokens(body); // a kept session is committed for every tab before the lock is released
  return session.access_token;
}

/** An access token good for at least a few more seconds. */
export async function validToken() {
  if (!session) throw new ApiError(401, 'no_session', 'not logged in');
  if (session.expires_at - Date.now() < 5_000) await refresh();
  return session.access_token;
}

async function parse(res) {
  const text = await res.text();
  if (!text) return null;
  try { return JSON.parse(text); } catch { return null; }
}

function errorFrom(res, body) {
  const e = (body && body.error) || {};
  return new ApiError(res.status, e.code, e.message || res.statusText, e.fields);
}

/** One API call; on a 401 it refreshes once and retries, since the token may have just expired. */
export async function request(method, path, body, { auth = true, retry = true } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth) headers.Authorization = `Bearer ${await validToken()}`;
  const res = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await parse(res);
  if (res.status === 401 && auth && retry && session) {
    await refresh();
    return request(method, path, body, { auth, retry: false });
  }
  if (!res.ok) throw errorFrom(res, data);
  return data;
}

/** keep: "Keep me signed in" (localStorage, every tab, across restarts) rather than this tab only. */
export async function login(email, password, keep = false) {
  const body = await request('POST', '/auth/login', { email, password }, { auth: false });
  storeTokens(body, { keep, device_id: null });
  return session;
}

export async function signup(email, password, keep = false) {
  await request('POST', '/auth/register', { email, password }, { auth: false });
  return login(email, password, keep);
}

// -- resources -------------------------------------------------------------

export function listNotifications({ category, before, q: search, limit = 50 } = {}) {
  const q = new URLSearchParams({ is_dismissed: 'false', limit: String(limit) });
  if (category) q.set('category', category);
  if (search) q.set('q', search);
  if (before) q.set('before', before);
  return request('GET', `/notifications?${q}`);
}

export function actOn(id, action, deviceId) {
  return request('PUT', `/notifications/${encodeURIComponent(id)}/action`, { action, device_id: deviceId });
}

/** One of a notification's actions (button, or reply with text): its source device gets action_invoked. */
export function invokeAction(id, actionId, replyText, deviceId) {
  const body = { action_id: actionId, device_id: deviceId };
  if (replyText !== undefined && replyText !== null) body.reply_text = replyText;
  return request('POST', `/notifications/${encodeURIComponent(id)}/invoke`, body);
}

/** Register this browser; from then on the tab uses the device's own session (revoking the device ends it). */
export async function registerDevice(id, name) {
  const body = await request('POST', '/devices', { id, device_name: name, device_type: 'web' });
  const { session: own, ...device } = body;
  if (own && session) {
    const signedIn = session.access_token;
    storeTokens({ ...own, user: session.user }, { device_id: device.id });
    // The sign-in session is not needed any more: end it rather than leave it live.
    fetch(`${API}/auth/logout`, { method: 'POST', headers: { Authorization: `Bearer ${signedIn}` } }).catch(() => {});
  }
  return device;
}

/** A single-use ticket for opening the socket (POST /auth/ws-ticket). */
export async function wsTicket() {
  return (await request('POST', '/auth/ws-ticket')).ticket;
}

export const listDevices = () => request('GET', '/devices');
export const getDevice = (id) => request('GET', `/devices/${encodeURIComponent(id)}`);
export const renameDevice = (id, name) => request('PUT', `/devices/${encodeURIComponent(id)}`, { device_name: name });
export const revokeDevice = (id) => request('DELETE', `/devices/${encodeURIComponent(id)}`);

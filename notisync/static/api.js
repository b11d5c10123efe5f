// REST client and the tab's session: tokens live in sessionStorage (one login
// per tab, gone when the tab closes) and the access token is refreshed before
// it expires, so neither REST calls nor socket reconnects ever present a dead one.

const SESSION_KEY = 'notisync.session';
const API = '/api/v1';

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

function readSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    return s && s.access_token && s.refresh_token && s.user ? s : null;
  } catch {
    return null;
  }
}

/** Called when the server refuses our refresh token: the UI goes back to the login form. */
export function setSessionEndHandler(fn) { onSessionEnd = fn; }

export function currentSession() { return session; }

function storeTokens(body) {
  session = {
    access_token: body.access_token,
    refresh_token: body.refresh_token,
    // Local clock: only the remaining lifetime matters, not the server's time.
    expires_at: Date.now() + (Number(body.expires_in) || 900) * 1000,
    lifetime: (Number(body.expires_in) || 900) * 1000,
    user: body.user,
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  scheduleRefresh();
}

export function clearSession() {
  session = null;
  clearTimeout(refreshTimer);
  sessionStorage.removeItem(SESSION_KEY);
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
    refreshing = doRefresh().finally(() => { refreshing = null; });
  }
  return refreshing;
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
  storeTokens(body);
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

export async function login(email, password) {
  const body = await request('POST', '/auth/login', { email, password }, { auth: false });
  storeTokens(body);
  return session;
}

export async function signup(email, password) {
  await request('POST', '/auth/register', { email, password }, { auth: false });
  return login(email, password);
}

// -- resources -------------------------------------------------------------

export function listNotifications({ category, before, limit = 50 } = {}) {
  const q = new URLSearchParams({ is_dismissed: 'false', limit: String(limit) });
  if (category) q.set('category', category);
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
    storeTokens({ ...own, user: session.user });
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

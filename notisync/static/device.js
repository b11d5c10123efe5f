// This browser as one of the user's devices: its id per user, kept in
// localStorage and registered once; and, at logout, every notisync.* key
// this browser holds.

import * as api from './api.js';
import { lastIdKey } from './socket.js';

const OWN_PREFIX = 'notisync.';
const deviceKey = (userId) => `notisync.device.${userId}`;

/** Register once per user and browser; the POST is idempotent for a known id. */
export async function ensureDevice(userId, name) {
  let id = localStorage.getItem(deviceKey(userId));
  // A session already bound to this device (a reload, or another tab's kept
  // session) just checks it still exists: registering again would start a new
  // session and end the one other tabs share.
  if (id && api.currentSession().device_id === id) return (await api.getDevice(id)).id;
  for (let tries = 0; tries < 2; tries += 1) {
    if (!id) id = crypto.randomUUID();
    try {
      const device = await api.registerDevice(id, name);
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

/** "Register this browser again": the next ensureDevice takes a new id. */
export function forgetDevice(userId) {
  localStorage.removeItem(deviceKey(userId));
}

/** At logout: tokens, device ids and stream positions, in both storages. */
export function clearOwnStorage() {
  for (const storage of [localStorage, sessionStorage]) {
    for (let i = storage.length - 1; i >= 0; i -= 1) {
      const key = storage.key(i);
      if (key && key.startsWith(OWN_PREFIX)) storage.removeItem(key);
    }
  }
}

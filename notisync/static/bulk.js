// Server-side counts (the unread badge) and bulk actions (mark all read,
// clear all): GET /notifications/counts and POST /notifications/actions.
// The badge counts what the server has, not the page loaded here, so it is
// the same after a reload as live.

import { request } from './api.js';

export const fetchCounts = () => request('GET', '/notifications/counts');

/** action: 'read' | 'dismissed'; the current category, else every live notification. */
export function actOnAll(action, { category, deviceId }) {
  const body = { action, device_id: deviceId || undefined };
  if (category) body.category = category; else body.all = true;
  return request('POST', '/notifications/actions', body);
}

/** Calls fn at most once per `ms`, the last call winning (a burst of frames is one request). */
export function debounce(fn, ms) {
  let timer = 0;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

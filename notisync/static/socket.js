// The device's live stream: one WebSocket that reconnects by itself and
// resumes exactly where it left off (last_id, kept in localStorage per device,
// so a reload or a dropped connection misses nothing and replays little).

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 15_000;
const STABLE_MS = 5_000;       // a socket that stayed up this long resets the backoff
const PING_EVERY_MS = 25_000;  // below the server's 30 s idle ping, so we notice a dead link first
const PONG_WITHIN_MS = 10_000;
const SEEN_LIMIT = 2_000;

export const lastIdKey = (deviceId) => `notisync.lastId.${deviceId}`;

/**
 * States: connecting, connected, reconnecting, offline (browser has no
 * network), revoked (server refused this device), stopped.
 *
 * onPolicyClose(reason) runs after a 1008 close and answers 'retry',
 * 'revoked' or 'session': the close code alone cannot tell an expired token
 * from a revoked device, so the app asks the REST API which one it is.
 */
export class Stream {
  constructor({ deviceId, getTicket, onFrame, onState, onPolicyClose }) {
    Object.assign(this, { deviceId, getTicket, onFrame, onState, onPolicyClose });
    this.ws = null;
    this.state = 'stopped';
    this.attempt = 0;
    this.timers = {};
    this.seen = new Set();
    this.lastAlive = 0;
    // Read once, then kept in memory: another tab of this browser is the same
    // device and moves the stored id on; resuming from its position would skip
    // what this tab missed while it was away.
    this.cursor = localStorage.getItem(lastIdKey(deviceId)) || '0';
    this.onOnline = () => { if (this.active) { this.attempt = 0; this.connect(); } };
    this.onOffline = () => { if (this.active) { this.drop(); this.setState('offline'); } };
  }

  start() {
    this.active = true;
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    this.connect();
  }

  stop(state = 'stopped') {
    this.active = false;
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    this.drop();
    this.setState(state);
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.onState(state);
  }

  clearTimers() {
    for (const t of Object.values(this.timers)) { clearTimeout(t); clearInterval(t); }
    this.timers = {};
  }

  /** Close the current socket without triggering our own reconnect logic. */
  drop() {
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000); } catch { /* already closing */ }
    }
  }

  async connect() {
    this.drop();
    if (!this.active) return;
    if (!navigator.onLine) { this.setState('offline'); return; }
    this.setState(this.attempt === 0 && this.state !== 'reconnecting' ? 'connecting' : 'reconnecting');
    let ticket;
    try {
      // A single-use ticket, not the access token: URLs end up in proxy logs.
      ticket = await this.getTicket();
    } catch (err) {
      if (err && err.status === 401) { this.stop('stopped'); return; }  // session is over; the app shows login
      this.scheduleReconnect();
      return;
    }
    if (!this.active || this.ws) return;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = new URLSearchParams({ ticket, device_id: this.deviceId, last_id: this.cursor });
    const ws = new WebSocket(`${proto}//${location.host}/ws?${q}`);
    this.ws = ws;
    ws.onopen = () => {
      this.setState('connected');
      this.lastAlive = Date.now();
      this.timers.stable = setTimeout(() => { this.attempt = 0; }, STABLE_MS);
      this.timers.ping = setInterval(() => this.heartbeat(), PING_EVERY_MS);
    };
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = (ev) => this.closed(ev.code, ev.reason);
  }

  heartbeat() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    const sentAt = Date.now();
    this.ws.send(JSON.stringify({ type: 'ping' }));
    clearTimeout(this.timers.pong);
    this.timers.pong = setTimeout(() => {
      // Nothing at all came back: the link is dead even if the browser has not noticed.
      if (this.lastAlive < sentAt) this.closed(1006, 'heartbeat timeout');
    }, PONG_WITHIN_MS);
  }

  receive(text) {
    this.lastAlive = Date.now();
    let frame;
    try { frame = JSON.parse(text); } catch { return; }
    if (!frame || typeof frame !== 'object') return;
    const envId = typeof frame.id === 'string' ? frame.id : null;
    if (envId) {
      // Stream frames may be repeated around reconnects; the server says drop repeats.
      if (this.seen.has(envId)) return;
      this.seen.add(envId);
      if (this.seen.size > SEEN_LIMIT) this.seen.delete(this.seen.values().next().value);
    }
    try {
      this.onFrame(frame);
    } finally {
      // Saved after handling, so a crash mid-frame replays it rather than skipping it.
      if (envId) {
        this.cursor = envId;
        localStorage.setItem(lastIdKey(this.deviceId), envId);
      }
    }
  }

  async closed(code, reason) {
    this.drop();
    if (!this.active) return;
    if (code === 1008) {
      this.setState('reconnecting');
      let verdict = 'retry';
      try { verdict = await this.onPolicyClose(reason); } catch { verdict = 'retry'; }
      if (!this.active) return;
      if (verdict === 'revoked') { this.stop('revoked'); return; }
      if (verdict === 'session') { this.stop('stopped'); return; }
    }
    if (!navigator.onLine) { this.setState('offline'); return; }
    this.scheduleReconnect();
  }

  /** Exponential backoff with jitter, so a restarted server is not hit by every tab at once. */
  scheduleReconnect() {
    this.drop();
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    this.setState('reconnecting');
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }
}

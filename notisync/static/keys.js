// A device's API keys (for a phone or an automation app): list, create
// (the key is shown this once), revoke. The panel sits outside the device
// list, which is rebuilt on every presence change.

import { request } from './api.js';
import { qrSvg } from './qr.js';

const path = (deviceId, keyId) =>
  `/devices/${encodeURIComponent(deviceId)}/api-keys${keyId ? `/${encodeURIComponent(keyId)}` : ''}`;

function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

export class KeysPanel {
  constructor(root) {
    this.root = root;
    this.device = null;
    this.$ = (id) => root.querySelector(`#${id}`);
    this.$('keys-form').addEventListener('submit', (ev) => { ev.preventDefault(); this.create(); });
    this.$('keys-close').addEventListener('click', () => this.close());
  }

  async open(device) {
    this.device = device;
    this.root.hidden = false;
    this.$('keys-title').textContent = `API keys: ${device.device_name}`;
    this.$('new-key-box').hidden = true;
    this.$('new-key').textContent = '';
    this.$('new-key-qr').replaceChildren();
    this.$('keys-error').textContent = '';
    await this.refresh();
  }

  close() {
    this.device = null;
    this.root.hidden = true;
    this.$('new-key').textContent = ''; // the key leaves the page with the panel
    this.$('new-key-qr').replaceChildren();
    this.$('keys-list').replaceChildren();
  }

  async refresh() {
    const device = this.device;
    if (!device) return;
    try {
      const body = await request('GET', path(device.id));
      if (device === this.device) this.render(body.api_keys || []);
    } catch (err) {
      this.fail(err, 'load the keys');
    }
  }

  render(keys) {
    const items = keys.map((k) => {
      const li = document.createElement('li');
      li.className = 'api-key';
      li.dataset.id = k.id;
      const name = document.createElement('span');
      name.className = 'key-name';
      name.textContent = k.name || 'unnamed key';
      const meta = document.createElement('span');
      meta.className = 'muted small';
      meta.textContent = `created ${when(k.created_at)} · ${k.last_used_at ? `last used ${when(k.last_used_at)}` : 'never used'}`;
      const revoke = document.createElement('button');
      revoke.type = 'button';
      revoke.className = 'danger';
      revoke.textContent = 'Revoke';
      revoke.setAttribute('aria-label', `Revoke key: ${k.name || 'unnamed key'}`);
      revoke.addEventListener('click', () => this.revoke(k));
      li.append(name, meta, revoke);
      return li;
    });
    this.$('keys-list').replaceChildren(...items);
    this.$('keys-empty').hidden = keys.length > 0;
  }

  async create() {
    const device = this.device;
    const name = this.$('key-name').value.trim();
    this.$('keys-error').textContent = '';
    try {
      const made = await request('POST', path(device.id), name ? { name } : {});
      this.$('new-key').textContent = made.key;
      this.$('new-key-qr').replaceChildren(qrSvg(made.key, 'QR code of the new API key'));
      this.$('new-key-box').hidden = false;
      this.$('key-name').value = '';
      await this.refresh();
    } catch (err) {
      this.fail(err, 'create a key');
    }
  }

  async revoke(key) {
    if (!window.confirm(`Revoke “${key.name || 'unnamed key'}”? Whatever uses it stops working at once.`)) return;
    try {
      await request('DELETE', path(this.device.id, key.id));
    } catch (err) {
      if (err.status !== 404) { this.fail(err, 'revoke the key'); return; }
    }
    await this.refresh();
  }

  fail(err, what) {
    if (err.status === 401) return; // the session ended: the login form is showing
    if (err.status === 404) { this.close(); return; } // the device was revoked meanwhile
    this.$('keys-error').textContent = err.status === 409
      ? 'This device already has 10 keys; revoke one first.'
      : `Could not ${what}: ${err.message}`;
  }
}

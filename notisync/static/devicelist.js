// The Devices panel, kept live: presence from device_status frames, the list
// itself refetched on device_changed (a device added, renamed or revoked by
// any client), and "last seen" moved forward when a device posts.

import * as api from './api.js';
import { $, renderDevices } from './ui.js';
import { devicesChanged } from './hub.js';

export class DeviceList {
  /** ownOnline(): whether this browser's socket is connected; keysPanel: the API keys panel (keys.js). */
  constructor({ ownOnline, keysPanel }) {
    this.ownOnline = ownOnline;
    this.keysPanel = keysPanel;
    this.items = [];
    this.ownId = null;
    this.generation = 0; // a newer GET makes the answer of an older one irrelevant
  }

  reset(ownId = null) {
    this.items = [];
    this.ownId = ownId;
    this.generation += 1;
    $('devices').replaceChildren();
  }

  show() {
    // The server never tells a device about itself, and our own presence may
    // not be registered yet when we list: our socket state is the truth.
    const online = this.ownOnline();
    const shown = this.items.map((d) => (d.id === this.ownId ? { ...d, status: online ? 'online' : 'offline' } : d));
    renderDevices($('devices'), shown, this.ownId, {
      onRename: (d, name) => this.rename(d, name),
      onRevoke: (d) => this.revoke(d),
      onKeys: (d) => this.keysPanel.open(d),
    });
    devicesChanged();
  }

  async refresh() {
    const gen = ++this.generation;
    try {
      const body = await api.listDevices();
      if (gen !== this.generation) return;
      this.items = body.devices || [];
      $('devices-error').textContent = '';
      const open = this.keysPanel.device;
      if (open && !this.items.some((d) => d.id === open.id)) this.keysPanel.close(); // revoked elsewhere
      this.show();
    } catch (err) {
      if (gen === this.generation && err.status !== 401) {
        $('devices-error').textContent = `Could not load devices: ${err.message}`;
      }
    }
  }

  /** device_status: online/offline in place; going offline is also when it was last seen. */
  status(data, timestamp) {
    const known = this.items.find((d) => d.id === data.device_id);
    if (!known) { this.refresh(); return; }
    known.status = data.status;
    if (data.status === 'offline') known.last_seen = timestamp || new Date().toISOString();
    this.show();
  }

  /** A device posted at `at` (e.g. a phone that only uses REST): it was last seen then. */
  saw(id, at) {
    const known = id && this.items.find((d) => d.id === id);
    if (!known || !at || (known.last_seen && known.last_seen >= at)) return;
    known.last_seen = at;
    this.show();
  }

  async rename(device, name) {
    try {
      const updated = await api.renameDevice(device.id, name);
      this.items = this.items.map((d) => (d.id === updated.id ? { ...d, ...updated } : d));
    } catch (err) {
      $('devices-error').textContent = `Could not rename “${device.device_name}”: ${err.message}`;
    }
    this.show();
  }

  async revoke(device) {
    if (!window.confirm(`Revoke “${device.device_name}”? It will be signed out and stop receiving notifications.`)) return;
    try {
      await api.revokeDevice(device.id);
      this.items = this.items.filter((d) => d.id !== device.id);
      if (this.keysPanel.device && this.keysPanel.device.id === device.id) this.keysPanel.close();
    } catch (err) {
      if (err.status !== 404) $('devices-error').textContent = `Could not revoke “${device.device_name}”: ${err.message}`;
    }
    this.refresh();
  }
}

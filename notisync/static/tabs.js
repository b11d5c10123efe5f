// Tabs that share a kept session ("Keep me signed in") are one device, and a
// device never receives its own actions back from the server: a read or a
// dismissal in one tab reaches its sibling tabs over a BroadcastChannel instead.

export class TabSync {
  /** ownDevice(): this tab's device id; onAction({id, action} | {bulk: true}) for a sibling's action. */
  constructor(ownDevice, onAction) {
    this.ownDevice = ownDevice;
    this.channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel('notisync.tabs') : null;
    if (this.channel) {
      this.channel.onmessage = (ev) => {
        const msg = ev.data || {};
        // Another device's tab: the server tells us about its actions itself.
        if (msg.device && msg.device === this.ownDevice()) onAction(msg);
      };
    }
  }

  /** Tell the sibling tabs of this device about an action done here. */
  post(msg) {
    if (this.channel && this.ownDevice()) this.channel.postMessage({ ...msg, device: this.ownDevice() });
  }
}

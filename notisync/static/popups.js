// Browser notifications (the Notification API) for this dashboard, shown
// only while the tab is hidden and only with the user's permission. The
// same rules as `notisync desktop`: one pop-up per notification (its id is
// the tag), replaced when it is updated in place, withdrawn when it is read
// or dismissed anywhere; clicking one focuses the tab and sends `clicked`.

export class Popups {
  constructor({ onActivate }) {
    this.onActivate = onActivate;
    this.open = new Map();   // notification id -> Notification on screen
    this.shown = new Map();  // notification id -> version shown (a replayed frame shows nothing again)
  }

  get supported() { return 'Notification' in window; }

  get permission() { return this.supported ? Notification.permission : 'unsupported'; }

  /** Must run from a user gesture (a click): browsers ignore it otherwise. */
  async ask() {
    if (!this.supported) return 'unsupported';
    return Notification.requestPermission();
  }

  /** A new notification from the stream. */
  show(n) {
    if (!n || typeof n.id !== 'string' || n.is_dismissed || n.is_read) return;
    if (this.shown.has(n.id)) return;
    this.post(n);
  }

  /** notification_updated: replace what is on screen; show it if it is new content for a hidden tab. */
  update(n) {
    if (!n || typeof n.id !== 'string') return;
    const version = Number(n.version) || 1;
    if ((this.shown.get(n.id) || 0) >= version) return;
    this.withdraw(n.id);
    if (!n.is_dismissed && !n.is_read) this.post(n);
  }

  withdraw(id) {
    const popup = this.open.get(id);
    if (!popup) return;
    this.open.delete(id);
    popup.close();
  }

  post(n) {
    if (this.permission !== 'granted' || document.visibilityState !== 'hidden') return;
    const title = [n.app_name, n.title].filter((s) => s && String(s).trim()).join(': ') || 'Notification';
    let popup;
    try {
      popup = new Notification(title, {
        body: n.body || '', tag: n.id, silent: Boolean(n.silent), data: { id: n.id },
      });
    } catch (err) {
      return; // a browser that only allows service-worker notifications: the list still shows it
    }
    this.shown.set(n.id, Number(n.version) || 1);
    this.open.set(n.id, popup);
    popup.addEventListener('click', () => {
      window.focus();
      this.withdraw(n.id);
      this.onActivate(n.id);
    });
    popup.addEventListener('close', () => { if (this.open.get(n.id) === popup) this.open.delete(n.id); });
  }
}

// Notification state as this tab knows it, merged from REST pages, stream
// frames and our own actions. Read and dismissed only ever go from false to
// true (SPEC), so merging with OR converges whatever order the sources arrive
// in: a stale REST page can never un-read or resurrect a dismissed item.

export const CATEGORIES = ['Work', 'Personal', 'Junk'];

export class NotificationStore {
  constructor() {
    this.items = new Map();     // id -> notification
    this.read = new Set();      // ids known read, even before the item itself arrives
    this.dismissed = new Set(); // ids known dismissed: never shown again
    this.category = null;       // null = All
    this.q = '';                // search text ('' = none): live items must match it too
    this.cursor = null;         // next_cursor of the last REST page for this filter
    this.floor = null;          // created_at of the oldest item the REST pages reached, while there are more
    this.loaded = false;
  }

  /** Forget the list (not the flags): the next REST page starts it afresh. */
  reset(category = this.category) {
    this.items.clear();
    this.category = category;
    this.cursor = null;
    this.floor = null;
    this.loaded = false;
  }

  upsert(n) {
    if (!n || typeof n.id !== 'string') return;
    if (n.is_dismissed) this.dismissed.add(n.id);
    if (this.dismissed.has(n.id)) { this.items.delete(n.id); return; }
    const old = this.items.get(n.id);
    const isRead = Boolean(n.is_read || this.read.has(n.id) || (old && old.is_read));
    if (isRead) this.read.add(n.id);
    this.items.set(n.id, { ...old, ...n, is_read: isRead, is_dismissed: false });
  }

  /** A REST page: merge it and remember how far back the list now reaches. */
  addPage(page) {
    const list = Array.isArray(page.notifications) ? page.notifications : [];
    list.forEach((n) => this.upsert(n));
    this.cursor = page.next_cursor || null;
    if (this.cursor && list.length) {
      const oldest = list[list.length - 1];
      this.floor = String(oldest.created_at);
    } else {
      this.floor = null;
    }
    this.loaded = true;
  }

  applySync({ notification_id: id, is_read: isRead, is_dismissed: isDismissed }) {
    if (typeof id !== 'string') return;
    if (isRead) this.markRead(id);
    if (isDismissed) this.dismiss(id);
  }

  markRead(id) {
    this.read.add(id);
    const n = this.items.get(id);
    if (n) this.items.set(id, { ...n, is_read: true });
  }

  dismiss(id) {
    this.dismissed.add(id);
    this.items.delete(id);
  }

  /**
   * What the list shows: newest first, in the current category, and not
   * older than what the REST pages reached. A replayed stream frame older than
   * that would otherwise sit below a gap that "Load more" fills later.
   */
  visible() {
    const out = [];
    for (const n of this.items.values()) {
      if (this.category && n.category !== this.category) continue;
      if (this.q && !matches(n, this.q)) continue;
      if (this.floor && String(n.created_at) < this.floor) continue;
      out.push(n);
    }
    return out.sort(compare);
  }

  unreadCount() {
    return this.visible().filter((n) => !n.is_read).length;
  }
}

/** The server's `q`: a case-insensitive substring of title, body or app name. */
function matches(n, q) {
  const needle = q.toLowerCase();
  return [n.title, n.body, n.app_name].some((s) => String(s || '').toLowerCase().includes(needle));
}

/** Newest first; ISO-8601 UTC strings sort as text, ids break ties. */
function compare(a, b) {
  const ta = String(a.created_at || '');
  const tb = String(b.created_at || '');
  if (ta !== tb) return ta < tb ? 1 : -1;
  return a.id === b.id ? 0 : (String(a.id) < String(b.id) ? 1 : -1);
}

// The kept session ("Keep me signed in") as every tab of this browser must
// see it. localStorage is read at start-up (synchronously), but Chromium
// propagates a write to other tabs' localStorage asynchronously, so a tab that
// just took the refresh lock could still read the token another tab has
// already spent, and a spent refresh token presented again ends the session.
// IndexedDB reads are consistent across tabs: under the lock, it is the truth.

const DB = 'notisync';
const STORE = 'kept';
const KEY = 'session';

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function run(mode, fn) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = fn(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

/** The kept session as last written by any tab, or null. */
export const readKept = () => run('readonly', (s) => s.get(KEY)).then((v) => v || null);
/** Write (or with null, delete) the kept session; resolves once committed. */
export const writeKept = (session) => run('readwrite', (s) => (session ? s.put(session, KEY) : s.delete(KEY)));

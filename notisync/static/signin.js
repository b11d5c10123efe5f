// The sign-in form's extras: a name for this browser as a device ("Chrome 131
// on Linux", editable before signing in) and "Keep me signed in"; and what a
// refused sign-in says.

const NAME_KEY = 'notisync-device-name'; // the name last chosen here, offered again next time

/** "Chrome 131 on Linux", "Firefox on Windows", "Safari on iPhone": browser and OS, never empty. */
export function browserName(nav = navigator) {
  const ua = nav.userAgent || '';
  const data = nav.userAgentData;
  return `${browserOf(ua, data)} on ${osOf(ua, data)}`;
}

function browserOf(ua, data) {
  // Client hints name Chromium-based browsers exactly ("Microsoft Edge", "Google Chrome").
  const brands = (data && Array.isArray(data.brands)) ? data.brands : [];
  const hinted = [['Microsoft Edge', 'Edge'], ['Opera', 'Opera'], ['Brave', 'Brave'], ['Google Chrome', 'Chrome'],
    ['Chromium', 'Chromium']].find(([brand]) => brands.some((b) => b.brand === brand));
  if (hinted) {
    const version = brands.find((b) => b.brand === hinted[0]).version;
    return version ? `${hinted[1]} ${version}` : hinted[1];
  }
  const rules = [[/Edg(?:e|A|iOS)?\/(\d+)/, 'Edge'], [/OPR\/(\d+)/, 'Opera'], [/SamsungBrowser\/(\d+)/, 'Samsung Internet'],
    [/(?:Firefox|FxiOS)\/(\d+)/, 'Firefox'], [/CriOS\/(\d+)/, 'Chrome'], [/HeadlessChrome\/(\d+)/, 'Chrome'],
    [/Chrome\/(\d+)/, 'Chrome'], [/Chromium\/(\d+)/, 'Chromium'], [/Version\/(\d+)[.\d]* .*Safari\//, 'Safari']];
  for (const [re, name] of rules) {
    const m = ua.match(re);
    if (m) return name === 'Firefox' || name === 'Safari' ? name : `${name} ${m[1]}`;
  }
  return /Safari\//.test(ua) ? 'Safari' : 'Browser';
}

function osOf(ua, data) {
  if (/iPhone/.test(ua)) return 'iPhone';
  if (/iPad/.test(ua)) return 'iPad';
  const platform = data && typeof data.platform === 'string' ? data.platform : '';
  if (platform === 'macOS' || /Macintosh|Mac OS X/.test(ua)) return 'macOS'; // iPadOS also claims Mac: close enough
  if (platform === 'Android' || /Android/.test(ua)) return 'Android';
  if (platform === 'Chrome OS' || /CrOS/.test(ua)) return 'ChromeOS';
  if (platform === 'Windows' || /Windows/.test(ua)) return 'Windows';
  if (platform === 'Linux' || /Linux/.test(ua)) return 'Linux';
  return 'the web';
}

/** Prefill the name field with the name chosen last time here, else the parsed one. */
export function initSignIn(form) {
  const field = form.querySelector('#device-name');
  field.value = localStorage.getItem(NAME_KEY) || browserName();
}

/** What the form asks for: the device name (trimmed, else parsed) and whether to keep the session. */
export function signInChoices(form) {
  const typed = form.querySelector('#device-name').value.trim().slice(0, 100);
  const name = typed || browserName();
  // Not under the notisync. prefix logout clears: the name is a preference, not a credential.
  if (typed) localStorage.setItem(NAME_KEY, typed);
  return { name, keep: form.querySelector('#keep-signed-in').checked };
}

/** A failed sign-up or log-in, said for a person. */
export function authMessage(err, mode) {
  if (err.status === 409) return 'An account with this email already exists. Log in instead.';
  if (err.status === 401) return 'Wrong email or password.';
  if (err.status === 429) return 'Too many attempts. Wait a minute and try again.';
  if (err.status === 400) return Object.values(err.fields).join(' ') || err.message;
  return `Could not ${mode === 'signup' ? 'sign up' : 'log in'}: ${err.message}`;
}

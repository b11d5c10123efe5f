// Rules editor and per-device preferences panel (SPEC "Rules, device
// preferences, digest"). Everything a user typed is shown with textContent,
// never parsed as HTML. app.js calls initHub() once and loadHub() per sign-in.

import { request } from './api.js';

const $ = (id) => document.getElementById(id);
const CATEGORIES = ['Work', 'Personal', 'Junk'];
const TYPES = ['mobile', 'web', 'desktop'];
const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

let rules = [];
let editing = null; // the id of the rule in the form, or null for a new one
let devicesOf = () => [];

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'text') node.textContent = value;
    else if (key === 'class') node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

const csv = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);
const fieldErrors = (err) => (err.fields ? Object.entries(err.fields).map(([k, v]) => `${k}: ${v}`).join(' · ') : err.message);

// -- rules -------------------------------------------------------------------

function describe(rule) {
  const m = rule.match || {};
  const a = rule.action || {};
  const when = [
    m.app_name && `app is “${m.app_name}”`, m.title_contains && `title has “${m.title_contains}”`,
    m.body_contains && `body has “${m.body_contains}”`, m.category && `category is ${m.category}`,
    m.source_device_id && 'from one device',
  ].filter(Boolean).join(' and ') || 'every notification';
  const then = [
    a.drop && 'drop it', a.category && `file under ${a.category}`, a.priority !== undefined && `priority ${a.priority}`,
    a.silent && 'silent', a.only_device_types && `only to ${a.only_device_types.join(', ')}`,
    a.skip_device_ids && `skip ${a.skip_device_ids.length} device(s)`,
  ].filter(Boolean).join(', ');
  return `If ${when}: ${then}`;
}

function renderRules() {
  const list = $('rules');
  list.replaceChildren(...rules.map((rule, i) => {
    const name = el('span', { class: 'rule-name', text: rule.name || `Rule ${i + 1}` });
    const toggle = el('input', { type: 'checkbox', 'aria-label': `Enabled: ${rule.name || `rule ${i + 1}`}` });
    toggle.checked = rule.enabled;
    toggle.addEventListener('change', () => save(rule.id, { enabled: toggle.checked }));
    const button = (text, label, fn, cls = '') => {
      const b = el('button', { type: 'button', text, 'aria-label': `${label}: ${rule.name || `rule ${i + 1}`}`, class: cls });
      b.addEventListener('click', fn);
      return b;
    };
    const up = button('↑', 'Move up', () => move(i, -1));
    const down = button('↓', 'Move down', () => move(i, 1));
    up.disabled = i === 0;
    down.disabled = i === rules.length - 1;
    return el('li', { class: 'rule', 'data-id': rule.id, 'data-enabled': String(rule.enabled) }, [
      el('div', { class: 'device-head' }, [toggle, name]),
      el('p', { class: 'muted small', text: describe(rule) }),
      el('div', { class: 'actions' }, [up, down, button('Edit', 'Edit rule', () => edit(rule)),
        button('Delete', 'Delete rule', () => remove(rule), 'danger')]),
    ]);
  }));
  $('rules-empty').hidden = rules.length > 0;
}

async function loadRules() {
  try {
    rules = (await request('GET', '/rules')).rules;
    $('rules-error').textContent = '';
  } catch (err) {
    if (err.status !== 401) $('rules-error').textContent = `Could not load rules: ${err.message}`;
  }
  renderRules();
}

async function save(id, changes) {
  try {
    await request('PUT', `/rules/${encodeURIComponent(id)}`, changes);
  } catch (err) {
    $('rules-error').textContent = `Could not save the rule: ${fieldErrors(err)}`;
  }
  await loadRules();
}

/** Swap with the neighbour by renumbering everything in the new order: positions stay distinct. */
async function move(index, step) {
  const order = [...rules];
  const [rule] = order.splice(index, 1);
  order.splice(index + step, 0, rule);
  try {
    for (const [pos, r] of order.entries()) {
      if (r.position !== pos) await request('PUT', `/rules/${encodeURIComponent(r.id)}`, { position: pos });
    }
  } catch (err) {
    $('rules-error').textContent = `Could not reorder: ${err.message}`;
  }
  await loadRules();
}

async function remove(rule) {
  if (!window.confirm(`Delete the rule “${rule.name || describe(rule)}”?`)) return;
  try {
    await request('DELETE', `/rules/${encodeURIComponent(rule.id)}`);
  } catch (err) {
    if (err.status !== 404) $('rules-error').textContent = `Could not delete: ${err.message}`;
  }
  if (editing === rule.id) resetForm();
  await loadRules();
}

function edit(rule) {
  editing = rule.id;
  const m = rule.match || {};
  const a = rule.action || {};
  $('rule-name').value = rule.name || '';
  $('rule-app').value = m.app_name || '';
  $('rule-title').value = m.title_contains || '';
  $('rule-body').value = m.body_contains || '';
  $('rule-if-category').value = m.category || '';
  $('rule-category').value = a.category || '';
  $('rule-priority').value = a.priority ?? '';
  $('rule-silent').checked = Boolean(a.silent);
  $('rule-drop').checked = Boolean(a.drop);
  for (const t of TYPES) $(`rule-type-${t}`).checked = (a.only_device_types || []).includes(t);
  $('rule-submit').textContent = 'Save rule';
  $('rule-form-title').textContent = 'Edit rule';
  $('rule-name').focus();
}

function resetForm() {
  editing = null;
  $('rule-form').reset();
  $('rule-submit').textContent = 'Add rule';
  $('rule-form-title').textContent = 'New rule';
  $('rule-form-error').textContent = '';
}

function formRule() {
  const match = {};
  const put = (obj, key, value) => { if (value !== '' && value !== undefined) obj[key] = value; };
  put(match, 'app_name', $('rule-app').value.trim());
  put(match, 'title_contains', $('rule-title').value.trim());
  put(match, 'body_contains', $('rule-body').value.trim());
  put(match, 'category', $('rule-if-category').value);
  const action = {};
  put(action, 'category', $('rule-category').value);
  if ($('rule-priority').value !== '') action.priority = Number($('rule-priority').value);
  if ($('rule-silent').checked) action.silent = true;
  if ($('rule-drop').checked) action.drop = true;
  const types = TYPES.filter((t) => $(`rule-type-${t}`).checked);
  if (types.length) action.only_device_types = types;
  return { name: $('rule-name').value.trim(), match, action };
}

async function onRuleSubmit(ev) {
  ev.preventDefault();
  $('rule-form-error').textContent = '';
  try {
    if (editing) await request('PUT', `/rules/${encodeURIComponent(editing)}`, formRule());
    else await request('POST', '/rules', formRule());
    resetForm();
  } catch (err) {
    $('rule-form-error').textContent = fieldErrors(err);
  }
  await loadRules();
}

async function onTest(ev) {
  ev.preventDefault();
  const out = $('rule-test-result');
  const sample = { app_name: $('test-app').value.trim(), title: $('test-title').value, body: $('test-body').value };
  try {
    const r = await request('POST', '/rules/test', sample);
    const names = r.matched.map((id) => (rules.find((x) => x.id === id) || {}).name || id);
    const res = r.result;
    const to = res.device_ids.map((id) => (devicesOf().find((d) => d.id === id) || {}).device_name || id);
    out.textContent = res.dropped ? `Matched: ${names.join(', ')}. Dropped.`
      : `Matched: ${names.join(', ') || 'no rule'}. Category ${res.category}, priority ${res.priority}`
        + `${res.silent ? ', silent' : ''}; goes to: ${to.join(', ') || 'no device'}.`;
  } catch (err) {
    out.textContent = fieldErrors(err);
  }
}

// -- preferences -----------------------------------------------------------

function fillDevices() {
  const select = $('prefs-device');
  const chosen = select.value;
  select.replaceChildren(...devicesOf().map((d) => el('option', { value: d.id, text: `${d.device_name} (${d.device_type})` })));
  if (devicesOf().some((d) => d.id === chosen)) select.value = chosen;
}

let prefsEdits = 0; // bumped by every edit of the form: a load that answers after one must not undo it

async function loadPrefs() {
  const id = $('prefs-device').value;
  $('prefs-status').textContent = '';
  if (!id) return;
  const edits = prefsEdits;
  try {
    const prefs = await request('GET', `/devices/${encodeURIComponent(id)}/preferences`);
    if (edits === prefsEdits && id === $('prefs-device').value) showPrefs(prefs);
  } catch (err) {
    if (err.status !== 401) $('prefs-status').textContent = `Could not load: ${err.message}`;
  }
}

function showPrefs(p) {
  const q = p.quiet_hours;
  $('prefs-quiet').checked = Boolean(q);
  $('prefs-start').value = q ? q.start : '22:00';
  $('prefs-end').value = q ? q.end : '07:00';
  $('prefs-tz').value = q ? q.timezone : Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  DAYS.forEach((_, i) => { $(`prefs-day-${i}`).checked = !q || !q.days || q.days.includes(i); });
  $('prefs-muted').value = p.muted_apps.join(', ');
  $('prefs-blocked').value = p.blocked_apps.join(', ');
  $('prefs-sync').checked = p.sync_dismissals;
}

async function onPrefsSubmit(ev) {
  ev.preventDefault();
  const id = $('prefs-device').value;
  const days = DAYS.map((_, i) => i).filter((i) => $(`prefs-day-${i}`).checked);
  const body = {
    quiet_hours: $('prefs-quiet').checked ? {
      start: $('prefs-start').value, end: $('prefs-end').value, timezone: $('prefs-tz').value.trim(),
      ...(days.length === 7 ? {} : { days }),
    } : null,
    muted_apps: csv($('prefs-muted').value),
    blocked_apps: csv($('prefs-blocked').value),
    sync_dismissals: $('prefs-sync').checked,
  };
  try {
    showPrefs(await request('PUT', `/devices/${encodeURIComponent(id)}/preferences`, body));
    $('prefs-status').textContent = 'Saved.';
  } catch (err) {
    $('prefs-status').textContent = fieldErrors(err);
  }
}

// -- wiring ----------------------------------------------------------------

export function initHub(getDevices) {
  devicesOf = getDevices;
  $('rule-form').addEventListener('submit', onRuleSubmit);
  $('rule-cancel').addEventListener('click', resetForm);
  $('rule-test').addEventListener('submit', onTest);
  $('prefs-device').addEventListener('change', loadPrefs);
  $('prefs-form').addEventListener('input', (ev) => { if (ev.target.id !== 'prefs-device') prefsEdits += 1; });
  $('prefs-form').addEventListener('submit', onPrefsSubmit);
}

export async function loadHub() {
  await loadRules();
}

/** The device list changed: refresh the preferences panel's choices (and load the first). */
export function devicesChanged() {
  const before = $('prefs-device').value;
  fillDevices();
  if ($('prefs-device').value !== before) loadPrefs();
}

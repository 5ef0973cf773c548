// attestd fleet dashboard: a read-only view of the fleet over the HTTP/JSON
// API (same origin, /v1/...). No framework, no build step, nothing loaded
// from elsewhere; the page runs under `Content-Security-Policy:
// default-src 'self'`, so everything is built with DOM calls and every
// handler is attached here.
//
// Data shapes are the protobuf JSON mapping of proto/attestd/v1: every
// field is written (unset messages and timestamps excepted; the code also
// copes with a field left out), 64-bit integers are strings, enums are
// names, timestamps are RFC 3339 strings.

const TOKEN_KEY = 'attestd.dashboard.token';
const STATUSES = ['TRUSTED', 'WARNING', 'UNTRUSTED', 'STALE', 'UNKNOWN', 'QUARANTINED'];
// DeviceStatus by number, should a server ever send numbers.
const STATUS_BY_NUMBER = ['UNSPECIFIED', ...STATUSES];
const TIERS = ['UNSPECIFIED', 'NONE', 'AFFIRMING', 'WARNING', 'CONTRAINDICATED'];
const CLAIMS = [
  ['instanceIdentity', 'Instance identity'],
  ['configuration', 'Configuration'],
  ['executables', 'Executables'],
  ['fileSystem', 'File system'],
  ['hardware', 'Hardware'],
  ['runtimeOpaque', 'Runtime opaque'],
  ['storageOpaque', 'Storage opaque'],
  ['sourcedData', 'Sourced data'],
];
const TEXT_FILTERS = ['model', 'hwVersion', 'tenant', 'site', 'department', 'firmwareDigest', 'firmwareVersion'];
const TIME_FILTERS = ['calibrationDueBefore', 'lastSeenAfter', 'lastSeenBefore'];
const HTTP_OF_CODE = {
  INVALID_ARGUMENT: 400, FAILED_PRECONDITION: 400, OUT_OF_RANGE: 400, UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403, NOT_FOUND: 404, ALREADY_EXISTS: 409, ABORTED: 409,
  RESOURCE_EXHAUSTED: 429, UNAVAILABLE: 503, DEADLINE_EXCEEDED: 504,
};
const MAX_CHANGES = 25;
const WATCH_IDLE_MS = 45_000; // the server sends a keep-alive every 15 s
const BACKOFF_MAX_MS = 30_000;
const REFRESH_DELAY_MS = 250;

// ---------------------------------------------------------------- helpers

const $ = (id) => document.getElementById(id);

/** Builds an element: attributes (data-*, aria-*, class...), then children. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const num = (v) => (v === undefined || v === null || v === '' ? 0 : Number(v));
const pad2 = (n) => String(n).padStart(2, '0');

function statusName(v) {
  if (typeof v === 'number') return STATUS_BY_NUMBER[v] ?? String(v);
  if (!v) return 'UNSPECIFIED';
  return String(v).replace(/^DEVICE_STATUS_/, '');
}

function tierName(v) {
  if (typeof v === 'number') return TIERS[v] ?? String(v);
  if (!v) return 'UNSPECIFIED';
  return String(v).replace(/^TRUST_TIER_/, '');
}

function parseTime(ts) {
  if (!ts) return null;
  // Timestamps may carry nanoseconds; Date wants at most milliseconds.
  const d = new Date(String(ts).replace(/(\.\d{3})\d+/, '$1'));
  return Number.isNaN(d.getTime()) ? null : d;
}

function fmtTime(d) {
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
    `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

function relTime(d) {
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  const abs = Math.abs(s);
  const [n, unit] = abs < 60 ? [abs, 's'] : abs < 3600 ? [Math.floor(abs / 60), 'min']
    : abs < 86400 ? [Math.floor(abs / 3600), 'h'] : [Math.floor(abs / 86400), 'd'];
  if (abs < 5) return 'just now';
  return s >= 0 ? `${n} ${unit} ago` : `in ${n} ${unit}`;
}

/** A <time> element in local time, with the RFC 3339 value as tooltip. */
function timeEl(ts, { relative = false } = {}) {
  const d = parseTime(ts);
  if (!d) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: ts, title: ts },
    fmtTime(d), relative ? h('span', { class: 'rel' }, ` (${relTime(d)})`) : null);
}

/** A datetime-local value (local time) as RFC 3339 in UTC, without fraction. */
function toRfc3339(local) {
  const d = new Date(local);
  if (Number.isNaN(d.getTime())) throw new Error(`not a date and time: ${local}`);
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function statusBadge(status, attrs = {}) {
  const name = statusName(status);
  return h('span', { class: `status st-${name}`, 'data-testid': 'device-status', 'data-status': name, ...attrs }, name);
}

function plainBadge(text, cls) {
  return h('span', { class: `tag ${cls || ''}` }, text);
}

function tierBadge(tier) {
  const name = tierName(tier);
  return h('span', { class: `tag tier-${name}` }, name);
}

function mono(text, title) {
  return text ? h('code', { class: 'mono', title: title || text }, text) : h('span', { class: 'muted' }, '—');
}

function deviceHref(serial) {
  return `#/devices/${encodeURIComponent(serial)}`;
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, body, what) {
    const b = body && typeof body === 'object' ? body : {};
    const code = b.code || `HTTP ${status}`;
    super(`${what}: ${status} ${code}${b.reason ? ` (${b.reason})` : ''}${b.message ? `: ${b.message}` : ''}`);
    this.status = status;
    this.code = b.code || '';
    this.reason = b.reason || '';
    this.detail = b.message || '';
  }
}

function apiUrl(path, params = []) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of params) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.append(k, v);
  }
  return url;
}

async function errorOf(res, what) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  return new ApiError(res.status, body, what);
}

async function api(path, params = [], { signal } = {}) {
  const res = await fetch(apiUrl(path, params), {
    headers: { Authorization: `Bearer ${state.token}`, Accept: 'application/json' },
    cache: 'no-store',
    signal,
  });
  if (!res.ok) throw await errorOf(res, `GET ${path}`);
  return res.json();
}

// ---------------------------------------------------------------- state

const state = {
  token: null,
  session: 0, // bumped at every sign-in and sign-out: late answers of an old session are dropped
  filter: emptyFilter(),
  pageSize: 50,
  pageTokens: [''], // token of each page visited, for Previous
  nextPageToken: '',
  rows: new Map(), // serial -> <tr> of the current page
  listSeq: 0,
  summarySeq: 0,
  device: null, // { serial, gen, pages: [{ token, entries, next }] }
  deviceGen: 0,
  watch: null,
  pending: { summary: false, serials: new Set(), device: false, timer: null },
  changes: [],
};

function emptyFilter() {
  const f = { statuses: [] };
  for (const k of [...TEXT_FILTERS, ...TIME_FILTERS]) f[k] = '';
  return f;
}

// ---------------------------------------------------------------- errors and auth

function showError(message) {
  const el = $('error');
  el.textContent = message;
  el.hidden = false;
}

function clearError() {
  const el = $('error');
  el.textContent = '';
  el.hidden = true;
}

/**
 * A refused token (401), or a token whose role may not read the fleet (403,
 * except a filter naming another tenant), ends the session. Returns true if
 * it did.
 */
function handleAuthError(err) {
  if (!(err instanceof ApiError)) return false;
  if (err.status === 401) {
    signOut(`The server refused this token (401 ${err.reason || err.code || 'UNAUTHENTICATED'}). ` +
      'Check the token and sign in again.');
    return true;
  }
  if (err.status === 403 && err.reason !== 'TENANT_FORBIDDEN') {
    signOut(`This token is not allowed to read the fleet (403 ${err.reason || err.code || 'PERMISSION_DENIED'})` +
      `${err.detail ? `: ${err.detail}` : ''}.`);
    return true;
  }
  return false;
}

/** Reports an error of a background load; returns nothing. */
function reportError(err) {
  if (err && err.name === 'AbortError') return;
  if (handleAuthError(err)) return;
  showError(err instanceof ApiError ? err.message : `Could not reach the server: ${err && err.message ? err.message : err}`);
}

// ---------------------------------------------------------------- sign-in / sign-out

function showLogin() {
  $('login-view').hidden = false;
  $('fleet-view').hidden = true;
  $('device-view').hidden = true;
  $('logout').hidden = true;
  $('topnav').hidden = true;
  $('token').focus();
}

function signOut(message) {
  state.session += 1;
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  stopWatch();
  setLive('off');
  clearPending();
  // Leave no fleet data in the page.
  state.rows.clear();
  state.device = null;
  state.deviceGen += 1;
  state.changes = [];
  state.filter = emptyFilter();
  state.pageTokens = [''];
  state.pageSize = 50;
  state.nextPageToken = '';
  $('device-rows').replaceChildren();
  delete document.querySelector('[data-testid="device-list"]').dataset.loaded;
  delete $('summary').dataset.loaded;
  $('summary-tiles').replaceChildren();
  for (const g of ['model', 'site', 'firmware']) groupBody(g).replaceChildren();
  $('changes').replaceChildren();
  $('changes-empty').hidden = false;
  $('device-page').replaceChildren();
  $('device-page').removeAttribute('data-serial');
  $('device-page').removeAttribute('data-state');
  $('filters').reset();
  $('list-note').textContent = '';
  $('page-label').textContent = '';
  $('token').value = '';
  document.title = 'attestd · Fleet integrity';
  if (message) showError(message);
  else clearError();
  showLogin();
}

async function signIn(token) {
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  state.session += 1;
  const session = state.session;
  clearError();
  $('login-view').hidden = true;
  $('logout').hidden = false;
  $('topnav').hidden = false;
  setLive('connecting');
  route();
  const cursor = await loadFleet();
  if (session !== state.session || cursor === null) return;
  startWatch(cursor);
}

/**
 * Loads the summary and the first page of the list. Returns the change-feed
 * cursor to watch from (the older of the two reads), or null on failure.
 */
async function loadFleet() {
  const session = state.session;
  state.pageTokens = [''];
  try {
    const [summaryCursor, listCursor] = await Promise.all([loadSummary(), loadList('')]);
    if (session !== state.session) return null;
    return olderCursor(summaryCursor, listCursor);
  } catch (err) {
    if (session === state.session) reportError(err);
    return null;
  }
}

function olderCursor(a, b) {
  if (!a) return b || '';
  if (!b) return a;
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return BigInt(a) <= BigInt(b) ? a : b;
  return b;
}

// ---------------------------------------------------------------- summary

function groupBody(name) {
  return $(`group-${name}`).querySelector('.group-body');
}

function countsOf(list) {
  const m = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  for (const c of list || []) {
    const s = statusName(c.status);
    m[s] = (m[s] || 0) + num(c.count);
  }
  return m;
}

/** Fetches the summary grouped three ways; returns the cursor it reflects. */
async function loadSummary() {
  const session = state.session;
  const seq = ++state.summarySeq;
  const groups = ['MODEL', 'SITE', 'FIRMWARE'];
  const answers = await Promise.all(groups.map((g) =>
    api('/v1/fleet/summary', [['groupBy', `SUMMARY_GROUP_${g}`]])));
  if (session !== state.session || seq !== state.summarySeq) return '';
  renderSummary(answers[0]);
  groups.forEach((g, i) => renderGroup(g.toLowerCase(), answers[i].groups || []));
  $('summary').dataset.loaded = 'true';
  return answers.reduce((c, a) => olderCursor(c, a.cursor || ''), '');
}

function renderSummary(s) {
  const counts = countsOf(s.counts);
  const active = state.filter.statuses;
  const tiles = [
    h('button', { type: 'button', class: `tile tile-total${active.length === 0 ? ' selected' : ''}`, title: 'Show every status' },
      h('span', { class: 'tile-n', 'data-testid': 'summary-total' }, String(num(s.total))),
      h('span', { class: 'tile-label' }, 'Total units')),
  ];
  tiles[0].addEventListener('click', () => setStatusFilter([]));
  for (const st of STATUSES) {
    const selected = active.length === 1 && active[0] === st;
    const tile = h('button', {
      type: 'button', class: `tile tile-${st}${selected ? ' selected' : ''}${counts[st] ? '' : ' zero'}`,
      'data-status': st, 'data-testid': 'summary-count', title: `Show ${st} units`,
    },
    h('span', { class: 'tile-n' }, String(counts[st])),
    h('span', { class: 'tile-label' }, h('span', { class: `dot st-${st}` }), st));
    tile.addEventListener('click', () => setStatusFilter([st]));
    tiles.push(tile);
  }
  $('summary-tiles').replaceChildren(...tiles);
}

function statusBar(counts, total) {
  const bar = h('div', { class: 'bar', role: 'img', 'aria-label': STATUSES.filter((s) => counts[s]).map((s) => `${s} ${counts[s]}`).join(', ') });
  for (const st of STATUSES) {
    if (!counts[st] || !total) continue;
    const seg = h('span', { class: `seg st-${st}`, title: `${st}: ${counts[st]}` });
    seg.style.width = `${(100 * counts[st]) / total}%`;
    bar.append(seg);
  }
  return bar;
}

function renderGroup(name, groups) {
  const body = groupBody(name);
  if (!groups.length) {
    body.replaceChildren(h('p', { class: 'muted small' }, 'No units.'));
    return;
  }
  const empty = name === 'site' ? '(unassigned)' : '(none reported)';
  const rows = groups.map((g) => {
    const counts = countsOf(g.counts);
    const total = num(g.total);
    const key = name === 'firmware' && g.key ? g.key.split(',').join(', ') : g.key;
    const issues = STATUSES.filter((s) => s !== 'TRUSTED' && counts[s])
      .map((s) => h('span', { class: `mini st-${s}`, title: s }, `${counts[s]} ${s.toLowerCase()}`));
    return h('tr', null,
      h('td', { class: `gkey${name === 'firmware' ? ' mono-cell' : ''}` }, key ? key : h('span', { class: 'muted' }, empty)),
      h('td', { class: 'gbar' }, statusBar(counts, total), issues.length ? h('div', { class: 'minis' }, issues) : null),
      h('td', { class: 'num' }, String(total)));
  });
  body.replaceChildren(h('table', { class: 'gtable' },
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, name === 'firmware' ? 'Firmware' : name === 'site' ? 'Site' : 'Model'),
      h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col', class: 'num' }, 'Units'))),
    h('tbody', null, rows)));
}

// ---------------------------------------------------------------- device list

function filterParams(f) {
  const p = [];
  for (const s of f.statuses) p.push(['filter.statuses', `DEVICE_STATUS_${s}`]);
  for (const k of TEXT_FILTERS) {
    const v = k === 'firmwareDigest' ? f[k].trim().toLowerCase() : f[k].trim();
    if (v) p.push([`filter.${k}`, v]);
  }
  for (const k of TIME_FILTERS) if (f[k]) p.push([`filter.${k}`, toRfc3339(f[k])]);
  return p;
}

/** Loads one page of the list; returns the cursor it reflects. */
async function loadList(pageToken) {
  const session = state.session;
  const seq = ++state.listSeq;
  const params = [...filterParams(state.filter), ['pageSize', String(state.pageSize)], ['pageToken', pageToken]];
  const page = await api('/v1/devices', params);
  if (session !== state.session || seq !== state.listSeq) return '';
  state.nextPageToken = page.nextPageToken || '';
  renderList(page.devices || []);
  return page.cursor || '';
}

function renderList(devices) {
  state.rows.clear();
  const rows = devices.map((d) => {
    const tr = deviceRow(d);
    state.rows.set(d.serial, tr);
    return tr;
  });
  const tbody = $('device-rows');
  if (!rows.length) {
    rows.push(h('tr', { class: 'empty-row' }, h('td', { colspan: 5 }, 'No units match these filters.')));
  }
  tbody.replaceChildren(...rows);
  const pageNo = state.pageTokens.length;
  $('page-label').textContent = `Page ${pageNo} · ${devices.length} unit${devices.length === 1 ? '' : 's'}`;
  $('page-first').disabled = pageNo <= 1;
  $('page-prev').disabled = pageNo <= 1;
  $('page-next').disabled = !state.nextPageToken;
  const active = activeFilterCount(state.filter);
  $('list-note').textContent = active ? `${active} filter${active === 1 ? '' : 's'} applied` : 'No filter';
  document.querySelector('[data-testid="device-list"]').dataset.loaded = 'true';
}

function activeFilterCount(f) {
  return (f.statuses.length ? 1 : 0) + [...TEXT_FILTERS, ...TIME_FILTERS].filter((k) => f[k].trim()).length;
}

function deviceRow(d) {
  const a = d.assignment || {};
  const siteBits = [a.site, a.department].filter(Boolean).join(' · ');
  const status = statusName(d.status);
  const flags = [];
  if (d.revoked) flags.push(plainBadge('revoked', 'tag-bad'));
  if (d.quarantined && status !== 'QUARANTINED') flags.push(plainBadge('quarantined', 'tag-hold'));
  return h('tr', { 'data-testid': 'device-row', 'data-serial': d.serial },
    h('td', null, h('a', { href: deviceHref(d.serial), class: 'serial' }, d.serial)),
    h('td', null, d.model || h('span', { class: 'muted' }, '—'),
      d.hwVersion ? h('span', { class: 'muted small' }, ` rev ${d.hwVersion}`) : null),
    h('td', null, statusBadge(d.status), flags),
    h('td', null, siteBits || h('span', { class: 'muted' }, a.tenant ? 'no site' : 'unassigned'),
      a.tenant ? h('div', { class: 'muted small' }, a.tenant) : null),
    h('td', null, timeEl(d.lastSeen, { relative: true })));
}

function readFilterForm() {
  const form = $('filters');
  const f = emptyFilter();
  f.statuses = [...form.querySelectorAll('input[name="status"]:checked')].map((i) => i.value);
  for (const k of [...TEXT_FILTERS, ...TIME_FILTERS]) f[k] = form.elements[k].value || '';
  return f;
}

function writeStatusChecks() {
  for (const box of $('filters').querySelectorAll('input[name="status"]')) {
    box.checked = state.filter.statuses.includes(box.value);
  }
}

async function reloadList() {
  try {
    await loadList(state.pageTokens[state.pageTokens.length - 1]);
    clearError();
  } catch (err) {
    reportError(err);
  }
}

function applyFilters(f) {
  try {
    filterParams(f); // validates the dates
  } catch (err) {
    showError(err.message);
    return;
  }
  state.filter = f;
  state.pageTokens = [''];
  writeStatusChecks();
  reloadList();
  refreshSummaryTiles();
}

function setStatusFilter(statuses) {
  const f = readFilterForm();
  f.statuses = statuses;
  applyFilters(f);
}

/** Re-marks the selected tile without a round trip. */
function refreshSummaryTiles() {
  const sel = state.filter.statuses;
  for (const tile of $('summary-tiles').querySelectorAll('.tile')) {
    const st = tile.dataset.status;
    tile.classList.toggle('selected', st ? sel.length === 1 && sel[0] === st : sel.length === 0);
  }
}

// ---------------------------------------------------------------- device page

function showDeviceMessage(page, stateName, ...content) {
  page.dataset.state = stateName;
  page.replaceChildren(h('div', { class: `card notice notice-${stateName}` }, content));
}

async function openDevice(serial) {
  const gen = ++state.deviceGen;
  const session = state.session;
  state.device = { serial, gen, pages: [] };
  const page = $('device-page');
  page.dataset.serial = serial;
  document.title = `${serial} · attestd`;
  showDeviceMessage(page, 'loading', h('p', { class: 'muted' }, `Loading ${serial}…`));
  try {
    const d = await api(`/v1/devices/${encodeURIComponent(serial)}`);
    if (gen !== state.deviceGen || session !== state.session) return;
    renderDevice(page, d);
    await loadHistory(gen, 'first');
  } catch (err) {
    if (gen !== state.deviceGen || session !== state.session) return;
    deviceError(page, serial, err);
  }
}

function deviceError(page, serial, err) {
  if (err instanceof ApiError && err.status === 404) {
    state.device = null;
    showDeviceMessage(page, 'not-found',
      h('h1', null, 'Unit not found'),
      h('p', null, 'No unit with serial ', h('code', { class: 'mono' }, serial),
        ' is visible to this token: it is not enrolled, or it belongs to another tenant (not found).'),
      h('p', null, h('a', { href: '#/' }, 'Back to the fleet')));
    return;
  }
  if (err && err.name === 'AbortError') return;
  if (handleAuthError(err)) return;
  showDeviceMessage(page, 'error', h('p', null, err instanceof ApiError ? err.message : `Could not reach the server: ${err.message || err}`));
  reportError(err);
}

/** Re-reads the open unit and the tail of its history (after a change). */
async function refreshDevice() {
  const dev = state.device;
  if (!dev) return;
  const { gen, serial } = dev;
  const session = state.session;
  const page = $('device-page');
  try {
    const d = await api(`/v1/devices/${encodeURIComponent(serial)}`);
    if (gen !== state.deviceGen || session !== state.session) return;
    renderDevice(page, d);
    await loadHistory(gen, 'refresh');
  } catch (err) {
    if (gen !== state.deviceGen || session !== state.session) return;
    deviceError(page, serial, err);
  }
}

function section(title, testid, ...content) {
  return h('section', { class: 'card' },
    h('div', { class: 'card-head' }, h('h2', null, title)),
    h('div', { 'data-testid': testid || null }, content));
}

function dl(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).map(([k, v, attrs]) =>
    [h('dt', null, k), h('dd', attrs || null, v === undefined || v === null || v === '' ? h('span', { class: 'muted' }, '—') : v)]));
}

function renderReasons(appraisal) {
  if (!appraisal) {
    return h('p', { class: 'muted' }, 'No appraisal yet: the unit has not sent evidence that could be appraised.');
  }
  const reasons = appraisal.reasons || [];
  if (!reasons.length) {
    return h('p', { class: 'ok-note' }, 'No reasons: every check passed (AFFIRMING).');
  }
  return h('ol', { class: `reasons reasons-${tierName(appraisal.tier)}`, 'data-testid': 'device-reasons' }, reasons.map((r) => {
    const bits = [];
    if (r.claim) bits.push(h('span', { class: 'tag' }, r.claim));
    if (r.component) bits.push(h('span', { class: 'r-comp' }, 'component ', h('code', { class: 'mono' }, r.component)));
    const ea = [];
    if (r.expected) ea.push(h('span', null, 'expected ', mono(r.expected)));
    if (r.actual) ea.push(h('span', null, 'actual ', mono(r.actual)));
    return h('li', { 'data-code': r.code || '' },
      h('div', { class: 'r-head' }, h('code', { class: 'r-code' }, r.code || '(no code)'), bits),
      ea.length ? h('div', { class: 'r-ea' }, ea) : null,
      r.detail ? h('div', { class: 'r-detail' }, r.detail) : null);
  }));
}

function band(v) {
  if (v >= -1 && v <= 1) return 'none';
  if ((v >= 2 && v <= 31) || (v <= -2 && v >= -32)) return 'affirming';
  if ((v >= 32 && v <= 95) || (v <= -33 && v >= -96)) return 'warning';
  return 'contraindicated';
}

function renderTrustVector(appraisal) {
  const tv = appraisal && appraisal.trustVector;
  if (!tv) return h('p', { class: 'muted' }, 'No trust vector (no appraisal yet).');
  return h('table', { class: 'tv' },
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Claim'), h('th', { scope: 'col', class: 'num' }, 'Value'), h('th', { scope: 'col' }, 'Band'))),
    h('tbody', null, CLAIMS.map(([k, label]) => {
      const v = num(tv[k]);
      const b = band(v);
      return h('tr', null, h('td', null, label), h('td', { class: 'num mono' }, String(v)),
        h('td', null, h('span', { class: `tag band-${b}` }, b)));
    })));
}

function calibrationDue(ts) {
  const d = parseTime(ts);
  if (!d) return h('span', { class: 'muted' }, 'not reported');
  const overdue = d.getTime() <= Date.now();
  return h('span', { class: overdue ? 'overdue' : null }, timeEl(ts, { relative: true }), overdue ? plainBadge('overdue', 'tag-bad') : null);
}

function renderFirmware(list) {
  if (!list || !list.length) return h('p', { class: 'muted' }, 'No firmware reported yet.');
  return h('table', { class: 'plain' },
    h('thead', null, h('tr', null, ['Component', 'Version', 'SVN', 'Digest (SHA-256)'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, list.map((f) => h('tr', null,
      h('td', null, f.name || '—'), h('td', null, f.version || '—'), h('td', { class: 'num' }, String(num(f.svn))),
      h('td', null, f.digest ? h('code', { class: 'mono digest', title: f.digest }, f.digest) : '—')))));
}

function renderDevice(page, d) {
  const status = statusName(d.status);
  const ap = d.appraisal;
  const a = d.assignment || {};
  page.dataset.serial = d.serial;
  page.dataset.state = 'loaded';
  page.dataset.status = status;

  const flags = [];
  if (d.quarantined) flags.push(plainBadge('quarantined', 'tag-hold'));
  if (d.revoked) flags.push(plainBadge('revoked', 'tag-bad'));

  const head = h('section', { class: `card device-head head-${status}` },
    h('div', { class: 'dh-left' },
      h('div', { class: 'muted small' }, 'Unit'),
      h('h1', { class: 'dh-serial' }, d.serial),
      h('div', { class: 'dh-model' }, d.model || 'unknown model', d.hwVersion ? ` · hardware rev ${d.hwVersion}` : '')),
    h('div', { class: 'dh-right' },
      h('div', { class: 'dh-status' }, statusBadge(d.status, { class: `status status-lg st-${status}` }), flags),
      h('div', { class: 'muted small' }, 'since ', timeEl(d.statusChangedAt, { relative: true }))));

  const verdict = section('Verdict', null, dl([
    ['Status', statusName(d.status)],
    ['Tier', ap ? tierBadge(ap.tier) : null],
    ['Appraised at', ap ? timeEl(ap.appraisedAt, { relative: true }) : null],
    ['Baseline', ap && ap.baselineModel ? `${ap.baselineModel} v${num(ap.baselineVersion)}` : null],
    ['Evidence', ap ? mono(ap.evidenceId) : null],
    ['Next time-based check', timeEl(d.nextCheckAt, { relative: true })],
  ]));

  const reasons = section(`Reasons${ap && ap.reasons && ap.reasons.length ? ` (${ap.reasons.length})` : ''}`, null, renderReasons(ap));
  // The list keeps its test id even when empty, so a reader can tell "no reasons" from "not loaded".
  if (!reasons.querySelector('[data-testid="device-reasons"]')) {
    reasons.lastChild.setAttribute('data-testid', 'device-reasons');
  }

  const trust = section('Trust vector (AR4SI)', null, renderTrustVector(ap));

  const calibration = section('Calibration', null, dl([
    ['Due', calibrationDue(d.calibrationDueAt), { 'data-testid': 'calibration-due' }],
    ['Data set digest', d.calibrationDigest ? h('code', { class: 'mono digest', title: d.calibrationDigest }, d.calibrationDigest) : null],
    ['Calibration record', mono(d.calibrationRecordId)],
  ]));

  const firmware = section('Firmware', null, renderFirmware(d.firmware));

  const assignment = section('Assignment', null, dl([
    ['Tenant', a.tenant], ['Site', a.site], ['Department', a.department], ['Asset tag', a.assetTag],
  ]));

  const control = section('Quarantine and revocation', null, dl([
    ['Quarantined', d.quarantined ? h('span', null, plainBadge('yes', 'tag-hold'), ' ', d.quarantineReason || '') : 'no'],
    ['Revoked', d.revoked ? h('span', null, plainBadge('yes', 'tag-bad'), ' ', d.revokedReason || '') : 'no'],
  ]));

  const identity = section('Evidence and records', null, dl([
    ['Last evidence', mono(d.lastEvidenceId)],
    ['Last seen', timeEl(d.lastSeen, { relative: true })],
    ['Enrolled', timeEl(d.enrolledAt)],
    ['Provisioning record', mono(d.provisioningRecordId)],
  ]));

  let hist = page.querySelector('.history-card');
  if (!hist) {
    hist = h('section', { class: 'card history-card' },
      h('div', { class: 'card-head' }, h('h2', null, 'History'), h('span', { class: 'muted small' }, 'oldest first')),
      h('div', { class: 'table-wrap', 'data-testid': 'history' }, h('p', { class: 'muted' }, 'Loading history…')),
      h('div', { class: 'pager' }, h('button', { type: 'button', class: 'btn', 'data-role': 'more', hidden: true }, 'Load more')));
    hist.querySelector('[data-role="more"]').addEventListener('click', () => loadHistory(state.deviceGen, 'more'));
  }

  page.replaceChildren(
    head,
    h('div', { class: 'device-grid' },
      h('div', { class: 'col' }, verdict, reasons, trust),
      h('div', { class: 'col' }, calibration, firmware, assignment, control, identity)),
    hist);
}

// ---------------------------------------------------------------- history

async function loadHistory(gen, mode) {
  const dev = state.device;
  if (!dev || dev.gen !== gen) return;
  const session = state.session;
  const path = `/v1/devices/${encodeURIComponent(dev.serial)}/history`;
  const fetchPage = (token) => api(path, [['pageToken', token]]);
  try {
    if (mode === 'first' || dev.pages.length === 0) {
      const r = await fetchPage('');
      if (dev !== state.device || session !== state.session) return;
      dev.pages = [{ token: '', entries: r.entries || [], next: r.nextPageToken || '' }];
    } else if (mode === 'more') {
      const last = dev.pages[dev.pages.length - 1];
      if (!last.next) return;
      const r = await fetchPage(last.next);
      if (dev !== state.device || session !== state.session) return;
      dev.pages.push({ token: last.next, entries: r.entries || [], next: r.nextPageToken || '' });
    } else {
      // New entries are appended at the end: read the last page again and
      // what follows it (bounded), keeping the pages before it.
      const keep = dev.pages.slice(0, -1);
      let token = dev.pages[dev.pages.length - 1].token;
      const fresh = [];
      for (let i = 0; i < 5; i += 1) {
        const r = await fetchPage(token);
        if (dev !== state.device || session !== state.session) return;
        fresh.push({ token, entries: r.entries || [], next: r.nextPageToken || '' });
        token = r.nextPageToken || '';
        if (!token) break;
      }
      dev.pages = [...keep, ...fresh];
    }
    renderHistory(dev);
  } catch (err) {
    if (dev !== state.device || session !== state.session) return;
    if (err instanceof ApiError && err.status === 404) {
      deviceError($('device-page'), dev.serial, err);
      return;
    }
    reportError(err);
  }
}

function reasonCodes(codes) {
  if (!codes.length) return h('span', { class: 'muted' }, '—');
  return h('span', { class: 'codes' }, codes.map((c) => h('code', { class: 'code-chip' }, c)));
}

function historyRow(i, e) {
  if (e.evidence) {
    const ev = e.evidence;
    const ap = ev.appraisal || {};
    return [i, timeEl(ev.receivedAt), 'Evidence',
      h('span', null, ap.tier ? tierBadge(ap.tier) : null, ` boot ${num(ev.bootcount)} · ${ev.nonceFresh ? 'nonce-fresh' : 'deferred'}`),
      reasonCodes((ap.reasons || []).map((r) => r.code)), mono(ev.evidenceId)];
  }
  if (e.record) {
    const r = e.record;
    const kind = String(r.kind || '').replace(/^RECORD_KIND_/, '').toLowerCase() || 'unknown';
    return [i, timeEl(r.receivedAt), `${kind[0].toUpperCase()}${kind.slice(1)} record`,
      h('span', null, `station ${r.stationId || '—'} · seq ${num(r.sequence)}`,
        r.performedAt ? h('span', { class: 'muted small' }, ' · performed ', timeEl(r.performedAt)) : null),
      reasonCodes([]), mono(r.recordId)];
  }
  if (e.reappraisal) {
    const r = e.reappraisal;
    const ap = r.appraisal || {};
    return [i, timeEl(r.at), 'Re-appraisal',
      h('span', null, statusBadge(r.status, { 'data-testid': null }), ap.tier ? [' ', tierBadge(ap.tier)] : null,
        ap.baselineModel ? ` baseline ${ap.baselineModel} v${num(ap.baselineVersion)}` : ''),
      reasonCodes((ap.reasons || []).map((x) => x.code)), mono(ap.evidenceId)];
  }
  if (e.releaseDecision) {
    const r = e.releaseDecision;
    const dec = String(r.decision || 'DECISION_UNSPECIFIED').replace(/^DECISION_/, '');
    return [i, timeEl(r.decidedAt), 'Release check',
      h('span', null, plainBadge(dec, dec === 'RELEASE' ? 'tag-ok' : 'tag-bad'),
        r.underConcession ? ' under concession' : '', r.decidedFor ? h('span', { class: 'muted small' }, ` for ${r.decidedFor}`) : null),
      reasonCodes((r.reasons || []).map((x) => (x.waived ? `${x.code} (waived)` : x.code))), mono(r.decisionId)];
  }
  return [i, '—', 'Other', h('span', { class: 'muted' }, 'an entry this dashboard does not know'), reasonCodes([]), ''];
}

function renderHistory(dev) {
  const card = $('device-page').querySelector('.history-card');
  if (!card) return;
  const box = card.querySelector('[data-testid="history"]');
  const entries = dev.pages.flatMap((p) => p.entries);
  if (!entries.length) {
    box.replaceChildren(h('p', { class: 'muted' }, 'No history yet.'));
  } else {
    box.replaceChildren(h('table', { class: 'plain history' },
      h('thead', null, h('tr', null, ['#', 'When', 'What', 'Outcome', 'Reasons', 'Id'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, entries.map((e, i) => h('tr', { 'data-testid': 'history-entry' },
        historyRow(i + 1, e).map((c, j) => h('td', j === 0 ? { class: 'num muted' } : null, c)))))));
  }
  box.dataset.count = String(entries.length);
  const more = card.querySelector('[data-role="more"]');
  more.hidden = !dev.pages[dev.pages.length - 1].next;
}

// ---------------------------------------------------------------- live changes

function setLive(s) {
  const el = $('live');
  el.dataset.state = s;
  el.textContent = { off: 'offline', connecting: 'connecting', live: 'live', reconnecting: 'reconnecting' }[s] || s;
}

function stopWatch() {
  const w = state.watch;
  state.watch = null;
  if (!w) return;
  w.stopped = true;
  clearTimeout(w.timer);
  clearTimeout(w.idle);
  if (w.controller) w.controller.abort();
}

function startWatch(cursor) {
  stopWatch();
  const w = { session: state.session, cursor, attempt: 0, controller: null, timer: null, idle: null, stopped: false };
  state.watch = w;
  connectWatch(w);
}

function scheduleReconnect(w) {
  if (w.stopped) return;
  setLive('reconnecting');
  const delay = Math.min(BACKOFF_MAX_MS, 1000 * 2 ** w.attempt) + Math.floor(Math.random() * 400);
  w.attempt = Math.min(w.attempt + 1, 10);
  w.timer = setTimeout(() => connectWatch(w), delay);
}

async function connectWatch(w) {
  if (w.stopped) return;
  const controller = new AbortController();
  w.controller = controller;
  const armIdle = () => {
    clearTimeout(w.idle);
    w.idle = setTimeout(() => controller.abort(), WATCH_IDLE_MS);
  };
  try {
    armIdle();
    const res = await fetch(apiUrl('/v1/fleet/watch', [['afterCursor', w.cursor]]), {
      headers: { Authorization: `Bearer ${state.token}`, Accept: 'text/event-stream' },
      cache: 'no-store',
      signal: controller.signal,
    });
    if (!res.ok) throw await errorOf(res, 'GET /v1/fleet/watch');
    if (!res.body) throw new Error('the change feed has no body');
    if (w.stopped) return;
    setLive('live');
    await readEventStream(res.body, (ev) => {
      armIdle();
      if (ev.comment !== undefined) {
        w.attempt = 0;
        return;
      }
      if (ev.event === 'error') {
        let body = null;
        try {
          body = JSON.parse(ev.data);
        } catch {
          body = { message: ev.data };
        }
        throw new ApiError(HTTP_OF_CODE[body && body.code] || 500, body, 'change feed');
      }
      if (ev.event === 'change' || ev.event === 'message') {
        const change = JSON.parse(ev.data);
        w.cursor = ev.id || change.cursor || w.cursor;
        w.attempt = 0;
        if (!w.stopped) applyChange(change);
      }
    });
    throw new Error('the change feed ended');
  } catch (err) {
    clearTimeout(w.idle);
    if (w.stopped || w.session !== state.session) return;
    if (err instanceof ApiError) {
      if (handleAuthError(err)) return;
      if (err.reason === 'CURSOR_EXPIRED') {
        // Too far behind: read the fleet again and watch from that read.
        setLive('reconnecting');
        const cursor = await loadFleet();
        if (w.stopped || w.session !== state.session) return;
        if (cursor !== null) {
          w.cursor = cursor;
          if (state.device) refreshDevice();
        }
      }
    }
    scheduleReconnect(w);
  }
}

/**
 * Parses a text/event-stream body and calls onEvent for each event
 * ({id, event, data}) and comment ({comment}). Resolves when the body ends;
 * rejects if onEvent throws or the read fails.
 */
async function readEventStream(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let ev = { id: undefined, event: '', data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      for (;;) {
        const i = buf.search(/[\r\n]/);
        if (i < 0) break;
        let next = i + 1;
        if (buf[i] === '\r') {
          if (i + 1 === buf.length) break; // a "\n" may follow in the next chunk
          if (buf[i + 1] === '\n') next = i + 2;
        }
        const line = buf.slice(0, i);
        buf = buf.slice(next);
        if (line === '') {
          if (ev.data.length) onEvent({ id: ev.id, event: ev.event || 'message', data: ev.data.join('\n') });
          ev = { id: undefined, event: '', data: [] };
        } else if (line[0] === ':') {
          onEvent({ comment: line.slice(1).trim() });
        } else {
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          let v = c < 0 ? '' : line.slice(c + 1);
          if (v[0] === ' ') v = v.slice(1);
          if (field === 'data') ev.data.push(v);
          else if (field === 'event') ev.event = v;
          else if (field === 'id') ev.id = v;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function applyChange(c) {
  const serial = c.serial;
  if (!serial) return;
  state.changes.unshift(c);
  state.changes.length = Math.min(state.changes.length, MAX_CHANGES);
  renderChanges();

  const row = state.rows.get(serial);
  if (row) {
    // Show the new status at once; the row is then read again in full.
    const badge = row.querySelector('[data-testid="device-status"]');
    if (badge) badge.replaceWith(statusBadge(c.newStatus));
    flash(row);
    state.pending.serials.add(serial);
  }
  state.pending.summary = true;
  if (state.device && state.device.serial === serial) state.pending.device = true;
  if (!state.pending.timer) state.pending.timer = setTimeout(flushPending, REFRESH_DELAY_MS);
}

function clearPending() {
  clearTimeout(state.pending.timer);
  state.pending = { summary: false, serials: new Set(), device: false, timer: null };
}

/** Applies the re-reads that a burst of changes asked for, once each. */
function flushPending() {
  const p = state.pending;
  const session = state.session;
  state.pending = { summary: false, serials: new Set(), device: false, timer: null };
  if (p.summary) loadSummary().catch((err) => session === state.session && reportError(err));
  if (p.device) refreshDevice();
  for (const serial of p.serials) refreshRow(serial, session);
}

async function refreshRow(serial, session) {
  try {
    const d = await api(`/v1/devices/${encodeURIComponent(serial)}`);
    const row = state.rows.get(serial);
    if (session !== state.session || !row || !row.isConnected) return;
    const fresh = deviceRow(d);
    row.replaceWith(fresh);
    state.rows.set(serial, fresh);
    flash(fresh);
  } catch (err) {
    if (session !== state.session) return;
    if (err instanceof ApiError && err.status === 404) {
      // It left this token's view (reassigned to another tenant).
      const row = state.rows.get(serial);
      if (row) {
        row.remove();
        state.rows.delete(serial);
      }
      return;
    }
    reportError(err);
  }
}

function flash(el) {
  el.classList.remove('flash');
  // Restart the animation.
  void el.offsetWidth;
  el.classList.add('flash');
}

function renderChanges() {
  const items = state.changes.map((c) => h('li', { 'data-serial': c.serial },
    h('div', { class: 'ch-head' },
      h('a', { href: deviceHref(c.serial), class: 'serial' }, c.serial),
      h('span', { class: 'ch-time' }, timeEl(c.at))),
    h('div', { class: 'ch-move' },
      statusBadge(c.oldStatus, { 'data-testid': null }), h('span', { class: 'arrow', 'aria-label': 'to' }, '→'),
      statusBadge(c.newStatus, { 'data-testid': null })),
    (c.reasons || []).length ? h('div', { class: 'ch-reasons' }, reasonCodes(c.reasons)) : null));
  $('changes').replaceChildren(...items);
  $('changes-empty').hidden = items.length > 0;
}

// ---------------------------------------------------------------- routing

function route() {
  if (!state.token) {
    showLogin();
    return;
  }
  const m = /^#\/devices\/(.+)$/.exec(window.location.hash);
  if (m) {
    let serial = m[1];
    try {
      serial = decodeURIComponent(serial);
    } catch {
      // keep it as typed
    }
    $('fleet-view').hidden = true;
    $('device-view').hidden = false;
    $('nav-fleet').classList.remove('current');
    openDevice(serial);
    window.scrollTo(0, 0);
  } else {
    state.deviceGen += 1;
    state.device = null;
    const page = $('device-page');
    page.replaceChildren();
    page.removeAttribute('data-serial');
    page.removeAttribute('data-state');
    page.removeAttribute('data-status');
    $('device-view').hidden = true;
    $('fleet-view').hidden = false;
    $('nav-fleet').classList.add('current');
    document.title = 'attestd · Fleet integrity';
  }
}

// ---------------------------------------------------------------- wiring

function init() {
  const checks = $('status-checks');
  for (const st of STATUSES) {
    checks.append(h('label', { class: 'check' },
      h('input', { type: 'checkbox', name: 'status', value: st }),
      h('span', { class: `dot st-${st}` }), st));
  }

  const off = -new Date().getTimezoneOffset();
  $('tz-note').textContent = `Times in local time (UTC${off >= 0 ? '+' : '-'}${pad2(Math.floor(Math.abs(off) / 60))}:${pad2(Math.abs(off) % 60)})`;

  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token').value.trim();
    if (!token) {
      showError('Paste a bearer token first.');
      return;
    }
    $('token').value = '';
    signIn(token);
  });

  $('logout').addEventListener('click', () => signOut());

  $('filters').addEventListener('submit', (e) => {
    e.preventDefault();
    applyFilters(readFilterForm());
  });
  $('filters-clear').addEventListener('click', () => {
    $('filters').reset();
    $('page-size').value = String(state.pageSize);
    applyFilters(emptyFilter());
  });
  $('page-size').addEventListener('change', (e) => {
    state.pageSize = Number(e.target.value) || 50;
    state.pageTokens = [''];
    reloadList();
  });
  $('page-next').addEventListener('click', () => {
    if (!state.nextPageToken) return;
    state.pageTokens.push(state.nextPageToken);
    reloadList();
  });
  $('page-prev').addEventListener('click', () => {
    if (state.pageTokens.length > 1) state.pageTokens.pop();
    reloadList();
  });
  $('page-first').addEventListener('click', () => {
    state.pageTokens = [''];
    reloadList();
  });

  window.addEventListener('hashchange', route);

  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  else showLogin();
}

init();

// Headless-browser check of the attestd fleet dashboard.
//
// Driven by the Rust dashboard test, which starts attestd, enrols units and
// runs `node tests/dashboard/check.mjs` with:
//   ATTESTD_URL     base URL of the server, e.g. http://127.0.0.1:PORT
//   CHROMIUM        the browser binary (default /usr/bin/chromium)
//   ARTIFACTS       directory for screenshots (default tests/dashboard/artifacts)
//   READER_TOKEN    a principal that sees every tenant
//   WATCH_SERIAL    a unit that starts TRUSTED
//   EXPECT_REASON   a reason code the unit has after the change
//   TENANT_TOKEN    a hospital-it principal of one tenant
//   TENANT_SERIALS  comma-separated serials of that tenant
//   OTHER_SERIALS   comma-separated serials of other tenants
//
// Protocol on stdio: once the device page of WATCH_SERIAL shows TRUSTED this
// prints `READY` on stdout and waits for a line `CHANGED` on stdin (the test
// has then made the unit UNTRUSTED); at the end it prints `OK` and exits 0.
// On any failure it prints `FAIL: <what>` on stderr, saves failure.png and
// exits 1. Progress goes to stderr. Every wait is bounded; a watchdog ends
// the run after 90 s whatever happens.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const WATCHDOG_MS = 90_000;
const STEP_MS = 15_000; // a page load or a list showing up
const CHANGE_MS = 20_000; // the change reaching the open device page
const CHANGED_LINE_MS = 45_000; // the test announcing its change

function env(name, fallback) {
  const v = process.env[name];
  if (v !== undefined && v !== '') return v;
  if (fallback !== undefined) return fallback;
  failNow(`environment variable ${name} is not set`);
  return '';
}

function list(name) {
  return env(name).split(',').map((s) => s.trim()).filter(Boolean);
}

function log(msg) {
  process.stderr.write(`check: ${msg}\n`);
}

let browser = null;
let currentPage = null;
let failing = false;
const consoleErrors = [];

function failNow(what) {
  process.stderr.write(`FAIL: ${what}\n`);
  process.exit(1);
}

/** Reports the failure, saves failure.png, closes the browser and exits 1. */
async function fail(what) {
  if (failing) return;
  failing = true;
  process.stderr.write(`FAIL: ${what}\n`);
  const hard = setTimeout(() => process.exit(1), 10_000);
  hard.unref();
  try {
    if (currentPage && !currentPage.isClosed()) {
      await currentPage.screenshot({ path: path.join(ARTIFACTS, 'failure.png'), fullPage: true, timeout: 5_000 });
      log(`saved ${path.join(ARTIFACTS, 'failure.png')}`);
    }
  } catch (e) {
    log(`could not save failure.png: ${e.message}`);
  }
  try {
    if (browser) await browser.close();
  } catch {
    // exiting anyway
  }
  process.exit(1);
}

const BASE = env('ATTESTD_URL').replace(/\/+$/, '');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const ARTIFACTS = path.resolve(env('ARTIFACTS', path.join(HERE, 'artifacts')));
const READER_TOKEN = env('READER_TOKEN');
const WATCH_SERIAL = env('WATCH_SERIAL');
const EXPECT_REASON = env('EXPECT_REASON');
const TENANT_TOKEN = env('TENANT_TOKEN');
const TENANT_SERIALS = list('TENANT_SERIALS');
const OTHER_SERIALS = list('OTHER_SERIALS');
if (!TENANT_SERIALS.length) failNow('TENANT_SERIALS is empty');
if (!OTHER_SERIALS.length) failNow('OTHER_SERIALS is empty');
mkdirSync(ARTIFACTS, { recursive: true });

const watchdog = setTimeout(() => fail(`watchdog: not finished after ${WATCHDOG_MS / 1000} s`), WATCHDOG_MS);
process.on('unhandledRejection', (e) => fail(`unexpected error: ${e && e.stack ? e.stack : e}`));

// ---------------------------------------------------------------- stdin

const stdinLines = [];
let stdinWaiter = null;
let stdinClosed = false;
{
  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      stdinLines.push(buf.slice(0, i).replace(/\r$/, '').trim());
      buf = buf.slice(i + 1);
    }
    if (stdinWaiter) stdinWaiter();
  });
  process.stdin.on('end', () => {
    if (buf.trim()) stdinLines.push(buf.trim());
    stdinClosed = true;
    if (stdinWaiter) stdinWaiter();
  });
  process.stdin.on('error', () => {
    stdinClosed = true;
    if (stdinWaiter) stdinWaiter();
  });
}

function waitForLine(want, timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stdinWaiter = null;
      reject(new Error(`no line ${want} on stdin within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    stdinWaiter = () => {
      const i = stdinLines.indexOf(want);
      if (i >= 0) {
        stdinLines.splice(0, i + 1);
        clearTimeout(timer);
        stdinWaiter = null;
        resolve();
      } else if (stdinClosed) {
        clearTimeout(timer);
        stdinWaiter = null;
        reject(new Error(`stdin closed before the line ${want}`));
      }
    };
    stdinWaiter();
  });
}

// ---------------------------------------------------------------- browser helpers

const sel = {
  row: (serial) => `[data-testid="device-row"][data-serial=${cssString(serial)}]`,
  page: (serial) => `[data-testid="device-page"][data-serial=${cssString(serial)}]`,
};

function cssString(s) {
  return `"${String(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\a ')}"`;
}

/** Whether `serial` occurs in `text` as a whole serial, not inside a longer one. */
function mentions(text, serial) {
  const esc = serial.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^A-Za-z0-9_-])${esc}($|[^A-Za-z0-9_-])`).test(text);
}

/** API answers (handled by the page) and the browser's favicon request may be 4xx. */
function expected4xx(url) {
  const p = new URL(url || '/', BASE).pathname;
  return p.startsWith('/v1/') || p === '/favicon.ico';
}

/** Collects the page's errors until the returned function is called. */
function watchErrors(page, label) {
  let on = true;
  page.on('console', (msg) => {
    if (!on || msg.type() !== 'error') return;
    const url = msg.location().url || '';
    // Chromium logs every API answer >= 400 as "Failed to load resource";
    // the dashboard handles those itself (e.g. the 404 of another tenant's
    // unit). Anything else, CSP violations included, is a failure.
    // The same goes for the browser's own request for /favicon.ico (the
    // dashboard declares no icon: CSP would refuse a data: one).
    if (/^Failed to load resource: the server responded with a status of 4\d\d/.test(msg.text()) &&
      expected4xx(url)) {
      return;
    }
    consoleErrors.push(`${label}: console error: ${msg.text()}${url ? ` (${url})` : ''}`);
  });
  page.on('pageerror', (e) => on && consoleErrors.push(`${label}: page error: ${e.message}`));
  page.on('response', (res) => {
    if (!on) return;
    if (res.status() >= 400 && !expected4xx(res.url())) consoleErrors.push(`${label}: ${res.status()} for ${res.url()}`);
  });
  page.on('requestfailed', (req) => {
    if (!on) return;
    const p = new URL(req.url()).pathname;
    // The change feed is aborted on purpose when the page goes away.
    if (p === '/v1/fleet/watch') return;
    consoleErrors.push(`${label}: request failed: ${req.url()} (${req.failure() ? req.failure().errorText : '?'})`);
  });
  return () => {
    on = false;
  };
}

function assertNoConsoleErrors() {
  if (consoleErrors.length) throw new Error(`browser errors:\n  ${consoleErrors.join('\n  ')}`);
}

async function newPage(label) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  const stopWatching = watchErrors(page, label);
  currentPage = page;
  const close = async () => {
    stopWatching();
    await context.close();
  };
  return { close, page };
}

async function signIn(page, token) {
  await page.goto(`${BASE}/dashboard/`, { waitUntil: 'load', timeout: STEP_MS });
  await page.locator('[data-testid="token-input"]').fill(token, { timeout: STEP_MS });
  await page.locator('[data-testid="login-button"]').click({ timeout: STEP_MS });
  // Signed in once the device list has loaded; a refused token shows an error instead.
  await waitInPage(page, 'neither the device list nor an error showed up after signing in', STEP_MS, () => {
    const listLoaded = document.querySelector('[data-testid="device-list"]')?.dataset.loaded === 'true';
    const err = document.querySelector('[data-testid="error"]');
    return listLoaded || (!!err && !err.hidden && err.textContent.trim() !== '');
  });
  const error = await page.evaluate(() => {
    const err = document.querySelector('[data-testid="error"]');
    return err && !err.hidden ? err.textContent.trim() : '';
  });
  if (error) throw new Error(`signing in failed: ${error}`);
  if (!(await page.locator('[data-testid="logout-button"]').isVisible())) throw new Error('no sign-out button after signing in');
}

/** Polls a predicate in the page until it holds; throws `what` after timeoutMs. */
async function waitInPage(page, what, timeoutMs, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: timeoutMs, polling: 200 });
  } catch (e) {
    if (/Timeout/i.test(e.message)) throw new Error(`${what} (waited ${timeoutMs / 1000} s)`);
    throw e;
  }
}

const statusText = (root, selector) => {
  const el = root && root.querySelector(selector);
  return el ? el.textContent.trim() : null;
};

// ---------------------------------------------------------------- the check

async function readerPart() {
  const { close, page } = await newPage('reader');
  let loads = 0;
  page.on('load', () => {
    loads += 1;
  });

  log(`opening ${BASE}/dashboard/ as the reader`);
  await signIn(page, READER_TOKEN);

  await waitInPage(page, `the device list does not show ${WATCH_SERIAL} as TRUSTED`, STEP_MS,
    ({ rowSel }) => {
      const row = document.querySelector(rowSel);
      const st = row && row.querySelector('[data-testid="device-status"]');
      return !!st && st.textContent.trim() === 'TRUSTED';
    }, { rowSel: sel.row(WATCH_SERIAL) });
  await waitInPage(page, 'the summary does not show a total', STEP_MS,
    () => /^\d+$/.test((document.querySelector('[data-testid="summary-total"]') || {}).textContent || ''));
  await waitInPage(page, 'the live indicator does not read "live"', STEP_MS,
    () => (document.querySelector('[data-testid="live-indicator"]') || {}).textContent === 'live');
  await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-overview.png'), fullPage: true });
  log('saved dashboard-overview.png');

  await page.locator(`${sel.row(WATCH_SERIAL)} a`).first().click();
  await waitInPage(page, `the device page of ${WATCH_SERIAL} does not show TRUSTED`, STEP_MS,
    ({ pageSel }) => {
      const p = document.querySelector(pageSel);
      const st = p && p.querySelector('[data-testid="device-status"]');
      return !!st && st.textContent.trim() === 'TRUSTED' && !!p.querySelector('[data-testid="history"] table');
    }, { pageSel: sel.page(WATCH_SERIAL) });
  for (const id of ['device-reasons', 'calibration-due', 'history']) {
    if (!(await page.locator(`${sel.page(WATCH_SERIAL)} [data-testid="${id}"]`).count())) {
      throw new Error(`the device page of ${WATCH_SERIAL} has no ${id}`);
    }
  }
  if (!(await page.evaluate(() => window.location.hash)).startsWith('#/devices/')) {
    throw new Error('the device link did not route to #/devices/<serial>');
  }

  const marker = `no-reload-${process.pid}-${Date.now()}`;
  await page.evaluate((m) => {
    window.__attestdCheckMarker = m;
  }, marker);
  const loadsBefore = loads;
  assertNoConsoleErrors();

  process.stdout.write('READY\n');
  log('READY; waiting for CHANGED on stdin');
  await waitForLine('CHANGED', CHANGED_LINE_MS);
  log(`CHANGED; waiting for ${WATCH_SERIAL} to read UNTRUSTED with ${EXPECT_REASON}`);

  await waitInPage(page, `the device page of ${WATCH_SERIAL} did not turn UNTRUSTED with reason ${EXPECT_REASON} without a reload`,
    CHANGE_MS,
    ({ pageSel, reason }) => {
      const p = document.querySelector(pageSel);
      if (!p) return false;
      const st = p.querySelector('[data-testid="device-status"]');
      const reasons = p.querySelector('[data-testid="device-reasons"]');
      if (!st || st.textContent.trim() !== 'UNTRUSTED' || !reasons) return false;
      const codes = [...reasons.querySelectorAll('[data-code]')].map((e) => e.getAttribute('data-code'));
      return codes.includes(reason) || new RegExp(`\\b${reason}\\b`).test(reasons.textContent);
    }, { pageSel: sel.page(WATCH_SERIAL), reason: EXPECT_REASON });

  const still = await page.evaluate(() => window.__attestdCheckMarker);
  if (still !== marker || loads !== loadsBefore) throw new Error('the page reloaded while waiting for the change');
  const live = await page.locator('[data-testid="live-indicator"]').textContent();
  if (live.trim() !== 'live') throw new Error(`the live indicator reads "${live.trim()}" after the change`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-device-untrusted.png'), fullPage: true });
  log('saved dashboard-device-untrusted.png');
  assertNoConsoleErrors();
  await close();
}

/** Identifiers of another tenant's unit, read with the reader token, that its page must not show. */
async function otherUnitIds(serial) {
  const res = await fetch(`${BASE}/v1/devices/${encodeURIComponent(serial)}`, {
    headers: { Authorization: `Bearer ${READER_TOKEN}`, Accept: 'application/json' },
    signal: AbortSignal.timeout(STEP_MS),
  });
  if (!res.ok) throw new Error(`the reader cannot read ${serial}: HTTP ${res.status}`);
  const d = await res.json();
  return [d.lastEvidenceId, d.provisioningRecordId, d.calibrationRecordId,
    d.appraisal && d.appraisal.evidenceId].filter((v) => typeof v === 'string' && v.length >= 8);
}

async function tenantPart() {
  const other = OTHER_SERIALS[0];
  const hidden = await otherUnitIds(other);
  const { close, page } = await newPage('tenant');
  log('signing in as the tenant');
  await signIn(page, TENANT_TOKEN);

  await waitInPage(page, `the device list does not show every tenant unit (${TENANT_SERIALS.join(', ')})`, STEP_MS,
    ({ rowSels }) => rowSels.every((s) => document.querySelector(s)), { rowSels: TENANT_SERIALS.map(sel.row) });
  await waitInPage(page, 'the summary does not show a total', STEP_MS,
    () => /^\d+$/.test((document.querySelector('[data-testid="summary-total"]') || {}).textContent || '') &&
      document.querySelectorAll('#group-firmware table, #group-firmware p').length > 0);

  const { text, html } = await page.evaluate(() => ({
    text: `${document.body.innerText}\n${document.body.textContent}`,
    html: document.body.innerHTML,
  }));
  for (const s of OTHER_SERIALS) {
    if (mentions(text, s) || mentions(html, s)) throw new Error(`the tenant's page shows ${s} of another tenant`);
  }
  for (const s of TENANT_SERIALS) {
    if (!mentions(text, s)) throw new Error(`the tenant's page text does not show ${s}`);
  }

  await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-tenant-list.png'), fullPage: true });
  log('saved dashboard-tenant-list.png');

  log(`opening #/devices/${other} as the tenant`);
  await page.evaluate((s) => {
    window.location.hash = `#/devices/${encodeURIComponent(s)}`;
  }, other);
  await waitInPage(page, `the device page of ${other} does not say "not found"`, STEP_MS,
    ({ pageSel }) => {
      const p = document.querySelector(pageSel);
      return !!p && p.dataset.state === 'not-found' && /not found/i.test(p.textContent);
    }, { pageSel: sel.page(other) });
  const leaked = await page.evaluate(({ pageSel, ids }) => {
    const p = document.querySelector(pageSel);
    const found = ['device-status', 'device-reasons', 'calibration-due', 'history']
      .filter((t) => p.querySelector(`[data-testid="${t}"]`));
    const text = document.body.textContent;
    return [...found.map((t) => `element ${t}`), ...ids.filter((id) => text.includes(id) || document.body.innerHTML.includes(id))];
  }, { pageSel: sel.page(other), ids: hidden });
  if (leaked.length) throw new Error(`the not-found page of ${other} shows its data: ${leaked.join(', ')}`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-tenant.png'), fullPage: true });
  log('saved dashboard-tenant.png');
  assertNoConsoleErrors();
  await close();
}

async function main() {
  log(`launching ${CHROMIUM}`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // No sandbox (the tests run as root); nothing from outside (the
    // machines have a closed network).
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--disable-quic',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    timeout: STEP_MS * 2,
  });
  await readerPart();
  await tenantPart();
  clearTimeout(watchdog);
  await browser.close();
  process.stdout.write('OK\n');
  process.exit(0);
}

main().catch((e) => fail(e && e.message ? e.message : String(e)));

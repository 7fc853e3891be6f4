// What the browser tests share (e2e.test.mjs, sse.test.mjs): the
// environment run.sh provides, redis-cli, the gateway's restart, and
// Debian's chromium through playwright-core.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { openSync, readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this test through tests/browser/run.sh`);
  return v;
};
export const GATEWAY_BIN = env('GATEWAY_BIN');
export const GATEWAY_ARGS = env('GATEWAY_ARGS').split(/\s+/).filter(Boolean);
export const REDIS_PORT = env('REDIS_PORT');
export const NODE_ID = env('GATEWAY_NODE_ID');
export const WORK_DIR = env('WORK_DIR');
export const BASE = `http://127.0.0.1:${env('GATEWAY_PORT')}`;
const PID_FILE = `${WORK_DIR}/gateway.pid`;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const run = promisify(execFile);

export async function redis(...args) {
  const { stdout } = await run('redis-cli', ['-p', REDIS_PORT, ...args]);
  return stdout.trim();
}
export const envelope = (type, body, meta = '') => JSON.stringify({ type, content: { body, meta_data: meta } });
/** PUBLISH: live only, no history id. Returns the number of receiving nodes. */
export const publishLive = (acct, body) => redis('PUBLISH', `notify:acct:{${acct}}`, envelope('demo', body));
/** notify_publish: history + live, returns the id. */
export const publishHistory = (acct, body) =>
  redis('FCALL', 'notify_publish', '1', `notify:stream:{${acct}}`, envelope('demo', body));

function gatewayPid() {
  return Number(readFileSync(PID_FILE, 'utf8').trim());
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM the gateway and wait until it has exited (it is run.sh's child, not ours). */
export async function stopGateway() {
  const pid = gatewayPid();
  process.kill(pid, 'SIGTERM');
  const until = Date.now() + 20000;
  while (alive(pid)) {
    if (Date.now() > until) throw new Error(`gateway ${pid} still running 20 s after SIGTERM`);
    await sleep(50);
  }
  // Nothing listens any more.
  await assert.rejects(fetch(`${BASE}/healthz`), 'the gateway port still answers after exit');
}

export async function startGateway() {
  const log = openSync(`${WORK_DIR}/gateway.log`, 'a');
  const child = spawn(GATEWAY_BIN, GATEWAY_ARGS, { stdio: ['ignore', log, log], detached: true });
  child.unref();
  writeFileSync(PID_FILE, `${child.pid}\n`);
  const until = Date.now() + 15000;
  for (;;) {
    try {
      if ((await fetch(`${BASE}/readyz`)).ok) return child.pid;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > until) throw new Error('restarted gateway not ready within 15 s');
    await sleep(100);
  }
}

/** Debian's chromium, headless, with a fresh temporary profile. */
export async function launchBrowser() {
  const browser = await chromium.launch({
    executablePath: env('CHROMIUM'),
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1366, height: 820 } });
  return { browser, context };
}

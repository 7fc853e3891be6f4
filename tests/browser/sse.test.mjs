// Browser end-to-end test of GET /sse (README.md, "Server-Sent Events") in
// Debian's chromium: a page's own EventSource, whose reconnect sends
// Last-Event-ID by itself, and clients/js/notify-client.js forced to SSE
// (the demo page with ?transport=sse), and auto falling back to SSE when
// the WebSocket cannot open. Each receives, is dropped (the gateway drains
// and restarts under it), reconnects by itself and gets what was published
// meanwhile exactly once, in order. Started by run.sh after e2e.test.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launchBrowser, publishHistory, sleep, startGateway, stopGateway } from './lib.mjs';

let browser;
let context;

before(async () => {
  ({ browser, context } = await launchBrowser());
});

after(async () => {
  await browser?.close();
});

async function newPage(who) {
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error(`[${who}] page error: ${err.message}`));
  return page;
}

/** Polls fn() in the page until it returns true (or fails after timeout ms). */
async function until(page, fn, arg, timeout = 20000) {
  await page.waitForFunction(fn, arg, { timeout, polling: 100 });
}

test('a real EventSource: register, notifications with ids, a drop, its own reconnect with Last-Event-ID: each message once', async () => {
  const page = await newPage('eventsource');
  await page.goto(`${BASE}/?account=nobody`); // same origin as /sse
  await page.evaluate(() => {
    window.got = { register: 0, opens: 0, errors: 0, closes: [], messages: [] };
    const es = new EventSource('/sse?user_id=es1');
    window.es = es;
    es.onopen = () => window.got.opens++;
    es.onerror = () => window.got.errors++;
    es.addEventListener('register', (e) => {
      window.got.register++;
      window.got.connection = JSON.parse(e.data).content.body;
    });
    es.addEventListener('close', (e) => window.got.closes.push(JSON.parse(e.data)));
    es.onmessage = (e) => {
      const m = JSON.parse(e.data);
      window.got.messages.push({ body: m.content.body, id: m.id, lastEventId: e.lastEventId });
    };
  });
  await until(page, () => window.got.register === 1);
  const first = await page.evaluate(() => window.got.connection);

  const h1 = await publishHistory('es1', 'es before');
  await until(page, () => window.got.messages.length === 1);
  let got = await page.evaluate(() => window.got);
  assert.deepEqual(got.messages, [{ body: 'es before', id: h1, lastEventId: h1 }]);

  // The node drains (event: close, the response ends) and restarts; what is
  // published meanwhile is in the history.
  await stopGateway();
  got = await page.evaluate(() => window.got);
  assert.equal(got.closes.length, 1, 'event: close before the stream ended');
  assert.equal(got.closes[0].code, 1001);
  const down1 = await publishHistory('es1', 'es while down 1');
  const down2 = await publishHistory('es1', 'es while down 2');
  await sleep(1500); // the browser retries against a closed port meanwhile
  await startGateway();

  // The EventSource reconnects by itself (retry: from the server) and
  // sends Last-Event-ID: h1; the gateway replays from there.
  await until(page, () => window.got.register === 2, null, 30000);
  const live = await publishHistory('es1', 'es after');
  await until(page, () => window.got.messages.length >= 4);
  await sleep(500);
  got = await page.evaluate(() => window.got);
  assert.notEqual(got.connection, first, 'a new connection');
  assert.deepEqual(
    got.messages.map((m) => [m.body, m.id]),
    [
      ['es before', h1],
      ['es while down 1', down1],
      ['es while down 2', down2],
      ['es after', live],
    ],
    'each exactly once, in order',
  );
  assert.equal(got.messages.at(-1).lastEventId, live);
  assert.ok(got.opens >= 2);
  await page.evaluate(() => window.es.close());
  await page.close();
});

test('the JS client forced to SSE (demo page, ?transport=sse): shows the transport, survives a restart, gets the missed messages once', async () => {
  const page = await newPage('client-sse');
  await page.goto(`${BASE}/?account=sse2&transport=sse`);
  await page.locator('#state').filter({ hasText: /^open$/ }).waitFor({ timeout: 15000 });
  assert.match(await page.locator('#transport').textContent(), /^sse/);
  const before1 = await publishHistory('sse2', 'client before');
  await page.locator('#notifications .n-body', { hasText: 'client before' }).waitFor({ timeout: 10000 });
  const oldConn = await page.locator('#connection-id').textContent();

  await stopGateway();
  await page.locator('#state').filter({ hasText: /^(closed|connecting)$/ }).waitFor({ timeout: 5000 });
  const down = await publishHistory('sse2', 'client while down');
  await sleep(1000);
  await startGateway();
  await page.locator('#state').filter({ hasText: /^open$/ }).waitFor({ timeout: 30000 });
  assert.notEqual(await page.locator('#connection-id').textContent(), oldConn);
  assert.match(await page.locator('#transport').textContent(), /^sse/);
  const after1 = await publishHistory('sse2', 'client after');
  await page.locator('#notifications .n-body', { hasText: 'client after' }).waitFor({ timeout: 10000 });
  await sleep(500);
  const ids = await page
    .locator('#notifications li[data-id]')
    .evaluateAll((els) => els.map((e) => e.dataset.id).reverse());
  assert.deepEqual(ids, [before1, down, after1], 'each exactly once, in order');
  const log = await page.locator('#log').textContent();
  assert.match(log, /over sse/);
  assert.match(log, /closed \(1001 node draining/);
  await page.close();
});

test("transport 'auto': a WebSocket the network breaks falls back to SSE", async () => {
  const page = await newPage('client-auto');
  // What a proxy that breaks upgrades does: the WebSocket never gets through.
  await page.routeWebSocket(/\/ws/, (ws) => ws.close());
  await page.goto(`${BASE}/?account=sse3`);
  await page.locator('#state').filter({ hasText: /^open$/ }).waitFor({ timeout: 15000 });
  assert.match(await page.locator('#transport').textContent(), /^sse/);
  await publishHistory('sse3', 'auto works');
  await page.locator('#notifications .n-body', { hasText: 'auto works' }).waitFor({ timeout: 10000 });
  await page.close();
});

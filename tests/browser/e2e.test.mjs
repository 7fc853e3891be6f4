// Browser end-to-end test: the demo page (served by the gateway with --demo)
// and clients/js/notify-client.js, in Debian's chromium via playwright-core,
// against a real gateway and a real redis-server. Started by run.sh, which
// provides the environment (ports, binary, work dir) and the first gateway.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  BASE,
  NODE_ID,
  WORK_DIR,
  launchBrowser,
  publishHistory,
  publishLive,
  redis,
  sleep,
  startGateway,
  stopGateway,
} from './lib.mjs';

let browser;
let context;
const pages = {};

async function openTab(account) {
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error(`[${account} tab] page error: ${err.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') console.error(`[${account} tab] console: ${m.text()}`);
  });
  await page.goto(`${BASE}/?account=${encodeURIComponent(account)}`);
  await page.locator('#state').filter({ hasText: /^open$/ }).waitFor({ timeout: 15000 });
  return page;
}

/** Bodies of the notifications shown, oldest first (the page lists newest first). */
async function bodies(page) {
  const list = await page.locator('#notifications li:not(.gap) .n-body').allTextContents();
  return list.reverse();
}

async function waitForBody(page, body, timeout = 15000) {
  await page.locator('#notifications .n-body', { hasText: body }).first().waitFor({ timeout });
}

before(async () => {
  ({ browser, context } = await launchBrowser());
});

after(async () => {
  await browser?.close();
});

test('the demo page loads from the gateway and shows "open", the connection id and the node', async () => {
  pages.alice = await openTab('alice');
  const page = pages.alice;
  assert.equal(await page.title(), 'notify-gateway demo');
  assert.equal(await page.locator('#state').textContent(), 'open');
  assert.match(await page.locator('#connection-id').textContent(), /^[0-9a-f]{8,}$/i);
  assert.equal(await page.locator('#node').textContent(), NODE_ID);
  assert.equal(await page.locator('#conn-account').textContent(), 'alice');
  // --auth none with an API key: the publish form is offered.
  assert.equal(await page.locator('#publish').isVisible(), true);
});

test('a notification PUBLISHed with redis-cli appears in the page', async () => {
  const receivers = await publishLive('alice', 'hello from redis-cli');
  assert.equal(receivers, '1', 'one gateway subscribed to alice');
  await waitForBody(pages.alice, 'hello from redis-cli');
  assert.equal(await pages.alice.locator('#notifications li .n-type').first().textContent(), 'demo');
});

test("two tabs of one account both show a notification; another account's tab does not", async () => {
  pages.alice2 = await openTab('alice');
  pages.bob = await openTab('bob');
  const a1 = await pages.alice.locator('#connection-id').textContent();
  const a2 = await pages.alice2.locator('#connection-id').textContent();
  assert.notEqual(a1, a2, 'each tab has its own connection');

  await publishLive('alice', 'for alice only');
  await waitForBody(pages.alice, 'for alice only');
  await waitForBody(pages.alice2, 'for alice only');
  await publishLive('bob', 'for bob only');
  await waitForBody(pages.bob, 'for bob only');
  await sleep(500);
  assert.deepEqual(await bodies(pages.bob), ['for bob only']);
  assert.ok(!(await bodies(pages.alice)).includes('for bob only'));
  assert.ok(!(await bodies(pages.alice2)).includes('for bob only'));
});

test('gateway restarted under an open tab: the client reconnects and shows what was published meanwhile, once, in order', async () => {
  const page = pages.alice;
  // A notification with history gives the client a resume point.
  const h1 = await publishHistory('alice', 'before restart');
  await waitForBody(page, 'before restart');
  assert.equal(await page.locator('#last-id').textContent(), h1);
  await waitForBody(pages.alice2, 'before restart');
  const oldConn = await page.locator('#connection-id').textContent();

  await stopGateway();
  await page.locator('#state').filter({ hasText: /^(closed|connecting)$/ }).waitFor({ timeout: 5000 });
  const downId = await publishHistory('alice', 'published while down');
  assert.match(downId, /^\d+-\d+$/);
  await sleep(1000); // the client retries against a closed port meanwhile
  assert.ok(!(await bodies(page)).includes('published while down'), 'shown before the reconnect');

  await startGateway();
  // The client reconnects by itself (backoff capped at 10 s by the demo page).
  await page.locator('#state').filter({ hasText: /^open$/ }).waitFor({ timeout: 20000 });
  const newConn = await page.locator('#connection-id').textContent();
  assert.notEqual(newConn, oldConn, 'a new connection after the restart');
  await waitForBody(page, 'published while down');

  const after1 = await publishHistory('alice', 'after restart 1');
  const after2 = await publishHistory('alice', 'after restart 2');
  await waitForBody(page, 'after restart 2');
  await sleep(500);

  const expected = ['before restart', 'published while down', 'after restart 1', 'after restart 2'];
  for (const p of [page, pages.alice2]) {
    await waitForBody(p, 'after restart 2', 20000);
    const seen = (await bodies(p)).filter((b) => expected.includes(b));
    assert.deepEqual(seen, expected, 'each exactly once, in order');
  }
  const ids = await page.locator('#notifications li[data-id]').evaluateAll((els) => els.map((e) => e.dataset.id).reverse());
  assert.deepEqual(ids, [h1, downId, after1, after2]);
  assert.equal(await page.locator('#last-id').textContent(), after2);
  // The log shows the drop and the reconnect.
  const log = await page.locator('#log').textContent();
  assert.match(log, /closed \(1001|closed \(1006/);
  // bob's tab (no history) reconnected too.
  await pages.bob.locator('#state').filter({ hasText: /^open$/ }).waitFor({ timeout: 20000 });
});

test('the publish form sends a notification through POST /publish, with history', async () => {
  const page = pages.alice;
  await page.fill('#pub-account', 'alice');
  await page.fill('#pub-type', 'form-test');
  await page.fill('#pub-body', 'sent from the publish form');
  await page.fill('#pub-meta', '{"url":"/orders/42"}');
  await page.click('#pub-send');
  await page.locator('#publish-result.ok').waitFor({ timeout: 10000 });
  const result = await page.locator('#publish-result').textContent();
  const id = /published: (\d+-\d+)/.exec(result)?.[1];
  assert.ok(id, `publish result: ${result}`);
  await waitForBody(page, 'sent from the publish form');
  const item = page.locator(`#notifications li[data-id="${id}"]`);
  assert.equal(await item.locator('.n-type').textContent(), 'form-test');
  assert.equal(await item.locator('.n-meta').textContent(), '{"url":"/orders/42"}');
  await waitForBody(pages.alice2, 'sent from the publish form');
  // with history: it is in alice's stream
  assert.equal(await redis('XLEN', 'notify:stream:{alice}'), '5');
  await sleep(400); // let the arrival animation finish
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: `${WORK_DIR}/demo.png`, animations: 'disabled' });
  console.log(`screenshot: ${WORK_DIR}/demo.png`);
});

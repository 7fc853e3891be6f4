// Unit tests of clients/js/notify-client.js: backoff, resume with since,
// token renewal, immediate reconnects, heartbeats. A fake WebSocket and
// node:test's mock timers; no network. Runs on Node 20+:
//   node --test tests/browser/client.unit.test.mjs
import { test, beforeEach, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';
import {
  NotifyClient,
  backoffDelay,
  compareIds,
  tokenExpiry,
} from '../../clients/js/notify-client.js';

const T0 = 1_800_000_000_000; // mocked Date.now() at the start of each test

/** A WebSocket stand-in the test drives from the "server" side. */
class FakeWS {
  static all = [];
  constructor(url) {
    this.url = new URL(url);
    this.sent = [];
    this.closedWith = null;
    FakeWS.all.push(this);
  }
  send(data) {
    if (this.closedWith) throw new Error('send on closed socket');
    this.sent.push(JSON.parse(data));
  }
  close(code, reason) {
    this.closedWith = { code, reason };
  }
  // server side
  register(meta = {}, id = `conn${FakeWS.all.length}`) {
    this.message({
      type: 'register',
      content: {
        body: id,
        meta_data: JSON.stringify({ account: 'u1', node: 'n1', heartbeat_interval: 10, heartbeat_timeout: 20, ...meta }),
      },
    });
  }
  message(obj) {
    this.onmessage?.({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) });
  }
  serverClose(code, reason = '') {
    this.onclose?.({ code, reason });
  }
}

/** An EventSource stand-in: named events through addEventListener, the
 * default one through onmessage, as a browser dispatches them. */
class FakeES {
  static all = [];
  constructor(url) {
    this.url = new URL(url);
    this.closed = false;
    this.listeners = {};
    FakeES.all.push(this);
  }
  addEventListener(type, fn) {
    (this.listeners[type] ||= []).push(fn);
  }
  close() {
    this.closed = true;
  }
  // server side
  event(type, obj) {
    if (this.closed) return;
    const e = { data: typeof obj === 'string' ? obj : JSON.stringify(obj) };
    if (type === 'message') this.onmessage?.(e);
    for (const fn of this.listeners[type] || []) fn(e);
  }
  register(id = `sse${FakeES.all.length}`) {
    this.event('register', {
      type: 'register',
      content: { body: id, meta_data: JSON.stringify({ account: 'u1', node: 'n1', heartbeat_interval: 10, heartbeat_timeout: 20 }) },
    });
  }
  fail() {
    if (!this.closed) this.onerror?.({});
  }
}

const last = () => FakeWS.all.at(-1);
const lastES = () => FakeES.all.at(-1);
const flush = () => new Promise((resolve) => setImmediate(resolve));

function jwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.c2lnbmF0dXJl`;
}

function make(opts = {}) {
  const events = [];
  const client = new NotifyClient({
    url: 'ws://gw.test/ws',
    accountId: 'u1',
    WebSocket: FakeWS,
    random: () => 0.5,
    ...opts,
  });
  for (const type of ['state', 'notification', 'gap', 'error']) client.on(type, (d) => events.push({ ...d, kind: type }));
  return { client, events };
}

const states = (events) => events.filter((e) => e.kind === 'state').map((e) => e.state);

beforeEach(() => {
  FakeWS.all = [];
  FakeES.all = [];
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: T0 });
});
afterEach(() => mock.timers.reset());

test('helpers: backoffDelay is capped exponential with full jitter and a floor', () => {
  const o = { baseDelay: 1000, maxDelay: 30000, minDelay: 100 };
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 20].map((n) => backoffDelay(n, o, () => 0.999999)),
    [999, 1999, 3999, 7999, 15999, 29999, 29999, 29999]);
  assert.equal(backoffDelay(3, o, () => 0), 100);
  assert.equal(backoffDelay(1000, o, () => 0.5), 15000);
  assert.equal(compareIds('1700000000000-2', '1700000000000-10'), -1);
  assert.equal(compareIds('1700000000001-0', '1700000000000-10'), 1);
  assert.equal(compareIds('5-5', '5-5'), 0);
  assert.equal(compareIds('x', '5-5'), undefined);
  assert.equal(tokenExpiry(jwt({ sub: 'a', exp: 1234 })), 1234);
  assert.equal(tokenExpiry('garbage'), undefined);
});

test('connects with user_id, reads the register reply, heartbeats at the advertised interval', () => {
  const { client, events } = make({ url: 'http://gw.test/ws' });
  client.connect();
  const ws = last();
  assert.equal(ws.url.protocol, 'ws:');
  assert.equal(ws.url.pathname, '/ws');
  assert.equal(ws.url.searchParams.get('user_id'), 'u1');
  assert.equal(ws.url.searchParams.get('since'), null);
  ws.register({ heartbeat_interval: 7 }, 'c-42');
  assert.deepEqual(states(events), ['connecting', 'open']);
  const open = events.find((e) => e.state === 'open');
  assert.equal(open.connectionId, 'c-42');
  assert.equal(open.node, 'n1');
  assert.equal(client.connectionId, 'c-42');
  mock.timers.tick(6999);
  assert.equal(ws.sent.length, 0);
  mock.timers.tick(1);
  assert.deepEqual(ws.sent, [{ type: 'heartbeat' }]);
  ws.message({ type: 'heartbeat', content: { body: '', meta_data: '' } });
  mock.timers.tick(7000);
  assert.equal(ws.sent.length, 2);
  client.close();
  assert.equal(ws.closedWith.code, 1000);
  assert.equal(client.state, 'closed');
});

test('notifications: emitted with their id; lastId advances; duplicates dropped; control types are not notifications', () => {
  const { client, events } = make();
  client.connect();
  last().register();
  last().message({ type: 'chat', content: { body: 'a', meta_data: '' }, id: '100-0', extra: 1 });
  last().message({ type: 'chat', content: { body: 'live, no id', meta_data: '' } });
  last().message({ type: 'chat', content: { body: 'dup', meta_data: '' }, id: '100-0' });
  last().message({ type: 'chat', content: { body: 'b', meta_data: '' }, id: '100-1' });
  last().message({ type: 'error', content: { body: 'unknown type', meta_data: '' } });
  last().message('not json');
  const notes = events.filter((e) => e.kind === 'notification').map((e) => e.content.body);
  assert.deepEqual(notes, ['a', 'live, no id', 'b']);
  assert.equal(client.lastId, '100-1');
  const errors = events.filter((e) => e.kind === 'error').map((e) => e.message);
  assert.deepEqual(errors, ['unknown type', 'frame is not JSON']);
  client.close();
});

test('resumes with since=<last id> after a drop, and reports a gap', () => {
  const { client, events } = make({ since: '50-0' });
  client.connect();
  assert.equal(last().url.searchParams.get('since'), '50-0');
  last().register();
  last().message({ type: 'gap', content: { body: '60-0', meta_data: '' } });
  assert.deepEqual(events.filter((e) => e.kind === 'gap').map(({ oldestId, since }) => ({ oldestId, since })),
    [{ oldestId: '60-0', since: '50-0' }]);
  last().message({ type: 't', content: { body: 'x', meta_data: '' }, id: '61-3' });
  last().serverClose(1006);
  mock.timers.tick(60000);
  assert.equal(FakeWS.all.length, 2);
  assert.equal(last().url.searchParams.get('since'), '61-3');
  client.close();
});

test('failed attempts back off exponentially (capped, jittered); a stable connection resets the backoff', () => {
  const { client, events } = make({ random: () => 0.999999 });
  client.connect();
  const delays = [];
  for (let i = 0; i < 8; i++) {
    const before = FakeWS.all.length;
    last().serverClose(1006); // handshake refused: never registered
    const d = events.at(-1).delay;
    delays.push(d);
    assert.equal(events.at(-1).willReconnect, true);
    mock.timers.tick(d - 1);
    assert.equal(FakeWS.all.length, before, 'no attempt before the delay is over');
    mock.timers.tick(1);
    assert.equal(FakeWS.all.length, before + 1);
  }
  assert.deepEqual(delays, [999, 1999, 3999, 7999, 15999, 29999, 29999, 29999]);
  last().register();
  mock.timers.tick(5000); // stable
  last().message({ type: 'heartbeat', content: { body: '', meta_data: '' } });
  last().serverClose(1011);
  assert.equal(events.at(-1).delay, 999);
  client.close();
});

test('1001 and 1013 reconnect at once after a stable connection, never in a tight loop', () => {
  for (const code of [1001, 1013]) {
    FakeWS.all = [];
    const { client, events } = make();
    client.connect();
    last().register();
    mock.timers.tick(6000);
    last().message({ type: 'heartbeat', content: { body: '', meta_data: '' } });
    last().serverClose(code, 'bye');
    const closed = events.at(-1);
    assert.equal(closed.state, 'closed');
    assert.equal(closed.code, code);
    assert.equal(closed.delay, 0);
    mock.timers.tick(0);
    assert.equal(FakeWS.all.length, 2, `reconnected at once after ${code}`);
    // A server that registers and closes at once: each retry waits longer.
    const delays = [];
    for (let i = 0; i < 6; i++) {
      last().register();
      last().serverClose(code);
      delays.push(events.at(-1).delay);
      mock.timers.tick(events.at(-1).delay);
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 15000, 15000]);
    client.close();
  }
});

test('getToken: token in the query; renewed after 4401 and before reconnecting with an expired token only', async () => {
  let n = 0;
  const exp = Math.floor(T0 / 1000) + 3600;
  const getToken = mock.fn(async () => jwt({ sub: 'u1', exp: exp + n++ }));
  const { client, events } = make({ getToken, accountId: undefined });
  client.connect();
  await flush();
  assert.equal(getToken.mock.callCount(), 1);
  assert.equal(last().url.searchParams.get('token'), jwt({ sub: 'u1', exp }));
  assert.equal(last().url.searchParams.get('user_id'), null);
  last().register();
  mock.timers.tick(10000);
  last().message({ type: 'heartbeat', content: { body: '', meta_data: '' } });

  // A network drop with a token still valid: no new token.
  last().serverClose(1006);
  mock.timers.tick(events.at(-1).delay);
  await flush();
  assert.equal(getToken.mock.callCount(), 1);
  assert.equal(FakeWS.all.length, 2);
  last().register();
  mock.timers.tick(10000);
  last().message({ type: 'heartbeat', content: { body: '', meta_data: '' } });

  // 4401: a new token, at once.
  last().serverClose(4401, 'token expired');
  assert.equal(events.at(-1).delay, 0);
  mock.timers.tick(0);
  await flush();
  assert.equal(getToken.mock.callCount(), 2);
  assert.equal(last().url.searchParams.get('token'), jwt({ sub: 'u1', exp: exp + 1 }));
  last().register();

  // The clock passes exp while disconnected: renewed before reconnecting.
  mock.timers.tick(3600 * 1000);
  last().message({ type: 'heartbeat', content: { body: '', meta_data: '' } });
  last().serverClose(1006);
  mock.timers.tick(events.at(-1).delay);
  await flush();
  assert.equal(getToken.mock.callCount(), 3);
  assert.equal(last().url.searchParams.get('token'), jwt({ sub: 'u1', exp: exp + 2 }));
  client.close();
});

test('getToken failure: error event, then a backed-off retry', async () => {
  let fail = true;
  const getToken = mock.fn(async () => {
    if (fail) throw new Error('auth server down');
    return jwt({ sub: 'u1', exp: Math.floor(T0 / 1000) + 600 });
  });
  const { client, events } = make({ getToken, accountId: undefined });
  client.connect();
  await flush();
  assert.equal(FakeWS.all.length, 0);
  assert.match(events.find((e) => e.kind === 'error').message, /auth server down/);
  const closed = events.at(-1);
  assert.equal(closed.state, 'closed');
  assert.ok(closed.delay >= 100);
  fail = false;
  mock.timers.tick(closed.delay);
  await flush();
  assert.equal(FakeWS.all.length, 1);
  client.close();
});

test('no register reply in time, or no heartbeat replies: the client gives up on the socket and reconnects', () => {
  const { client, events } = make({ connectTimeout: 3000 });
  client.connect();
  mock.timers.tick(3000);
  assert.equal(FakeWS.all[0].closedWith.code, 4000);
  assert.equal(events.at(-1).state, 'closed');
  assert.equal(events.at(-1).code, 4000);
  mock.timers.tick(events.at(-1).delay);
  assert.equal(FakeWS.all.length, 2);
  last().register({ heartbeat_interval: 5, heartbeat_timeout: 10 });
  // an answered heartbeat keeps it
  mock.timers.tick(5000);
  assert.deepEqual(last().sent, [{ type: 'heartbeat' }]);
  last().message({ type: 'heartbeat', content: { body: '', meta_data: '' } });
  mock.timers.tick(5000);
  assert.equal(last().sent.length, 2);
  assert.equal(last().closedWith, null);
  // an unanswered one, a whole interval later: the socket is given up
  mock.timers.tick(4999);
  assert.equal(FakeWS.all[1].closedWith, null);
  mock.timers.tick(1);
  assert.equal(FakeWS.all.length, 2);
  assert.equal(FakeWS.all[1].closedWith.code, 4000);
  assert.equal(events.at(-1).reason, 'no heartbeat reply');
  client.close();
});

test('close() stops for good: no reconnect, events from the old socket ignored', () => {
  const { client, events } = make();
  client.connect();
  const ws = last();
  ws.register();
  client.close();
  ws.serverClose(1001);
  mock.timers.tick(120000);
  assert.equal(FakeWS.all.length, 1);
  assert.deepEqual(states(events), ['connecting', 'open', 'closed']);
  assert.equal(events.at(-1).willReconnect, false);
  client.connect();
  assert.equal(FakeWS.all.length, 2);
  client.close();
});

test('on()/off() and addEventListener both work', () => {
  const { client } = make();
  const seen = [];
  const fn = (d) => seen.push(`on:${d.state}`);
  client.on('state', fn);
  client.addEventListener('state', (e) => seen.push(`ev:${e.detail.state}`));
  client.connect();
  client.off('state', fn);
  last().register();
  client.close();
  assert.deepEqual(seen, ['on:connecting', 'ev:connecting', 'ev:open', 'ev:closed']);
});

test('acks: each notification with an id is acknowledged after the handlers returned, in one frame per turn', async () => {
  const { client, events } = make();
  const order = [];
  client.on('notification', (n) => order.push(`handled ${n.id}`));
  client.connect();
  await flush();
  const ws = last();
  ws.register();
  ws.sent.length = 0;
  const send = ws.send.bind(ws);
  ws.send = (data) => {
    order.push(`sent ${data}`);
    send(data);
  };
  ws.message({ type: 't', id: '5-0', content: { body: 'a', meta_data: '' } });
  ws.message({ type: 't', content: { body: 'no id', meta_data: '' } });
  await flush();
  assert.deepEqual(ws.sent, [{ type: 'ack', content: { body: '5-0' } }]);
  assert.equal(order[0], 'handled 5-0');
  // two in the same turn: one frame
  client.ack('6-0');
  client.ack('7-0');
  await flush();
  assert.deepEqual(ws.sent.at(-1), { type: 'ack', content: { body: '6-0,7-0' } });
  ws.message({ type: 'ack', content: { body: '6-0,7-0', meta_data: '' } });
  client.on('ack', (a) => events.push({ ...a, kind: 'ack' }));
  ws.message({ type: 'ack', content: { body: '8-0', meta_data: '' } });
  assert.deepEqual(events.filter((e) => e.kind === 'ack').map((e) => e.ids), [['8-0']]);
  client.close();
});

test('acks: autoAck false sends none; expired notifications are dropped unseen and unacknowledged', async () => {
  const { client, events } = make({ autoAck: false });
  client.connect();
  await flush();
  const ws = last();
  ws.register();
  ws.sent.length = 0;
  ws.message({ type: 't', id: '5-0', content: { body: 'a', meta_data: '' } });
  await flush();
  assert.deepEqual(ws.sent, []);
  ws.message({ type: 't', id: '6-0', expires_at: T0 - 1, content: { body: 'stale', meta_data: '' } });
  ws.message({ type: 't', id: '7-0', expires_at: T0 + 60000, content: { body: 'fresh', meta_data: '' } });
  const bodies = events.filter((e) => e.kind === 'notification').map((e) => e.content.body);
  assert.deepEqual(bodies, ['a', 'fresh']);
  client.close();
  assert.equal(client.ack('7-0'), false);
});

test("transport 'sse': /sse over http(s) with user_id; register, notifications, gap; no heartbeats", () => {
  const { client, events } = make({ url: 'wss://gw.test/ws', transport: 'sse', EventSource: FakeES, since: '5-0' });
  client.connect();
  assert.equal(FakeWS.all.length, 0);
  const es = lastES();
  assert.equal(es.url.protocol, 'https:');
  assert.equal(es.url.pathname, '/sse');
  assert.equal(es.url.searchParams.get('user_id'), 'u1');
  assert.equal(es.url.searchParams.get('since'), '5-0');
  es.register('s-1');
  const open = events.find((e) => e.state === 'open');
  assert.equal(open.transport, 'sse');
  assert.equal(open.connectionId, 's-1');
  assert.equal(client.transport, 'sse');
  es.event('gap', { type: 'gap', content: { body: '7-0', meta_data: '' } });
  es.event('message', { id: '7-0', type: 't', content: { body: 'a', meta_data: '' } });
  es.event('message', { id: '7-0', type: 't', content: { body: 'dup', meta_data: '' } });
  mock.timers.tick(60000); // no heartbeat to send, no heartbeat timeout
  assert.equal(FakeES.all.length, 1);
  assert.equal(es.closed, false);
  assert.deepEqual(events.filter((e) => e.kind === 'notification').map((e) => e.content.body), ['a']);
  assert.deepEqual(events.filter((e) => e.kind === 'gap').map((e) => e.oldestId), ['7-0']);
  client.close();
  assert.equal(es.closed, true);
});

test("transport 'sse': event: close 1001 reconnects at once with since; a failed stream backs off, with since", () => {
  const { client, events } = make({ transport: 'sse', EventSource: FakeES, stableAfter: 0 });
  client.connect();
  lastES().register();
  lastES().event('message', { id: '9-1', type: 't', content: { body: 'x', meta_data: '' } });
  lastES().event('close', { code: 1001, reason: 'node draining' });
  assert.equal(FakeES.all[0].closed, true);
  const closed = events.filter((e) => e.state === 'closed').at(-1);
  assert.equal(closed.code, 1001);
  assert.equal(closed.delay, 0);
  mock.timers.tick(0);
  assert.equal(FakeES.all.length, 2);
  assert.equal(lastES().url.searchParams.get('since'), '9-1');
  lastES().register();
  lastES().fail(); // the network dropped it: ours to retry, not the browser's
  assert.equal(FakeES.all[1].closed, true);
  assert.ok(events.filter((e) => e.state === 'closed').at(-1).delay > 0);
  mock.timers.tick(60000);
  assert.equal(FakeES.all.length, 3);
  assert.equal(lastES().url.searchParams.get('since'), '9-1');
  assert.equal(FakeWS.all.length, 0);
  client.close();
});

test("transport 'auto': a WebSocket that cannot open falls back to SSE at once, and stays there", () => {
  const { client, events } = make({ EventSource: FakeES, stableAfter: 0 });
  client.connect();
  assert.equal(FakeWS.all.length, 1); // WebSocket first
  last().serverClose(1006); // the upgrade never happened
  mock.timers.tick(0);
  assert.equal(FakeES.all.length, 1);
  lastES().register();
  assert.equal(events.filter((e) => e.state === 'open').at(-1).transport, 'sse');
  lastES().fail();
  mock.timers.tick(60000);
  assert.equal(FakeES.all.length, 2, 'SSE again once a stream opened');
  assert.equal(FakeWS.all.length, 1);
  client.close();
});

test("transport 'auto': a stream that cannot open either goes back to WebSocket; after an open WebSocket, no fallback", () => {
  const { client } = make({ EventSource: FakeES });
  client.connect();
  last().serverClose(1006);
  mock.timers.tick(0);
  lastES().fail(); // SSE refused too (server down)
  mock.timers.tick(60000);
  assert.equal(FakeWS.all.length, 2, 'WebSocket again');
  last().register();
  last().serverClose(1006);
  mock.timers.tick(60000);
  assert.equal(FakeWS.all.length, 3);
  last().serverClose(1006); // the server restarting: not a reason to leave WebSocket
  mock.timers.tick(60000);
  assert.equal(FakeWS.all.length, 4);
  assert.equal(FakeES.all.length, 1);
  client.close();
  assert.throws(() => make({ transport: 'carrier-pigeon' }), /transport/);
});

/**
 * notify-client.js: the browser (and Node 22+) client of notify-gateway.
 *
 * One dependency-free ES module. It connects to the gateway's `/ws`
 * endpoint, reads the register reply, sends heartbeats at the interval the
 * server advertises, and reconnects by itself (capped exponential backoff
 * with full jitter). It remembers the id of the last notification and
 * resumes with `?since=` so that nothing published with history is missed.
 * Where a WebSocket cannot open (a proxy that breaks upgrades), it falls
 * back to the gateway's Server-Sent Events endpoint `/sse` (an
 * EventSource), with the same messages and the same resume
 * (`transport` option).
 *
 * @example
 * import { NotifyClient } from '/notify-client.js';
 * const client = new NotifyClient({
 *   url: 'wss://push.example.com/ws',
 *   getToken: async () => (await fetch('/api/push-token')).text(),
 * });
 * client.on('notification', (msg) => console.log(msg.type, msg.content.body));
 * client.on('state', (s) => console.log(s.state, s.code ?? '', s.reason ?? ''));
 * client.on('gap', (g) => console.warn('missed notifications before', g.oldestId));
 * client.connect();
 *
 * @module notify-client
 */

/** Close codes the gateway uses (CONTRACT.md section 4). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001, // node draining: reconnect at once
  ABNORMAL: 1006, // no close frame (network, refused handshake)
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  TRY_AGAIN: 1013, // slow consumer: reconnect at once with since
  TOKEN_EXPIRED: 4401, // get a new token
  HEARTBEAT_TIMEOUT: 4408,
  CLIENT_TIMEOUT: 4000, // used by this client: no register or heartbeat reply in time
});

/** Codes after which a healthy connection reconnects without waiting. */
const IMMEDIATE = new Set([CloseCode.GOING_AWAY, CloseCode.TRY_AGAIN, CloseCode.TOKEN_EXPIRED]);

/**
 * @typedef {object} NotifyClientOptions
 * @property {string} url WebSocket URL of the gateway's endpoint, e.g.
 *   `wss://host/ws`. `http(s):` is turned into `ws(s):`; in a browser a
 *   relative URL such as `/ws` is resolved against the page.
 * @property {() => (string|Promise<string>)} [getToken] returns a JWT (its
 *   `sub` is the account). Called before the first connection, after a 4401
 *   close and before reconnecting when the token's `exp` has passed.
 * @property {string} [accountId] the account, sent as `?user_id=` when the
 *   gateway runs with `--auth none` (development) and no getToken is given.
 * @property {string} [since] id of the last notification already seen, to
 *   resume from (for example kept in localStorage across page loads).
 * @property {number} [baseDelay=1000] backoff base, ms.
 * @property {number} [maxDelay=30000] backoff cap, ms.
 * @property {number} [minDelay=100] floor of every backoff delay, ms.
 * @property {number} [stableAfter=5000] a connection registered for this
 *   long resets the backoff; shorter ones count as failed attempts, so a
 *   server that accepts and closes at once never causes a tight loop.
 * @property {number} [connectTimeout=10000] ms to wait for the register reply.
 * @property {number} [tokenMargin=5000] a token that expires within this
 *   many ms is renewed before connecting.
 * @property {number} [defaultHeartbeat=10] heartbeat interval in seconds if
 *   the server does not advertise one.
 * @property {'auto'|'websocket'|'sse'} [transport='auto'] `websocket`:
 *   `/ws` only; `sse`: the Server-Sent Events endpoint only (receive-only:
 *   no heartbeats to send, the server's keep-alives hold the stream open);
 *   `auto`: WebSocket, and SSE after a WebSocket that could not open while
 *   none has opened yet (then SSE for good once a stream has opened).
 *   Without an EventSource implementation, `auto` is `websocket`.
 * @property {string} [sseUrl] URL of the SSE endpoint (default: url with
 *   its scheme made http(s) and a final `/ws` made `/sse`).
 * @property {typeof WebSocket} [WebSocket] WebSocket implementation
 *   (default: the global one; for tests or older Node versions).
 * @property {typeof EventSource} [EventSource] EventSource implementation
 *   (default: the global one).
 * @property {() => number} [random] random source in [0, 1) (for tests).
 * @property {boolean} [autoAck=true] acknowledge each notification that has
 *   an `id` once the `notification` handlers have returned (the server
 *   writes a receipt, and a message published with `ack` stays out of the
 *   undelivered outbox). Set false to call {@link NotifyClient#ack} yourself,
 *   e.g. once the user has actually seen it.
 */

/**
 * State event detail.
 * @typedef {object} StateDetail
 * @property {'connecting'|'open'|'closed'} state
 * @property {number} attempt consecutive failed attempts so far
 * @property {string} [connectionId] with 'open'
 * @property {string} [node] with 'open'
 * @property {string} [account] with 'open'
 * @property {'websocket'|'sse'} [transport] with 'open': what carries it
 * @property {number} [code] with 'closed': the WebSocket close code
 * @property {string} [reason] with 'closed': the close reason
 * @property {boolean} [willReconnect] with 'closed'
 * @property {number} [delay] with 'closed': ms until the next attempt
 */

/**
 * A notification as the server sent it: `{type, content: {body, meta_data}, id?}`.
 * @typedef {object} Notification
 * @property {string} type
 * @property {{body: string, meta_data: string}} content
 * @property {string} [id] history id (only for messages published with history)
 * @property {number} [expires_at] Unix ms after which it is stale (published
 *   with a ttl); the client drops it unseen once that has passed
 */

/**
 * Decodes the `exp` claim (seconds) of a JWT without verifying it.
 * @param {string} token
 * @returns {number|undefined}
 */
export function tokenExpiry(token) {
  try {
    const part = String(token).split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const json = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    const exp = JSON.parse(json).exp;
    return typeof exp === 'number' ? exp : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Compares two history ids (`<ms>-<seq>`).
 * @returns {number|undefined} <0, 0, >0, or undefined when either is not an id
 */
export function compareIds(a, b) {
  const re = /^(\d+)-(\d+)$/;
  const x = re.exec(String(a));
  const y = re.exec(String(b));
  if (!x || !y) return undefined;
  const ms = BigInt(x[1]) - BigInt(y[1]);
  if (ms !== 0n) return ms < 0n ? -1 : 1;
  const seq = BigInt(x[2]) - BigInt(y[2]);
  return seq === 0n ? 0 : seq < 0n ? -1 : 1;
}

/**
 * Delay before reconnect attempt number `attempt` (1, 2, ...): full jitter
 * over a capped exponential, `random * min(max, base * 2^(attempt-1))`, never
 * below `min`.
 * @param {number} attempt
 * @param {{baseDelay: number, maxDelay: number, minDelay: number}} o
 * @param {() => number} random
 */
export function backoffDelay(attempt, o, random = Math.random) {
  const ceiling = Math.min(o.maxDelay, o.baseDelay * 2 ** Math.min(attempt - 1, 30));
  return Math.max(o.minDelay, Math.floor(random() * ceiling));
}

/**
 * The client. Events (listen with `on(type, fn)`, which passes the detail, or
 * with `addEventListener(type, e => e.detail)`):
 * - `notification` ({@link Notification})
 * - `state` ({@link StateDetail})
 * - `gap` (`{oldestId, since}`): history was trimmed; notifications between
 *   `since` and `oldestId` are lost
 * - `error` (`{message, error?}`): a server error message, a bad frame, or a
 *   getToken() failure; the client keeps going
 * - `ack` (`{ids}`): the server recorded these acknowledgements
 */
export class NotifyClient extends EventTarget {
  /** @param {NotifyClientOptions} options */
  constructor(options) {
    super();
    if (!options || !options.url) throw new TypeError('NotifyClient: url is required');
    if (!options.getToken && !options.accountId)
      throw new TypeError('NotifyClient: getToken or accountId is required');
    this.options = {
      baseDelay: 1000,
      maxDelay: 30000,
      minDelay: 100,
      stableAfter: 5000,
      connectTimeout: 10000,
      tokenMargin: 5000,
      defaultHeartbeat: 10,
      random: Math.random,
      autoAck: true,
      transport: 'auto',
      ...options,
    };
    if (!['auto', 'websocket', 'sse'].includes(this.options.transport))
      throw new TypeError("NotifyClient: transport must be 'auto', 'websocket' or 'sse'");
    this._acks = []; // ids to acknowledge in the next frame
    /** @type {'idle'|'connecting'|'open'|'closed'} */
    this.state = 'idle';
    /** Id of the last notification received (resume point). */
    this.lastId = options.since || null;
    /** Connection id and node of the current connection (from the register reply). */
    this.connectionId = null;
    this.node = null;
    this.account = null;
    /** What carries the current (or next) connection: 'websocket' or 'sse'. */
    this.transport = this.options.transport === 'sse' ? 'sse' : 'websocket';
    this._sseSticky = false; // auto: a stream opened, so WebSocket is not retried
    this._wsWorked = false; // auto: a WebSocket opened once, so failures are not the network's
    /** Consecutive failed attempts. */
    this.attempt = 0;
    this._token = null;
    this._tokenStale = false;
    this._ws = null;
    this._stopped = true;
    this._gen = 0; // bumped by connect() and close(): a stale _start() stops
    this._sentSince = null;
    this._timer = null; // reconnect or connect-timeout timer
    this._hbTimer = null;
    this._openedAt = 0;
    this._hbSentAt = 0; // when the heartbeat still unanswered was sent (0: none)
    this._hbMs = 0;
    this._onOnline = () => {
      // Back online: skip the remaining backoff wait.
      if (!this._stopped && !this._ws && this._timer) {
        clearTimeout(this._timer);
        this._timer = null;
        this._start();
      }
    };
  }

  /**
   * Listens to an event; the handler receives the event's detail.
   * @param {'notification'|'state'|'gap'|'error'|'ack'} type
   * @param {(detail: any) => void} fn
   * @returns {() => void} a function that removes the listener
   */
  on(type, fn) {
    const key = `${type}\n`;
    this._wrapped ||= new Map();
    if (!this._wrapped.has(key)) this._wrapped.set(key, new Map());
    const byFn = this._wrapped.get(key);
    if (!byFn.has(fn)) {
      const wrapped = (e) => fn(e.detail);
      byFn.set(fn, wrapped);
      this.addEventListener(type, wrapped);
    }
    return () => this.off(type, fn);
  }

  /** Removes a listener added with on(). */
  off(type, fn) {
    const byFn = this._wrapped && this._wrapped.get(`${type}\n`);
    const wrapped = byFn && byFn.get(fn);
    if (!wrapped) return;
    byFn.delete(fn);
    this.removeEventListener(type, wrapped);
  }

  /** Starts connecting (and keeps reconnecting until close()). Returns this. */
  connect() {
    if (!this._stopped) return this;
    this._stopped = false;
    this._gen += 1;
    this.attempt = 0;
    if (typeof globalThis.addEventListener === 'function')
      globalThis.addEventListener('online', this._onOnline);
    this._start();
    return this;
  }

  /** Closes the connection for good (until connect() is called again). */
  close() {
    if (this._stopped) return;
    this._stopped = true;
    this._gen += 1;
    if (typeof globalThis.removeEventListener === 'function')
      globalThis.removeEventListener('online', this._onOnline);
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      this._detach(ws);
      try {
        ws.close(1000, 'client closed');
      } catch {
        /* already closing */
      }
    }
    this._setState('closed', { code: 1000, reason: 'client closed', willReconnect: false });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit('state', { state, attempt: this.attempt, ...extra });
  }

  _clearTimers() {
    clearTimeout(this._timer);
    clearInterval(this._hbTimer);
    this._timer = this._hbTimer = null;
  }

  _tokenUsable() {
    if (!this._token || this._tokenStale) return false;
    const exp = tokenExpiry(this._token);
    return exp === undefined || exp * 1000 - Date.now() > this.options.tokenMargin;
  }

  _buildUrl(kind = 'websocket') {
    const o = this.options;
    const base = typeof location !== 'undefined' ? location.href : undefined;
    const url = new URL(kind === 'sse' && o.sseUrl ? o.sseUrl : o.url, base);
    if (kind === 'sse') {
      if (url.protocol === 'ws:') url.protocol = 'http:';
      else if (url.protocol === 'wss:') url.protocol = 'https:';
      if (!o.sseUrl) url.pathname = url.pathname.replace(/\/ws\/?$/, '/sse');
    } else if (url.protocol === 'http:') url.protocol = 'ws:';
    else if (url.protocol === 'https:') url.protocol = 'wss:';
    if (o.getToken) url.searchParams.set('token', this._token);
    else url.searchParams.set('user_id', o.accountId);
    if (this.lastId) url.searchParams.set('since', this.lastId);
    else url.searchParams.delete('since');
    this._sentSince = this.lastId;
    return url.toString();
  }

  /** One connection attempt. */
  async _start() {
    const gen = this._gen;
    this._timer = null;
    this._setState('connecting');
    if (gen !== this._gen) return; // a listener called close()
    if (this.options.getToken && !this._tokenUsable()) {
      try {
        const token = await this.options.getToken();
        if (!token) throw new Error('getToken() returned no token');
        if (gen !== this._gen) return;
        this._token = String(token);
        this._tokenStale = false;
      } catch (error) {
        if (gen !== this._gen) return;
        this._emit('error', { message: `getToken failed: ${error && error.message}`, error });
        this._scheduleReconnect(CloseCode.ABNORMAL, 'no token', false);
        return;
      }
      if (gen !== this._gen) return;
    }
    let ws;
    try {
      ws = this.transport === 'sse' ? this._openStream() : this._openSocket();
    } catch (error) {
      this._emit('error', { message: `cannot connect: ${error && error.message}`, error });
      this._scheduleReconnect(CloseCode.ABNORMAL, 'cannot connect', false);
      return;
    }
    this._ws = ws;
    this._openedAt = 0;
    this._timer = setTimeout(() => this._abort(ws, 'no register reply'), this.options.connectTimeout);
  }

  _openSocket() {
    const WS = this.options.WebSocket || globalThis.WebSocket;
    const ws = new WS(this._buildUrl('websocket'));
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (e) => this._onMessage(ws, e.data);
    ws.onclose = (e) => this._onClose(ws, e.code, e.reason);
    ws.onerror = () => {}; // a close event always follows
    return ws;
  }

  /**
   * An EventSource on /sse, shaped like the WebSocket the rest of the
   * client handles: the same envelopes arrive as events (register, the
   * default one for notifications, gap); "event: close" (drain, token
   * expiry, slow consumer) carries the code a WebSocket close would. The
   * client reconnects by itself, with since, rather than letting the
   * EventSource retry with its first URL (and an old token).
   */
  _openStream() {
    const ES = this.options.EventSource || globalThis.EventSource;
    const es = new ES(this._buildUrl('sse'));
    const conn = {
      kind: 'sse',
      es,
      send() {}, // receive-only
      close() {
        es.close();
      },
    };
    const deliver = (e) => this._onMessage(conn, e.data);
    es.addEventListener('register', deliver);
    es.addEventListener('gap', deliver);
    es.onmessage = deliver;
    es.addEventListener('close', (e) => {
      let d = {};
      try {
        d = JSON.parse(e.data) || {};
      } catch {
        /* a close all the same */
      }
      es.close();
      this._onClose(conn, Number(d.code) || CloseCode.NORMAL, String(d.reason ?? ''));
    });
    es.onerror = () => {
      // Dropped or refused: ours to retry, with since and a fresh token.
      es.close();
      this._onClose(conn, CloseCode.ABNORMAL, 'stream failed');
    };
    return conn;
  }

  _detach(ws) {
    if (ws.kind === 'sse') ws.es.onmessage = ws.es.onerror = null;
    else ws.onmessage = ws.onclose = ws.onerror = null;
  }

  /** Gives up on a connection that stopped answering; reconnects with backoff. */
  _abort(ws, reason) {
    if (ws !== this._ws) return;
    this._detach(ws);
    try {
      ws.close(CloseCode.CLIENT_TIMEOUT, reason);
    } catch {
      /* ignore */
    }
    this._onClose(ws, CloseCode.CLIENT_TIMEOUT, reason);
  }

  _onMessage(ws, data) {
    if (ws !== this._ws) return;
    this._hbSentAt = 0; // any frame proves the connection alive
    let msg;
    try {
      msg = JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
    } catch (error) {
      this._emit('error', { message: 'frame is not JSON', error });
      return;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') {
      this._emit('error', { message: 'frame is not a message envelope' });
      return;
    }
    const content = msg.content && typeof msg.content === 'object' ? msg.content : {};
    switch (msg.type) {
      case 'register':
        return this._onRegister(ws, content);
      case 'heartbeat':
        return;
      case 'error':
        this._emit('error', { message: String(content.body ?? 'server error') });
        return;
      case 'gap':
        this._emit('gap', { oldestId: content.body, since: this._sentSince });
        return;
      case 'ack':
        this._emit('ack', { ids: String(content.body ?? '').split(',').filter(Boolean) });
        return;
    }
    if (typeof msg.expires_at === 'number' && Date.now() >= msg.expires_at) return; // stale
    if (msg.id !== undefined && msg.id !== null) {
      // The server sends nothing twice; this guards against replays anyway.
      if (this.lastId && compareIds(msg.id, this.lastId) <= 0) return;
      this.lastId = String(msg.id);
    }
    this._emit('notification', msg);
    if (this.options.autoAck && msg.id !== undefined && msg.id !== null) this.ack(msg.id);
  }

  /**
   * Acknowledges a notification by its id: the server writes one receipt
   * (the first time) and answers with an `ack` event. Ids given in the same
   * turn of the event loop go in one frame, comma-separated. Returns false
   * when not connected (acknowledge again after reconnecting).
   * @param {string} id
   * @returns {boolean}
   */
  ack(id) {
    if (!this._ws || this.state !== 'open' || this._ws.kind === 'sse') return false; // a stream is receive-only
    this._acks.push(String(id));
    if (this._acks.length === 1) {
      const ws = this._ws;
      queueMicrotask(() => this._flushAcks(ws));
    }
    return true;
  }

  _flushAcks(ws) {
    // at most 100 ids per ack message (the server's limit)
    while (this._acks.length) {
      const ids = this._acks.splice(0, 100);
      if (ws === this._ws) ws.send(JSON.stringify({ type: 'ack', content: { body: ids.join(',') } }));
    }
  }

  _onRegister(ws, content) {
    let meta = {};
    try {
      meta = JSON.parse(content.meta_data || '{}') || {};
    } catch {
      /* keep defaults */
    }
    clearTimeout(this._timer);
    this._timer = null;
    this._openedAt = Date.now();
    this.connectionId = content.body || meta.connection_id || null;
    this.node = meta.node ?? null;
    this.account = meta.account ?? null;
    if (ws.kind === 'sse') {
      // Nothing to send on a stream: the server's keep-alives hold it open.
      if (this.options.transport === 'auto') this._sseSticky = true;
      this._setState('open', {
        connectionId: this.connectionId,
        node: this.node,
        account: this.account,
        transport: 'sse',
      });
      return;
    }
    this._wsWorked = true;
    const interval = Number(meta.heartbeat_interval) > 0 ? Number(meta.heartbeat_interval) : this.options.defaultHeartbeat;
    this._hbMs = interval * 1000;
    // A heartbeat followed by no frame at all for a whole interval means the
    // connection is dead (sleeping laptop, lost route): reconnect. Measured
    // from the heartbeat sent, so that throttled timers in background tabs
    // (which the server's pings keep alive) do not count as silence.
    this._hbSentAt = 0;
    clearInterval(this._hbTimer);
    this._hbTimer = setInterval(() => {
      if (ws !== this._ws) return;
      if (this._hbSentAt && Date.now() - this._hbSentAt >= this._hbMs)
        return this._abort(ws, 'no heartbeat reply');
      try {
        ws.send('{"type":"heartbeat"}');
        this._hbSentAt = Date.now();
      } catch {
        /* the close event follows */
      }
    }, this._hbMs);
    this._setState('open', {
      connectionId: this.connectionId,
      node: this.node,
      account: this.account,
      transport: 'websocket',
    });
  }

  /**
   * auto: a WebSocket that never opened (refused, or cut before its
   * register reply, as proxies that break upgrades do) is followed at once
   * by a stream, unless a WebSocket opened before (then the server is
   * away, not the path to it); a stream that never opened, before any
   * did, by a WebSocket again. Returns true when the next attempt switched.
   */
  _chooseTransport(ws, wasOpen) {
    if (this.options.transport !== 'auto') return false;
    const hasES = Boolean(this.options.EventSource || globalThis.EventSource);
    if (ws.kind !== 'sse' && !wasOpen && hasES && !this._wsWorked) {
      this.transport = 'sse';
      return true;
    }
    if (ws.kind === 'sse' && !wasOpen && !this._sseSticky) this.transport = 'websocket';
    return false;
  }

  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    this._detach(ws);
    this._ws = null;
    this._clearTimers();
    const wasOpen = this._openedAt > 0;
    const stable = wasOpen && Date.now() - this._openedAt >= this.options.stableAfter;
    this._openedAt = 0;
    this.connectionId = null;
    if (code === CloseCode.TOKEN_EXPIRED) this._tokenStale = true;
    if (this._stopped) return;
    if (stable) this.attempt = 0;
    const switched = this._chooseTransport(ws, wasOpen);
    this._scheduleReconnect(code, reason, switched || (IMMEDIATE.has(code) && this.attempt === 0));
  }

  _scheduleReconnect(code, reason, immediate) {
    this.attempt += 1;
    const delay = immediate ? 0 : backoffDelay(this.attempt, this.options, this.options.random);
    this._setState('closed', { code, reason: reason || '', willReconnect: true, delay });
    if (this._stopped) return; // a state listener called close()
    this._timer = setTimeout(() => this._start(), delay);
  }
}

export default NotifyClient;

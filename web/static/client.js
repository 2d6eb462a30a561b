// The chat client core: zzim's long-poll API (docs/protocol.md "HTTP API")
// with the reference client's rules (docs/protocol.md "Reference client",
// system/client):
//   - sends carry client_msg_id "<user>-<device>-<cseq>" and cseq, which
//     counts over the client's whole life (kept in sessionStorage across
//     reloads, with the unacknowledged sends);
//   - one send in flight (HTTP gives no order between requests), each with
//     ack_floor = the first unacknowledged cseq;
//   - on a transient error or no answer, go-back-N: after a backoff resend
//     everything from the first unacknowledged, in order; on a new session
//     resend at once;
//   - one long-poll parked, acknowledging the previous push_id;
//   - messages are deduplicated and ordered by seq; a gap is filled by
//     sync; every conversation is synced periodically;
//   - a 401 means httpentry lost the session (it restarted): log in again.
// 64-bit integers travel as strings (protojson); they are read with Number,
// which is exact below 2^53.

// Named bounds; each has a defined behaviour when reached.
export const defaults = {
  backoffMinMs: 250,
  backoffMaxMs: 4000,
  requestTimeoutMs: 8000, // no answer by then: the request failed (status 0)
  pollWaitMs: 25000, // how long httpentry may park one poll
  syncIntervalMaxMs: 15000, // every known conversation is synced at least this often
  syncLimit: 50, // messages per sync page
  syncInflightMax: 2, // syncs outstanding; more wait in a queue (the browser allows ~6 connections per host)
  pendingSendsMax: 200, // unacknowledged sends; send() refuses beyond
  reorderBufferMax: 256, // out-of-order messages per conversation; beyond, dropped and synced again
  heldMax: 1000, // messages kept per conversation; the oldest are forgotten beyond
  convsMax: 500, // conversations tracked; messages of more are dropped
  convListLimit: 100,
  failedMax: 50, // definitively failed sends remembered for display
  bodySizeMax: 4000, // characters; longer bodies are refused before sending
};

// Codes after which a send can never succeed: it leaves the queue.
const definitive = new Set(['BAD_REQUEST', 'FORBIDDEN', 'TOO_LARGE']);

export class ChatClient {
  // opts: {user, token, device, base, storage, onChange, config}
  constructor(opts) {
    this.cfg = { ...defaults, ...(opts.config || {}) };
    this.user = opts.user;
    this.token = opts.token;
    this.base = opts.base || '';
    this.storage = opts.storage || null;
    this.onChange = opts.onChange || (() => {});
    this.device = opts.device;
    // This page's id and its LOGIN count: httpentry then tells a late,
    // older login of this page (a paused logic) from another tab's, and
    // only another's stops this one (docs/protocol.md, KickRequest).
    this.instance = Math.random().toString(36).slice(2, 12) || 'tab';
    this.logins = 0;

    this.status = 'offline'; // offline | connecting | online | reconnecting | kicked | rejected
    this.lastError = '';
    this.started = false;
    this.stopped = false;
    this.online = false;
    this.session = 0;
    this.loggingIn = false;
    this.loginAttempt = 0;
    this.timers = {};

    this.nextCSeq = 0;
    this.sends = []; // unacknowledged, cseq order: {conv, clientMsgId, body, cseq, written, attempts, error}
    this.failed = []; // definitively failed: {conv, clientMsgId, body, cseq, error}
    this.round = 0;
    this.paused = false;
    this.resendAttempt = 0;

    this.convs = new Map(); // id → conv
    this.syncQueue = [];
    this.syncInflight = 0;
    this.syncGen = 0;

    this.polling = false;
    this.pollAttempt = 0;
    this.pollAck = 0;

    this.stats = { sends: 0, acks: 0, resends: 0, goBackN: 0, pushes: 0, syncs: 0, gapFills: 0, dups: 0, logins: 0 };
    this.restore();
  }

  // --- persistence: device, cseq and unacknowledged sends survive a reload.

  storeKey() { return 'zzim:client:' + this.user; }

  restore() {
    let saved = null;
    try { saved = this.storage && JSON.parse(this.storage.getItem(this.storeKey()) || 'null'); } catch (e) { saved = null; }
    if (saved && saved.device) {
      this.device = saved.device;
      this.nextCSeq = saved.nextCSeq || 0;
      for (const s of saved.sends || []) {
        this.sends.push({ conv: s.conv, clientMsgId: s.clientMsgId, body: s.body, cseq: s.cseq, written: false, attempts: 0, error: '' });
        this.conv(s.conv);
      }
    }
    if (!this.device) this.device = 'web-' + Math.random().toString(36).slice(2, 10);
  }

  save() {
    if (!this.storage) return;
    const sends = this.sends.map((s) => ({ conv: s.conv, clientMsgId: s.clientMsgId, body: s.body, cseq: s.cseq }));
    try {
      this.storage.setItem(this.storeKey(), JSON.stringify({ device: this.device, nextCSeq: this.nextCSeq, sends }));
    } catch (e) { /* storage full: the sends still live in memory */ }
  }

  changed() { this.onChange(this); }

  // --- timers: one per kind, re-arming replaces.

  arm(kind, ms, fn) {
    this.disarm(kind);
    this.timers[kind] = setTimeout(() => { delete this.timers[kind]; fn(); }, ms);
  }

  disarm(kind) {
    if (this.timers[kind] !== undefined) {
      clearTimeout(this.timers[kind]);
      delete this.timers[kind];
    }
  }

  // backoff is exponential with jitter over the upper half, so clients
  // that lost the same server do not come back in step.
  backoff(attempt) {
    let d = this.cfg.backoffMinMs;
    for (let i = 0; i < attempt && d < this.cfg.backoffMaxMs; i++) d *= 2;
    d = Math.min(d, this.cfg.backoffMaxMs);
    return d / 2 + Math.random() * (d / 2);
  }

  // --- HTTP: every request resolves to {status, body}; status 0 is no answer.

  async request(method, path, body, timeoutMs) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs || this.cfg.requestTimeoutMs);
    try {
      const init = { method, headers: { Authorization: 'Bearer ' + this.token }, signal: ctl.signal, cache: 'no-store' };
      if (body !== undefined) {
        init.headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
      }
      const resp = await fetch(this.base + path, init);
      let data = null;
      try { data = await resp.json(); } catch (e) { data = null; }
      return { status: resp.status, body: data };
    } catch (e) {
      return { status: 0, body: null, error: String(e && e.message || e) };
    } finally {
      clearTimeout(timer);
    }
  }

  static code(r) {
    if (r.body && r.body.code) return r.body.code;
    switch (r.status) {
      case 0: return 'NO_ANSWER';
      case 400: return 'BAD_REQUEST';
      case 401: return 'UNAUTHENTICATED';
      case 403: return 'FORBIDDEN';
      case 409: return 'OUT_OF_ORDER';
      case 413: return 'TOO_LARGE';
      case 429: return 'RATE_LIMITED';
      case 503: return 'UNAVAILABLE';
      case 504: return 'TIMEOUT';
      default: return 'INTERNAL';
    }
  }

  // --- session

  start() {
    if (this.started || this.stopped) return;
    this.started = true;
    this.status = 'connecting';
    this.armPeriodic();
    this.login();
    this.changed();
  }

  stop(status) {
    this.stopped = true;
    this.online = false;
    if (status) this.status = status;
    for (const k of Object.keys(this.timers)) this.disarm(k);
    this.changed();
  }

  async login() {
    if (this.loggingIn || this.stopped) return;
    this.loggingIn = true;
    this.logins++;
    const r = await this.request('POST', '/v1/login', {
      token: this.token, device_id: this.device, instance: this.instance, attempt: this.logins,
    });
    this.loggingIn = false;
    if (this.stopped) return;
    if (r.status === 200) {
      this.loginAttempt = 0;
      this.onLogin();
      return;
    }
    if (r.status === 401 || r.status === 403) {
      this.lastError = ChatClient.code(r) + (r.body && r.body.message ? ': ' + r.body.message : '');
      this.stop('rejected');
      return;
    }
    this.lastError = 'login: ' + ChatClient.code(r);
    this.status = 'reconnecting';
    this.arm('login', this.backoff(this.loginAttempt++), () => this.login());
    this.changed();
  }

  // onLogin: a session is up. Everything unacknowledged is resent in cseq
  // order, every known conversation synced (pushes sent while we were away
  // took the offline path) and the conversation list fetched.
  onLogin() {
    this.session++;
    this.stats.logins++;
    this.online = true;
    this.status = 'online';
    this.lastError = '';
    this.restartSends();
    this.convList();
    this.syncAll();
    this.startPoll();
    this.changed();
  }

  // sessionLost: httpentry no longer knows the session. Sends are resent
  // and syncs reissued on the next login; answers to older syncs are stale.
  sessionLost() {
    this.online = false;
    this.status = 'reconnecting';
    this.round++;
    for (const s of this.sends) s.written = false;
    this.syncGen++;
    this.syncInflight = 0;
    for (const cv of this.convs.values()) { cv.syncing = false; cv.syncAgain = false; }
  }

  relogin() {
    if (this.stopped) return;
    if (this.online) this.sessionLost();
    this.login();
    this.changed();
  }

  // handled reacts to the answers every request shares: KICKED stops (a
  // newer login replaced us; logging in again would kick it in turn), 401
  // logs in again. It reports whether the caller should look no further.
  handled(r) {
    if (r.status >= 400 && ChatClient.code(r) === 'KICKED') {
      this.lastError = 'signed in elsewhere';
      this.stop('kicked');
      return true;
    }
    if (r.status === 401) {
      this.relogin();
      return true;
    }
    return false;
  }

  // --- sends

  send(convID, body) {
    if (this.stopped) throw new Error('stopped');
    if (this.sends.length >= this.cfg.pendingSendsMax) throw new Error('too many unsent messages');
    if (!body || body.length > this.cfg.bodySizeMax) throw new Error('message empty or too long');
    if (!this.conv(convID)) throw new Error('too many conversations');
    this.nextCSeq++;
    const s = {
      conv: convID, body, cseq: this.nextCSeq, written: false, attempts: 0, error: '',
      clientMsgId: this.user + '-' + this.device + '-' + this.nextCSeq,
    };
    this.sends.push(s);
    this.stats.sends++;
    this.save();
    this.pump();
    this.changed();
    return s.clientMsgId;
  }

  // pump writes the first unacknowledged send if it is not written in this
  // round. The window is one: the next goes when this one is answered.
  pump() {
    if (!this.online || this.paused || this.stopped || this.sends.length === 0) return;
    const s = this.sends[0];
    if (s.written) return;
    s.written = true;
    s.attempts++;
    if (s.attempts > 1) this.stats.resends++;
    this.writeSend(s, this.round);
  }

  async writeSend(s, round) {
    const r = await this.request('POST', '/v1/send', {
      conv_id: s.conv, client_msg_id: s.clientMsgId, cseq: String(s.cseq), body: s.body,
      ack_floor: String(this.sends.length ? this.sends[0].cseq : s.cseq),
    });
    if (this.stopped) return;
    if (r.status === 200) {
      this.onSendAck(s.cseq, Number(r.body && r.body.seq || 0), r.body || {});
      return;
    }
    if (this.handled(r)) return;
    const code = ChatClient.code(r);
    const i = this.sendIndex(s.cseq);
    if (i < 0) return; // already acknowledged or failed: a stale answer
    if (definitive.has(code)) {
      this.failSend(i, code);
      return;
    }
    // OUT_OF_ORDER, OVERLOADED, RATE_LIMITED, TIMEOUT, UNAVAILABLE, no
    // answer: resending is safe, sends are idempotent.
    s.error = code;
    if (round === this.round) this.goBackN();
    this.changed();
  }

  // goBackN: after a backoff, resend everything from the first
  // unacknowledged. Answers to the abandoned round are stale from now on.
  goBackN() {
    if (this.paused) return;
    this.round++;
    for (const s of this.sends) s.written = false;
    this.paused = true;
    this.stats.goBackN++;
    this.arm('resend', this.backoff(this.resendAttempt++), () => { this.paused = false; this.pump(); this.changed(); });
  }

  // restartSends: a new round at once (a new session is the remedy).
  restartSends() {
    this.round++;
    for (const s of this.sends) s.written = false;
    this.paused = false;
    this.disarm('resend');
    this.pump();
  }

  sendIndex(cseq) { return this.sends.findIndex((s) => s.cseq === cseq); }

  onSendAck(cseq, seq, ack) {
    if (!seq) return;
    const i = this.sendIndex(cseq);
    if (i < 0) return; // a resend's duplicate answer
    const [s] = this.sends.splice(i, 1);
    this.stats.acks++;
    this.resendAttempt = 0;
    this.save();
    // Held under its seq, so a later delivery of it (by sync) is a duplicate.
    this.accept({
      conv_id: s.conv, seq, sender_id: this.user, client_msg_id: s.clientMsgId, cseq: s.cseq, body: s.body,
      created_at_ms: Number(ack.created_at_ms || 0),
    }, 'own');
    const cv = this.convs.get(s.conv);
    if (cv) cv.markRead(seq); // sending advances the sender's read mark
    this.pump();
    this.changed();
  }

  failSend(i, code) {
    const [s] = this.sends.splice(i, 1);
    this.failed.push({ conv: s.conv, clientMsgId: s.clientMsgId, body: s.body, cseq: s.cseq, error: code });
    if (this.failed.length > this.cfg.failedMax) this.failed.shift();
    this.save();
    this.pump();
    this.changed();
  }

  // --- the long-poll

  async startPoll() {
    if (this.polling || !this.online || this.stopped) return;
    this.polling = true;
    const ack = this.pollAck;
    const q = 'ack=' + ack + '&timeout_ms=' + this.cfg.pollWaitMs;
    const r = await this.request('GET', '/v1/poll?' + q, undefined, this.cfg.pollWaitMs + this.cfg.requestTimeoutMs);
    this.polling = false;
    if (this.stopped) return;
    if (r.status !== 200) {
      if (this.handled(r)) return;
      this.lastError = 'poll: ' + ChatClient.code(r);
      if (r.status === 0) this.status = 'reconnecting';
      this.arm('poll', this.backoff(this.pollAttempt++), () => this.startPoll());
      this.changed();
      return;
    }
    if (this.online) this.status = 'online';
    this.pollAttempt = 0;
    const push = r.body || {};
    if (this.pollAck === ack) this.pollAck = 0; // the server has it
    if (push.push_id) this.pollAck = Number(push.push_id);
    const msgs = push.messages || [];
    if (msgs.length) this.stats.pushes++;
    for (const m of msgs) this.accept(m, 'push');
    this.startPoll();
    this.changed();
  }

  // --- conversations

  conv(id) {
    let cv = this.convs.get(id);
    if (cv) return cv;
    if (this.convs.size >= this.cfg.convsMax) return null;
    cv = new Conv(id);
    this.convs.set(id, cv);
    return cv;
  }

  // accept runs one message through dedup and reordering: held when it is
  // the next seq, buffered (and a gap fill started) when ahead, dropped
  // when already held or buffered.
  accept(raw, via) {
    const m = normalize(raw);
    if (!m.seq || !m.conv_id) return;
    const cv = this.conv(m.conv_id);
    if (!cv) return;
    if (m.seq <= cv.last || cv.buffer.has(m.seq)) {
      this.stats.dups++;
      return;
    }
    if (m.seq === cv.last + 1) {
      cv.hold(m, via, this.cfg.heldMax);
      if (via === 'sync') this.stats.gapFills++;
      cv.flush(this.cfg.heldMax);
      return;
    }
    if (cv.buffer.size >= this.cfg.reorderBufferMax) {
      // Dropping is safe: the gap-fill sync from last fetches it again.
      this.requestSync(cv);
      return;
    }
    cv.buffer.set(m.seq, { m, via });
    if (via === 'push') this.requestSync(cv); // a gap: fill it by sync
  }

  requestSync(cv) {
    if (cv.syncing) {
      cv.syncAgain = true;
      return;
    }
    if (!this.syncQueue.includes(cv.id)) this.syncQueue.push(cv.id);
    this.drainSyncs();
  }

  syncAll() {
    for (const cv of this.convs.values()) this.requestSync(cv);
  }

  drainSyncs() {
    while (this.online && this.syncInflight < this.cfg.syncInflightMax && this.syncQueue.length) {
      const cv = this.convs.get(this.syncQueue.shift());
      cv.syncing = true;
      this.syncInflight++;
      this.stats.syncs++;
      this.doSync(cv, cv.last, this.syncGen);
    }
  }

  async doSync(cv, after, gen) {
    const q = 'conv_id=' + encodeURIComponent(cv.id) + '&after_seq=' + after + '&limit=' + this.cfg.syncLimit;
    const r = await this.request('GET', '/v1/sync?' + q);
    const current = gen === this.syncGen && cv.syncing;
    if (current) {
      cv.syncing = false;
      this.syncInflight--;
    }
    if (r.status !== 200) {
      if (this.handled(r)) return;
      if (current && !this.stopped) this.arm('syncRetry', this.backoff(0), () => this.syncAll());
      this.drainSyncs();
      return;
    }
    const resp = r.body || {};
    for (const m of resp.messages || []) {
      if (!m.conv_id) m.conv_id = cv.id;
      if (m.conv_id === cv.id) this.accept(m, 'sync');
    }
    cv.serverLast = Math.max(cv.serverLast, Number(resp.last_seq || 0));
    if (current) {
      // Page on while the server has more and this page moved us forward.
      const more = cv.serverLast > cv.last && cv.last > after;
      if (more || cv.syncAgain) {
        cv.syncAgain = false;
        this.requestSync(cv);
      }
    }
    this.drainSyncs();
    this.changed();
  }

  async convList() {
    if (!this.online) return;
    const r = await this.request('GET', '/v1/convs?limit=' + this.cfg.convListLimit);
    if (r.status !== 200) {
      this.handled(r);
      return;
    }
    for (const row of (r.body && r.body.convs) || []) {
      const cv = this.conv(row.conv_id);
      if (!cv) continue;
      cv.peer = row.peer_id || cv.peer;
      cv.listing = row.listing_id || cv.listing;
      cv.serverLast = Math.max(cv.serverLast, Number(row.last_seq || 0));
      cv.markRead(Number(row.read_seq || 0));
      if (cv.serverLast > cv.last) this.requestSync(cv);
    }
    this.changed();
  }

  // read marks conv read up to what it holds; one read in flight per conversation.
  async read(convID) {
    const cv = this.convs.get(convID);
    if (!cv || !this.online || cv.reading || cv.last <= cv.readSeq) return;
    cv.reading = true;
    const seq = cv.last;
    const r = await this.request('POST', '/v1/read', { conv_id: convID, seq: String(seq) });
    cv.reading = false;
    if (r.status === 200) {
      cv.markRead(Number(r.body && r.body.read_seq || seq));
      this.changed();
      return;
    }
    this.handled(r);
  }

  armPeriodic() {
    const d = this.cfg.syncIntervalMaxMs;
    this.arm('periodic', d / 2 + Math.random() * (d / 2), () => {
      this.armPeriodic();
      if (!this.online) return;
      this.convList();
      this.syncAll();
    });
  }

  // pendingOf lists conv's unacknowledged and failed sends, for display.
  pendingOf(convID) {
    const out = [];
    for (const [i, s] of this.sends.entries()) {
      if (s.conv !== convID) continue;
      let state = 'sending';
      if (s.error || s.attempts > 1 || (i === 0 && this.paused)) state = 'retrying';
      if (!this.online && s.attempts > 0) state = 'retrying';
      out.push({ ...s, state });
    }
    for (const f of this.failed) if (f.conv === convID) out.push({ ...f, state: 'failed' });
    return out;
  }
}

// Conv is what the client holds of one conversation: held messages
// contiguous in seq order (first..last), and a reorder buffer beyond.
export class Conv {
  constructor(id) {
    this.id = id;
    this.held = [];
    this.last = 0;
    this.buffer = new Map();
    this.syncing = false;
    this.syncAgain = false;
    this.reading = false;
    this.readSeq = 0;
    this.serverLast = 0;
    const p = parseConvID(id);
    this.peer = '';
    this.listing = p ? p.listing : '';
    this.parsed = p;
  }

  hold(m, via, heldMax) {
    if (this.held.length >= heldMax) this.held.shift();
    this.held.push({ ...m, via });
    this.last = m.seq;
  }

  flush(heldMax) {
    for (;;) {
      const b = this.buffer.get(this.last + 1);
      if (!b) return;
      this.buffer.delete(this.last + 1);
      this.hold(b.m, b.via, heldMax);
    }
  }

  markRead(seq) {
    if (seq > this.readSeq) this.readSeq = seq;
  }

  unread() {
    return Math.max(0, Math.max(this.last, this.serverLast) - this.readSeq);
  }

  peerOf(user) {
    if (this.peer) return this.peer;
    const p = this.parsed;
    if (!p) return this.id;
    return p.buyer === user ? p.seller : p.buyer;
  }
}

// normalize turns a protojson ChatMessage into numbers where it has 64-bit ints.
function normalize(m) {
  return {
    conv_id: m.conv_id || '', seq: Number(m.seq || 0), sender_id: m.sender_id || '',
    client_msg_id: m.client_msg_id || '', cseq: Number(m.cseq || 0), body: m.body || '',
    created_at_ms: Number(m.created_at_ms || 0),
  };
}

const idPattern = /^[A-Za-z0-9_-]{1,64}$/;

// validID mirrors wire.ValidUserID / ValidListingID.
export function validID(s) { return idPattern.test(s); }

// pairConvID is wire.PairConvID: p:<buyer>:<seller>:<listing>.
export function pairConvID(buyer, seller, listing) { return 'p:' + buyer + ':' + seller + ':' + listing; }

export function parseConvID(id) {
  const parts = id.split(':');
  if (parts.length === 4 && parts[0] === 'p') return { kind: 'pair', buyer: parts[1], seller: parts[2], listing: parts[3] };
  if (parts.length === 2 && parts[0] === 's') return { kind: 'system', user: parts[1] };
  if (id === 'b:all') return { kind: 'broadcast' };
  return null;
}

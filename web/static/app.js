// The page: log in (development login), list conversations with unread
// counts, open or start one, send and receive. The protocol lives in
// client.js; this file only draws its state and forwards what the person does.
import { ChatClient, defaults, pairConvID, validID } from './client.js';

const $ = (id) => document.getElementById(id);
const sessionKey = 'zzim:session';

let client = null;
let openConv = '';
let renderQueued = false;

// Tuning from the query string (e.g. ?backoffMaxMs=1000): numeric keys of
// the client's defaults only.
function configFromQuery() {
  const out = {};
  const q = new URLSearchParams(location.search);
  for (const k of Object.keys(defaults)) {
    const v = Number(q.get(k));
    if (q.has(k) && Number.isFinite(v) && v > 0) out[k] = v;
  }
  return out;
}

function startClient(user, token) {
  client = new ChatClient({
    user, token, storage: sessionStorage, config: configFromQuery(), onChange: scheduleRender,
  });
  window.zzimClient = client; // for the console and tests' diagnostics
  client.start();
  route();
}

async function devLogin(user) {
  let r;
  try {
    r = await fetch('/v1/dev/login', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user_id: user }),
    });
  } catch (e) {
    throw new Error('server unreachable');
  }
  if (r.status === 404) throw new Error('development login is off on this server (zzim up turns it on)');
  const body = await r.json().catch(() => ({}));
  if (r.status !== 200 || !body.token) throw new Error(body.message || 'login failed (' + r.status + ')');
  return body.token;
}

function onLoginSubmit(ev) {
  ev.preventDefault();
  const user = $('login-user').value.trim();
  $('login-error').textContent = '';
  if (!validID(user)) {
    $('login-error').textContent = 'User ids are 1-64 letters, digits, _ or -.';
    return;
  }
  $('login-button').disabled = true;
  devLogin(user).then((token) => {
    sessionStorage.setItem(sessionKey, JSON.stringify({ user, token }));
    startClient(user, token);
  }, (e) => {
    $('login-error').textContent = e.message;
  }).finally(() => { $('login-button').disabled = false; });
}

function logout() {
  if (client) client.stop('offline');
  sessionStorage.removeItem(sessionKey);
  client = null;
  location.hash = '';
  scheduleRender();
}

function onNewSubmit(ev) {
  ev.preventDefault();
  const peer = $('new-peer').value.trim();
  const listing = $('new-listing').value.trim();
  const role = $('new-role').value;
  $('new-error').textContent = '';
  if (!validID(peer) || !validID(listing)) {
    $('new-error').textContent = 'Peer and listing are 1-64 letters, digits, _ or -.';
    return;
  }
  if (peer === client.user) {
    $('new-error').textContent = 'Pick someone else as the peer.';
    return;
  }
  const id = role === 'buyer' ? pairConvID(client.user, peer, listing) : pairConvID(peer, client.user, listing);
  if (!client.conv(id)) {
    $('new-error').textContent = 'Too many conversations.';
    return;
  }
  client.requestSync(client.convs.get(id));
  location.hash = '#c=' + encodeURIComponent(id);
}

function onSendSubmit(ev) {
  ev.preventDefault();
  const input = $('compose');
  const body = input.value;
  if (!body.trim() || !openConv) return;
  try {
    client.send(openConv, body);
    input.value = '';
  } catch (e) {
    input.setCustomValidity(e.message);
    input.reportValidity();
    setTimeout(() => input.setCustomValidity(''), 2000);
  }
  input.focus();
}

function route() {
  const m = /^#c=(.+)$/.exec(location.hash);
  openConv = m ? decodeURIComponent(m[1]) : '';
  if (openConv && client && !client.convs.has(openConv)) {
    if (client.conv(openConv)) client.requestSync(client.convs.get(openConv));
  }
  scheduleRender();
}

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  // A microtask, not requestAnimationFrame: a tab in the background gets no
  // frames, and its DOM should still follow the conversation.
  queueMicrotask(() => { renderQueued = false; render(); });
}

const statusText = {
  offline: 'offline', connecting: 'connecting…', online: 'online', reconnecting: 'reconnecting…',
  kicked: 'signed in elsewhere', rejected: 'login rejected',
};

function render() {
  const loggedIn = !!client;
  const chat = loggedIn && !!openConv;
  $('login-view').hidden = loggedIn;
  $('list-view').hidden = !loggedIn || chat;
  $('chat-view').hidden = !chat;
  $('back').hidden = !chat;
  $('logout').hidden = !loggedIn || chat;
  const st = client ? client.status : 'offline';
  $('status').dataset.state = st;
  $('status').textContent = statusText[st] || st;
  $('status').title = client && client.lastError ? client.lastError : 'connection';
  if (!loggedIn) {
    $('title-main').textContent = 'zzim';
    $('title-sub').textContent = 'second-hand chat';
    return;
  }
  if (chat) renderChat();
  else renderList();
}

function lastActivity(cv) {
  const m = cv.held[cv.held.length - 1];
  return m ? m.created_at_ms || m.seq : 0;
}

function renderList() {
  $('title-main').textContent = 'Chats';
  $('title-sub').textContent = client.user;
  const convs = [...client.convs.values()];
  convs.sort((a, b) => lastActivity(b) - lastActivity(a) || a.id.localeCompare(b.id));
  const ul = $('convs');
  ul.replaceChildren(...convs.map((cv) => {
    const li = el('li', 'conv');
    li.dataset.conv = cv.id;
    const who = el('div', 'who');
    const top = el('div');
    top.append(el('span', 'peer', cv.peerOf(client.user)), el('span', 'listing', cv.listing ? '· ' + cv.listing : ''));
    const last = cv.held[cv.held.length - 1];
    const pending = client.pendingOf(cv.id);
    const preview = pending.length ? pending[pending.length - 1].body : last ? last.body : '';
    who.append(top, el('div', 'preview', preview));
    const badge = el('span', 'badge', String(cv.unread()));
    badge.dataset.unread = String(cv.unread());
    li.append(who, badge);
    li.addEventListener('click', () => { location.hash = '#c=' + encodeURIComponent(cv.id); });
    return li;
  }));
  $('no-convs').hidden = convs.length > 0;
}

const errorText = { NO_ANSWER: 'no answer', UNAVAILABLE: 'server unavailable', OVERLOADED: 'server busy' };

function time(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
}

function renderChat() {
  const cv = client.convs.get(openConv);
  if (!cv) return;
  $('title-main').textContent = cv.peerOf(client.user);
  $('title-sub').textContent = (cv.parsed && cv.parsed.kind === 'pair'
    ? (cv.parsed.buyer === client.user ? 'you buy' : 'you sell') + ' · ' + cv.listing : cv.id);
  const ol = $('messages');
  const atBottom = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 40;
  const items = cv.held.map((m) => {
    const mine = m.sender_id === client.user;
    const li = el('li', mine ? 'msg mine' : 'msg');
    li.dataset.seq = String(m.seq);
    li.dataset.cmid = m.client_msg_id;
    li.dataset.sender = m.sender_id;
    li.dataset.state = mine ? 'acked' : 'received';
    const meta = '#' + m.seq + (m.created_at_ms ? ' · ' + time(m.created_at_ms) : '');
    li.append(el('div', 'body', m.body), el('div', 'meta', meta));
    return li;
  });
  for (const s of client.pendingOf(cv.id)) {
    const li = el('li', 'msg mine');
    li.dataset.cmid = s.clientMsgId;
    li.dataset.sender = client.user;
    li.dataset.state = s.state;
    let meta = s.attempts > 0 ? 'sending…' : 'queued…';
    if (s.state === 'retrying') meta = 'not sent yet, retrying' + (s.error ? ' (' + (errorText[s.error] || s.error) + ')' : '');
    if (s.state === 'failed') meta = 'failed: ' + s.error;
    li.append(el('div', 'body', s.body), el('div', 'meta', meta));
    items.push(li);
  }
  ol.replaceChildren(...items);
  if (atBottom) ol.scrollTop = ol.scrollHeight;
  if (document.visibilityState === 'visible') client.read(cv.id);
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function init() {
  $('login-form').addEventListener('submit', onLoginSubmit);
  $('new-form').addEventListener('submit', onNewSubmit);
  $('composer').addEventListener('submit', onSendSubmit);
  $('logout').addEventListener('click', logout);
  $('back').addEventListener('click', () => { location.hash = ''; });
  window.addEventListener('hashchange', route);
  document.addEventListener('visibilitychange', scheduleRender);
  let saved = null;
  try { saved = JSON.parse(sessionStorage.getItem(sessionKey) || 'null'); } catch (e) { saved = null; }
  if (saved && saved.user && saved.token) startClient(saved.user, saved.token);
  else route();
}

init();

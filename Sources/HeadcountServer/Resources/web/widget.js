/*! Headcount widget: a live "N online" badge, one connection per browser. Docs: docs/WIDGET.md */
(() => {
'use strict';
const me = document.currentScript;
if (window.Headcount && window.Headcount._script) return window.Headcount._script(me);

const base = me && me.src ? new URL(me.src, location.href).origin : location.origin;
const NAME = /^[\w\-.~:]{1,128}$/;
const rnd = (n) => Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, '0')).join('');
let vid;
try {
  vid = localStorage.getItem('headcount.vid');
  if (!vid || !NAME.test(vid)) localStorage.setItem('headcount.vid', (vid = rnd(12)));
} catch (_) { vid = vid || rnd(12); }

const tab = rnd(6);
const subs = new Map();    // room -> Set of this tab's callbacks
const tokens = new Map();  // room -> join token
const last = new Map();    // room -> latest {room, online, connections, connected}
const streams = new Map(); // room -> {es, tries, timer}: only in the leader (or a solo tab)
const tabs = new Map();    // leader: tab id -> {rooms: [[room, token]], seen}
let leader = false, solo = true, bc = null, pingAt = 0;
const post = (m) => bc && bc.postMessage(m);

const deliver = (d) => {
  last.set(d.room, d);
  (subs.get(d.room) || []).forEach((fn) => {
    try { fn({ ...d }); } catch (e) { console.error(e); }
  });
};
const emit = (d) => { deliver(d); post({ t: 'count', d }); };

const open = (room) => {
  const s = streams.get(room) || { tries: 0 };
  const q = new URLSearchParams({ visitor: vid });
  if (tokens.get(room)) q.set('token', tokens.get(room));
  streams.set(room, s); // NAME-checked: safe in a path
  const es = (s.es = new EventSource(`${base}/rooms/${room}/events?${q}`));
  es.onopen = () => (s.tries = 0);
  es.onmessage = (e) => {
    let j;
    try { j = JSON.parse(e.data); } catch (_) { return; }
    if (typeof j.online == 'number') emit({ room, online: j.online, connections: j.connections, connected: true });
  };
  es.onerror = () => {
    es.close();
    if (streams.get(room) !== s) return;
    emit({ room, online: null, connections: null, ...last.get(room), connected: false });
    // exponential backoff with jitter: ~1 s, 2 s, 4 s ... at most 30 s
    const delay = Math.min(30000, 1000 * 2 ** s.tries++) * (0.5 + Math.random() / 2);
    s.timer = setTimeout(() => streams.get(room) === s && open(room), delay);
  };
};
const close = (room) => {
  const s = streams.get(room);
  if (!s) return;
  streams.delete(room);
  clearTimeout(s.timer);
  s.es.close();
  if (!subs.has(room)) last.delete(room);
};
// Leader: stream every room some tab needs, and no other.
const sync = () => {
  if (!leader) return;
  const need = new Set(subs.keys());
  tabs.forEach((t) => t.rooms.forEach(([r, tok]) => {
    need.add(r);
    if (tok) tokens.set(r, tok);
  }));
  need.forEach((r) => streams.has(r) || open(r));
  streams.forEach((_, r) => need.has(r) || close(r));
};
const announce = () => post({ t: 'need', tab, rooms: [...subs.keys()].map((r) => [r, tokens.get(r) || '']) });
const changed = () => (leader ? sync() : announce());

// One tab holds the Web Lock and streams for all; the others get counts over a BroadcastChannel,
// announce their rooms and answer the leader's pings. Tabs that miss a ping and stay silent for
// 5 s are dropped (a throttled background tab still answers: its message handler runs).
const tick = () => {
  const now = Date.now();
  tabs.forEach((t, id) => t.seen < pingAt && now - t.seen > 5000 && tabs.delete(id));
  pingAt = now;
  post({ t: 'ping' });
  sync();
};
const alone = () => { solo = leader = true; sync(); };
const lead = () => {
  leader = true;
  post({ t: 'leader' });
  setInterval(tick, 2000);
  sync();
};
try {
  if (navigator.locks && window.BroadcastChannel) {
    bc = new BroadcastChannel('headcount:' + base);
    solo = false;
    bc.onmessage = ({ data: m }) => {
      if (m.t === 'count') {
        if (!leader && subs.has(m.d.room)) deliver(m.d);
      } else if (m.t === 'ping' || m.t === 'leader') {
        if (!leader && subs.size) announce();
      } else if (leader) { // 'need' or 'bye' from a follower
        if (m.t === 'bye') tabs.delete(m.tab);
        else {
          tabs.set(m.tab, { rooms: m.rooms, seen: Date.now() });
          m.rooms.forEach(([r]) => last.has(r) && post({ t: 'count', d: last.get(r) }));
        }
        sync();
      }
    };
    navigator.locks.request('headcount-leader-' + base, () => new Promise(lead)).catch(alone);
  } else alone();
} catch (_) { alone(); }

addEventListener('pagehide', () => {
  post({ t: 'bye', tab });
  streams.forEach((_, r) => close(r));
});
document.addEventListener('visibilitychange', () => document.hidden || leader || announce());

const subscribe = (room, fn, opt = {}) => {
  room = String(room);
  if (!NAME.test(room)) throw new Error('Headcount: bad room name ' + room);
  if (opt.token) tokens.set(room, String(opt.token));
  let set = subs.get(room);
  if (!set) {
    subs.set(room, (set = new Set()));
    changed();
  }
  set.add(fn);
  const l = last.get(room);
  if (l) setTimeout(() => set.has(fn) && fn({ ...l }));
  return () => {
    if (set.delete(fn) && !set.size && subs.get(room) === set) {
      subs.delete(room);
      if (!leader) last.delete(room);
      changed();
    }
  };
};

const v = (k, d) => `var(--headcount-${k},${d})`;
const CSS = `:where(.headcount-badge){display:inline-flex;align-items:center;gap:.45em;padding:${v('padding', '.2em .7em')};
border-radius:${v('radius', '1em')};background:${v('bg', '#f1f5f9')};color:${v('fg', '#0f172a')};white-space:nowrap;
font:${v('font', '600 .85em/1.4 system-ui,sans-serif')};font-variant-numeric:tabular-nums;vertical-align:middle}
:where(.headcount-dot){width:.55em;height:.55em;border-radius:50%;flex:none;background:${v('dot-off', '#94a3b8')}}
:where(.headcount-connected .headcount-dot){background:${v('dot-on', '#22c55e')};box-shadow:0 0 0 .2em ${v('halo', '#22c55e33')}}
:where(.headcount-disconnected){opacity:.75}`;

const mount = (el, o = {}) => {
  if (!o.unstyled && !document.getElementById('headcount-css')) {
    document.head.insertAdjacentHTML('afterbegin', `<style id="headcount-css">${CSS}</style>`);
  }
  const room = o.room || 'lobby';
  el.classList.add('headcount-badge');
  el.innerHTML = '<span class="headcount-dot" aria-hidden="true"></span><span class="headcount-text"></span>';
  const render = (d = {}) => {
    const n = d.online;
    el.classList.toggle('headcount-connected', !!d.connected);
    el.classList.toggle('headcount-disconnected', !d.connected);
    if (n != null) el.setAttribute('data-headcount-count', n);
    el.lastChild.textContent = (o.template || '{count} {label}')
      .replace(/\{count\}/g, n == null ? '–' : n.toLocaleString())
      .replace(/\{label\}/g, n === 1 ? o.labelOne || 'online' : o.labelMany || 'online')
      .replace(/\{room\}/g, room);
    el.title = d.connected ? 'Live' : 'Connecting…';
  };
  render();
  return subscribe(room, render, o);
};

const fromScript = (s) => {
  const d = s ? s.dataset : {};
  const go = () => {
    const el = d.target ? document.querySelector(d.target) : document.createElement('span');
    if (!el) return console.warn('Headcount: nothing matches ' + d.target);
    if (!d.target) s.after(el);
    try { mount(el, { ...d, unstyled: 'unstyled' in d }); } catch (e) { console.warn(e.message); }
  };
  if (s) d.target && document.readyState === 'loading' ? addEventListener('DOMContentLoaded', go) : go();
};

window.Headcount = {
  subscribe,
  mount,
  isLeader: () => leader,
  state: () => ({
    leader, mode: solo ? 'solo' : 'shared', tab, visitor: vid, tabs: tabs.size,
    rooms: Object.fromEntries([...subs.keys()].map((r) => [r, { ...last.get(r) }])),
    streams: [...streams.keys()],
    connected: subs.size > 0 && [...subs.keys()].every((r) => (last.get(r) || {}).connected === true),
  }),
  _script: fromScript,
};
fromScript(me);
document.dispatchEvent(new Event('headcount:ready'));
})();

/* devlock dashboard: one tile per device, live from /ws, an event feed.
 *
 * Design notes (docs/dashboard.md has the long form):
 * - State is a Map of devices. Each tile is built once; an event updates only
 *   the tile of its device (textContent and data-* attributes, never
 *   innerHTML, so nothing a client sends can become markup).
 * - One requestAnimationFrame loop, throttled to 10 Hz, moves the countdown
 *   bars of the tiles that are on screen (IntersectionObserver).
 * - Lock state follows the WebSocket: initial_status is a snapshot at stream
 *   position event_id; a lock_update is applied to the state only when its
 *   event_id is newer than the last one applied, and added to the feed when
 *   the feed has not seen it. After a reconnect the server sends a fresh
 *   initial_status and then replays what we missed (resume), so the state is
 *   right at once and the feed has no holes.
 * - lock_key is dropped from every lock object as it arrives: it is never
 *   kept, so it can never be shown.
 * - No request is made while the WebSocket is down: the browser would log
 *   every refused connection as an error.
 */
'use strict';
(function () {
  var TYPES = { MAINTENANCE: 0, QUEUE_EXECUTING: 1, MANUAL_OPERATOR: 2, QUEUE_QUEUED: 3 };
  var TOKEN_KEY = 'devlock.token';
  var WALL_KEY = 'devlock.wall';
  var FEED_KEEP = 1000;          /* events kept in memory */
  var FEED_SHOW = 200;           /* rows in the list */
  var HISTORY_WANT = 200;        /* events asked for at start */
  var FLASH_MS = 8000;           /* how long a cause label stays on a tile */
  var BACKOFF_MIN = 500, BACKOFF_MAX = 10000;
  var PING_MS = 15000, SILENCE_MS = 40000;
  var WAITER_POLL_MS = 10000, WAITER_POLL_MAX = 20, WAITER_PARALLEL = 3;

  function $(id) { return document.getElementById(id); }
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

  var st = {
    devices: new Map(),      /* name -> device record */
    order: [],               /* device names, sorted */
    stateEventId: null,      /* newest event applied to the lock state */
    lastSeen: null,          /* newest stream id seen at all (for resume) */
    clockOffset: 0,          /* server clock minus local clock, ms */
    connected: false,
    everConnected: false,
    filterWords: [],
    heldOnly: false,
    feedDevice: '',
    feedPlan: '',
    events: [],              /* feed, oldest first, sorted by event_id */
    eventIds: new Set(),
    selected: null,
    waitersSupported: true,
    authUsed: false,
    historyLoaded: false
  };
  var timed = new Set();     /* devices whose lock has an expires_at */
  var listeners = { update: [], status: [] };   /* timeline.js: lock_update, initial_status */
  function notify(kind, m) {
    for (var i = 0; i < listeners[kind].length; i++) {
      try { listeners[kind][i](m); } catch (e) { setTimeout(function () { throw e; }); }
    }
  }

  /* ---------- small helpers ---------- */

  function parseId(id) {
    var m = /^(\d+)-(\d+)$/.exec(id || '');
    return m ? [Number(m[1]), Number(m[2])] : null;
  }
  /* Stream ids "ms-seq" in order; a missing id sorts first. */
  function idCmp(a, b) {
    var x = parseId(a), y = parseId(b);
    if (!x || !y) return x ? 1 : y ? -1 : 0;
    return x[0] - y[0] || x[1] - y[1];
  }
  function noteSeen(id) { if (id && idCmp(id, st.lastSeen) > 0) st.lastSeen = id; }
  function parseTime(s) {
    if (!s) return null;
    var t = Date.parse(s);
    return isNaN(t) ? null : t;
  }
  function serverNow() { return Date.now() + st.clockOffset; }
  function cleanLock(l) {
    if (!l || typeof l !== 'object') return null;
    var c = Object.assign({}, l);
    delete c.lock_key;
    return c;
  }
  function prioOf(l) {
    if (!l) return null;
    if (typeof l.priority === 'number' && l.priority >= 0 && l.priority <= 3) return l.priority;
    return TYPES.hasOwnProperty(l.lock_type) ? TYPES[l.lock_type] : 3;
  }
  function clientText(c) {
    if (!c || typeof c !== 'object') return '';
    var s = c.name ? String(c.name) : '';
    var where = [c.host, c.pid != null ? 'pid ' + c.pid : null].filter(Boolean).join(' ');
    if (where) s += (s ? ' @ ' : '') + where;
    return s;
  }
  function fmtLeft(ms) {
    if (ms <= 0) return 'expired';
    var s = Math.ceil(ms / 1000);
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + ':' + String(s % 60).padStart(2, '0');
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + String(Math.floor(s % 3600 / 60)).padStart(2, '0') + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor(s % 86400 / 3600) + 'h';
  }
  function fmtClock(ts) {
    var t = parseTime(ts);
    if (t == null) return '';
    var d = new Date(t);
    return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0') + ':' +
      String(d.getSeconds()).padStart(2, '0');
  }
  /* "14:00", or "08.12. 14:00" on another day than today */
  function fmtWhen(ts) {
    var t = parseTime(ts);
    if (t == null) return '';
    var d = new Date(t), today = new Date(serverNow());
    var hm = String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
    if (d.toDateString() === today.toDateString()) return hm;
    return String(d.getDate()).padStart(2, '0') + '.' + String(d.getMonth() + 1).padStart(2, '0') + '. ' + hm;
  }
  function animate(el, color, ms) {
    if (!el.animate || matchMedia('(prefers-reduced-motion: reduce)').matches) return;
    el.animate([{ backgroundColor: color }, { backgroundColor: color, offset: 0.25 }, {}], { duration: ms, easing: 'ease-out' });
  }

  /* ---------- HTTP, with the token when there is one ---------- */

  var token = '';
  try { token = sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { token = ''; }
  var tokenWait = null;
  var inflight = 0;
  st.authUsed = !!token;
  /* Escape would close the form with nobody to answer it: keep it open */
  $('auth').addEventListener('cancel', function (ev) { ev.preventDefault(); });

  function askToken(message) {
    if (tokenWait) return tokenWait;
    st.authUsed = true;
    var dlg = $('auth'), err = $('auth-error'), input = $('auth-token');
    err.hidden = !message;
    err.textContent = message || '';
    input.value = '';
    tokenWait = new Promise(function (resolve) {
      $('auth-form').onsubmit = function (ev) {
        ev.preventDefault();
        token = input.value.trim();
        try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* private mode: keep it in memory */ }
        if (dlg.open) dlg.close();
        tokenWait = null;
        resolve();
      };
    });
    if (!dlg.open) {
      if (dlg.showModal) dlg.showModal(); else dlg.setAttribute('open', '');
    }
    input.focus();
    return tokenWait;
  }

  /* GET path as JSON. Resolves to {status, body} or null on a network error. */
  async function api(path) {
    for (var attempt = 0; attempt < 5; attempt++) {
      var headers = token ? { Authorization: 'Bearer ' + token } : {};
      var res;
      inflight++;
      try {
        res = await fetch(path, { headers: headers, cache: 'no-store' });
      } catch (e) {
        return null;
      } finally {
        inflight--;
      }
      if (res.status === 401) {
        await askToken(token ? 'That token was not accepted.' : '');
        continue;
      }
      var body = null;
      try { body = await res.json(); } catch (e) { body = null; }
      return { status: res.status, body: body };
    }
    return null;
  }

  /* ---------- tiles ---------- */

  var grid = $('grid');
  var template = $('tile-template');
  var observer = 'IntersectionObserver' in window ? new IntersectionObserver(function (entries) {
    for (var i = 0; i < entries.length; i++) {
      var d = entries[i].target._dev;
      if (d) d.visible = entries[i].isIntersecting;
    }
  }, { rootMargin: '200px' }) : null;

  function makeTile(d) {
    var el = template.content.firstElementChild.cloneNode(true);
    var q = function (c) { return el.querySelector('.' + c); };
    d.el = el;
    d.ui = {
      name: q('t-name'), type: q('t-type'), desc: q('t-desc'), state: q('t-state'), user: q('t-user'),
      client: q('t-client'), reason: q('t-reason'), plan: q('t-plan'), fence: q('t-fence'),
      fill: q('t-fill'), left: q('t-left'), waiters: q('t-waiters'), flash: q('t-flash')
    };
    el._dev = d;
    el.dataset.device = d.name;
    d.ui.name.textContent = d.name;
    d.visible = !observer;
    if (observer) observer.observe(el);
  }

  function getDevice(name, create) {
    var d = st.devices.get(name);
    if (d || !create || typeof name !== 'string' || !name) return d || null;
    d = { name: name, description: '', known: null, lock: null, waiters: [], leaseStart: 0, expMs: null,
          flashTimer: 0, flashAt: 0, leftText: '', lowState: false };
    st.devices.set(name, d);
    makeTile(d);
    /* sorted insert: binary search on the names */
    var lo = 0, hi = st.order.length;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (collator.compare(st.order[mid], name) < 0) lo = mid + 1; else hi = mid;
    }
    var next = lo < st.order.length ? st.devices.get(st.order[lo]).el : null;
    st.order.splice(lo, 0, name);
    grid.insertBefore(d.el, next);
    render(d);
    dirtySummary();
    return d;
  }

  function matches(d) {
    if (st.heldOnly && !d.lock) return false;
    if (!st.filterWords.length) return true;
    var l = d.lock || {};
    var hay = [d.name, d.description, l.user_id, l.lock_type, l.reason, l.plan_uid,
      l.client && l.client.name, l.client && l.client.host, d.lock ? 'held' : 'free'].join('\n').toLowerCase();
    for (var i = 0; i < st.filterWords.length; i++)
      if (hay.indexOf(st.filterWords[i]) < 0) return false;
    return true;
  }

  function renderWaiters(d) {
    var w = Array.isArray(d.waiters) ? d.waiters : [];
    if (!w.length) { d.ui.waiters.textContent = ''; return; }
    var names = w.slice(0, 3).map(function (x) {
      return (x.user_id || '?') + ' (' + (x.lock_type || '?') + ')';
    });
    d.ui.waiters.textContent = 'waiting: ' + names.join(', ') + (w.length > 3 ? ' +' + (w.length - 3) : '');
  }

  /* Writes one device's whole tile. Only called for that device. */
  function render(d) {
    var el = d.el, u = d.ui, l = d.lock;
    u.desc.textContent = d.description || '';
    if (l) {
      var p = prioOf(l);
      el.dataset.state = 'held';
      el.dataset.prio = String(p);
      el.dataset.holder = l.user_id || '';
      el.dataset.type = l.lock_type || '';
      u.type.textContent = l.lock_type || 'locked';
      u.user.textContent = l.user_id || '(hidden)';
      u.client.textContent = clientText(l.client);
      u.reason.textContent = l.reason || '';
      u.plan.textContent = l.plan_uid ? 'plan ' + l.plan_uid : '';
      var extra = [];
      if (l.fence != null) extra.push('fence ' + l.fence);
      if (Array.isArray(l.group) && l.group.length > 1) extra.push('group of ' + l.group.length);
      if (l.session) extra.push('session');
      u.fence.textContent = extra.join(' · ');
      d.expMs = parseTime(l.expires_at);
      if (d.expMs != null) {
        timed.add(d);
        el.classList.remove('no-expiry');
        d.leftText = '';
        updateTimer(d, serverNow());
      } else {
        timed.delete(d);
        el.classList.add('no-expiry');
        el.classList.remove('low');
        u.fill.style.transform = 'scaleX(1)';
        u.left.textContent = 'no expiry';
      }
      el.title = d.name + ': ' + (l.lock_type || '') + ' held by ' + (l.user_id || '?') +
        (l.acquired_at ? ' since ' + l.acquired_at : '') + (l.expires_at ? ', expires ' + l.expires_at : ', no expiry');
    } else {
      el.dataset.state = 'free';
      delete el.dataset.prio;
      el.dataset.holder = '';
      el.dataset.type = '';
      u.state.textContent = 'free';
      timed.delete(d);
      d.expMs = null;
      el.classList.remove('expiring', 'preempt-pending', 'low', 'no-expiry');
      el.title = d.name + ': free';
    }
    renderWaiters(d);
    el.hidden = !matches(d);
  }

  function updateTimer(d, now) {
    var rem = d.expMs - now;
    var lease = d.expMs - d.leaseStart;
    var frac = lease > 0 ? Math.min(1, Math.max(0, rem / lease)) : 0;
    d.ui.fill.style.transform = 'scaleX(' + frac.toFixed(3) + ')';
    var txt = fmtLeft(rem);
    if (txt !== d.leftText) { d.leftText = txt; d.ui.left.textContent = txt; }
    var low = rem < 10000 || frac < 0.1;
    if (low !== d.lowState) { d.lowState = low; d.el.classList.toggle('low', low); }
  }

  function setLock(d, lock, leaseStartTs) {
    d.lock = cleanLock(lock);
    d.leaseStart = parseTime(leaseStartTs) || (d.lock && parseTime(d.lock.acquired_at)) || serverNow();
    if (d.lock && Array.isArray(d.lock.waiters)) d.waiters = d.lock.waiters;
  }

  function clearFlash(d) {
    clearTimeout(d.flashTimer);
    d.ui.flash.textContent = '';
    delete d.el.dataset.flash;
  }

  function flash(d, label, strong) {
    animate(d.el, strong ? '#6b5000' : '#2d3b4f', strong ? 2500 : 1400);
    if (!label) return;
    d.flashAt = Date.now();
    d.ui.flash.textContent = label;
    d.el.dataset.flash = label;
    clearTimeout(d.flashTimer);
    d.flashTimer = setTimeout(function () {
      d.ui.flash.textContent = '';
      delete d.el.dataset.flash;
    }, FLASH_MS);
  }

  function who(l) { return l ? (l.user_id || '?') + ' (' + (l.lock_type || '?') + ')' : '?'; }

  function causeLabel(m) {
    var l = m.lock;
    switch (m.cause) {
    case 'preempted': return 'preempted: ' + who(l);
    case 'expired': return 'expired: ' + who(l);
    case 'admin': return 'force-released by admin: ' + who(l);
    case 'session_lost': return 'session lost: ' + who(l);
    default: return m.cause ? String(m.cause) + ': ' + who(l) : '';
    }
  }

  /* ---------- applying events ---------- */

  function sameLock(a, b) {
    if (!a || !b) return false;
    if (a.fence != null && b.fence != null) return a.fence === b.fence;
    return a.user_id === b.user_id && a.acquired_at === b.acquired_at;
  }

  function applyUpdate(m) {
    var d = getDevice(m.device_name, true);
    if (!d) return;
    var el = d.el;
    switch (m.action) {
    case 'acquired':
      setLock(d, m.lock, m.lock && m.lock.acquired_at);
      el.classList.remove('expiring', 'preempt-pending');
      render(d);
      /* keep the label of the preemption this grant belongs to */
      if (Date.now() - (d.flashAt || 0) > 1000) clearFlash(d);
      flash(d, '', false);
      break;
    case 'renewed':
      setLock(d, m.lock, m.timestamp);
      el.classList.remove('expiring');
      render(d);
      flash(d, '', false);
      break;
    case 'released':
    case 'force_released':
      if (!d.lock || !m.lock || sameLock(d.lock, m.lock)) {
        d.lock = null;
        render(d);
      }
      if (m.action === 'force_released') {
        flash(d, causeLabel(m) || 'force-released', true);
      } else {
        clearFlash(d);
        flash(d, '', false);
      }
      break;
    case 'expiring':
      el.classList.add('expiring');
      flash(d, 'expiring' + (typeof m.expires_in_ms === 'number' ? ' in ' + fmtLeft(m.expires_in_ms) : ''), true);
      break;
    case 'preempt_requested':
      el.classList.add('preempt-pending');
      /* the preemption ends the lock within the grace; if it does not (the
       * request gave up), stop showing it a little after */
      if (typeof m.grace_s === 'number' && d.lock) {
        var fence = d.lock.fence;
        setTimeout(function () {
          if (d.lock && d.lock.fence === fence) el.classList.remove('preempt-pending');
        }, (m.grace_s + 5) * 1000);
      }
      var rb = m.requested_by;
      flash(d, 'preemption requested' + (rb ? ' by ' + who(rb) : '') +
        (typeof m.grace_s === 'number' ? ' · grace ' + m.grace_s + 's' : ''), true);
      break;
    default:
      /* an action this page does not know: show it, keep the state */
      if (m.lock && m.lock.device_name === d.name && d.lock && sameLock(d.lock, m.lock)) {
        setLock(d, m.lock, d.lock.acquired_at);
        render(d);
      }
      flash(d, String(m.action || 'update'), false);
    }
    if (m.cause) el.dataset.cause = m.cause;
    dirtySummary();
    queueWaiters(d);
  }

  function onLockUpdate(m) {
    if (typeof m.device_name !== 'string') return;
    if (!m.event_id || idCmp(m.event_id, st.stateEventId) > 0) {
      applyUpdate(m);
      if (m.event_id) st.stateEventId = m.event_id;
    }
    noteSeen(m.event_id);
    addEvent(m, true);
    notify('update', m);
  }

  function onInitialStatus(m) {
    var data = m.data || {};
    var locks = Array.isArray(data.locks) ? data.locks : [];
    var ts = parseTime(data.timestamp || m.timestamp);
    if (ts != null) st.clockOffset = ts - Date.now();
    var held = new Set();
    for (var i = 0; i < locks.length; i++) {
      var l = locks[i];
      var d = getDevice(l && l.device_name, true);
      if (!d) continue;
      held.add(d);
      if (!sameLock(d.lock, l) || (d.lock && d.lock.expires_at !== l.expires_at)) {
        setLock(d, l, l.acquired_at);
        render(d);
      }
    }
    st.devices.forEach(function (d) {
      if (d.lock && !held.has(d)) { d.lock = null; render(d); }
    });
    st.stateEventId = m.event_id || null;
    noteSeen(m.event_id);
    setConn('connected');
    backoff = BACKOFF_MIN;
    dirtySummary();
    loadDevices().catch(function () {});
    if (!st.historyLoaded) { st.historyLoaded = true; loadHistory().catch(function () {}); }
    notify('status', m);
  }

  /* ---------- the device catalogue ---------- */

  async function loadDevices() {
    var r = await api('/api/devices');
    if (!r || r.status !== 200 || !r.body || !Array.isArray(r.body.devices)) return false;
    var list = r.body.devices;
    for (var i = 0; i < list.length; i++) {
      var x = list[i];
      var d = getDevice(x && x.device_name, true);
      if (!d) continue;
      var changed = false;
      var desc = typeof x.description === 'string' ? x.description : '';
      if (desc !== d.description) { d.description = desc; changed = true; }
      d.known = x.known;
      if (Array.isArray(x.waiters)) { d.waiters = x.waiters; changed = true; }
      /* the WebSocket owns the lock state; this only fills in before it answers */
      if (st.stateEventId == null && x.locked && x.lock && !d.lock) { setLock(d, x.lock, x.lock.acquired_at); changed = true; }
      if (changed) render(d);
    }
    dirtySummary();
    return true;
  }

  /* ---------- waiters (GET /api/locks/device/NAME) ---------- */

  var waiterQueue = new Set(), waiterActive = 0, waiterTimers = new Map();

  /* Only for tiles on screen (and the selected one): a burst of events on a
   * thousand devices must not become a thousand requests. */
  function queueWaiters(d) {
    if (!st.waitersSupported || waiterTimers.has(d.name)) return;
    if (st.selected !== d && (!d.visible || d.el.hidden)) return;
    waiterTimers.set(d.name, setTimeout(function () {
      waiterTimers.delete(d.name);
      waiterQueue.add(d.name);
      pumpWaiters();
    }, 300));
  }

  async function pumpWaiters() {
    while (st.connected && waiterActive < WAITER_PARALLEL && waiterQueue.size) {
      var name = waiterQueue.values().next().value;
      waiterQueue.delete(name);
      waiterActive++;
      fetchWaiters(name).finally(function () { waiterActive--; pumpWaiters(); });
    }
  }

  async function fetchWaiters(name) {
    var r = await api('/api/locks/device/' + encodeURIComponent(name));
    if (!r || r.status !== 200 || !r.body) return;
    var d = st.devices.get(name);
    if (!d) return;
    if (!Array.isArray(r.body.waiters)) { st.waitersSupported = false; return; }
    var before = JSON.stringify(d.waiters || []);
    d.waiters = r.body.waiters;
    if (JSON.stringify(d.waiters) !== before) { renderWaiters(d); d.el.hidden = !matches(d); }
  }

  /* New waiters send no event: look at the held devices on screen now and then. */
  var pollCursor = 0;
  setInterval(function () {
    if (!st.connected || !st.waitersSupported || document.hidden) return;
    var n = 0, names = st.order, len = names.length;
    for (var i = 0; i < len && n < WAITER_POLL_MAX; i++) {
      var d = st.devices.get(names[(pollCursor + i) % len]);
      if (d && (d.lock || (d.waiters && d.waiters.length)) && d.visible && !d.el.hidden) { waiterQueue.add(d.name); n++; }
    }
    pollCursor = len ? (pollCursor + WAITER_POLL_MAX) % len : 0;
    pumpWaiters();
  }, WAITER_POLL_MS);

  /* ---------- event feed ---------- */

  var feedList = $('events');

  function feedMatches(e) {
    if (st.feedDevice && String(e.device_name || '').toLowerCase().indexOf(st.feedDevice) < 0) return false;
    if (st.feedPlan) {
      var p = e.lock && e.lock.plan_uid;
      if (!p || String(p).toLowerCase().indexOf(st.feedPlan) < 0) return false;
    }
    return true;
  }

  function eventRow(e, isNew) {
    var li = document.createElement('li');
    if (isNew) li.className = 'new';
    li.dataset.action = e.action || '';
    li.dataset.device = e.device_name || '';
    if (e.cause) li.dataset.cause = e.cause;
    var time = document.createElement('span');
    time.className = 'e-time';
    time.textContent = fmtClock(e.timestamp);
    var head = document.createElement('span');
    var act = document.createElement('span');
    act.className = 'e-act ' + (e.action || '');
    act.textContent = (e.action || 'event') + (e.cause ? ' (' + e.cause + ')' : '');
    var dev = document.createElement('span');
    dev.className = 'e-dev';
    dev.textContent = e.device_name || '';
    head.append(act, ' ', dev);
    var det = document.createElement('span');
    det.className = 'e-detail';
    var l = e.lock, bits = [];
    if (e.action === 'gap') {
      bits.push(e.detail || 'some events are no longer kept');
    } else if (l) {
      bits.push(who(l));
      if (l.reason) bits.push(l.reason);
      if (l.plan_uid) bits.push('plan ' + l.plan_uid);
      if (l.fence != null) bits.push('fence ' + l.fence);
    }
    var rv = e.reservation;
    if (rv && typeof rv === 'object') {
      if (!l) bits.push(who(rv));
      if (rv.id) bits.push(String(rv.id));
      if (rv.start && rv.end) bits.push(fmtWhen(rv.start) + ' – ' + fmtWhen(rv.end));
      if (!l && rv.reason) bits.push(rv.reason);
    }
    if (e.action === 'preempt_requested' && e.requested_by) bits.push('by ' + who(e.requested_by));
    if (e.action === 'expiring' && typeof e.expires_in_ms === 'number') bits.push('in ' + fmtLeft(e.expires_in_ms));
    det.textContent = bits.join(' · ');
    li.append(time, head, det);
    return li;
  }

  function renderFeed() {
    var rows = [];
    for (var i = st.events.length - 1; i >= 0 && rows.length < FEED_SHOW; i--)
      if (feedMatches(st.events[i])) rows.push(eventRow(st.events[i], false));
    feedList.replaceChildren.apply(feedList, rows);
  }

  /* Adds an event to the feed unless it is there already; live ones go on top. */
  var feedDirty = false;
  function addEvent(e, live) {
    var key = e.key || e.event_id;
    if (!key || st.eventIds.has(key)) return;
    var ev = {
      key: key, event_id: e.event_id, action: e.action, device_name: e.device_name, lock: cleanLock(e.lock),
      timestamp: e.timestamp, cause: e.cause, requested_by: e.requested_by, expires_in_ms: e.expires_in_ms,
      detail: e.detail, reservation: cleanLock(e.reservation)
    };
    st.eventIds.add(key);
    var n = st.events.length;
    if (!n || idCmp(ev.event_id, st.events[n - 1].event_id) >= 0) {
      st.events.push(ev);
      if (feedMatches(ev)) {
        feedList.prepend(eventRow(ev, live));
        while (feedList.childElementCount > FEED_SHOW) feedList.lastElementChild.remove();
      }
    } else {
      var lo = 0, hi = n;
      while (lo < hi) { var mid = (lo + hi) >> 1; if (idCmp(st.events[mid].event_id, ev.event_id) < 0) lo = mid + 1; else hi = mid; }
      st.events.splice(lo, 0, ev);
      feedDirty = true;
    }
    if (st.events.length > FEED_KEEP) {
      var gone = st.events.splice(0, st.events.length - FEED_KEEP);
      for (var i = 0; i < gone.length; i++) st.eventIds.delete(gone[i].key);
    }
  }

  /* The newest WANT events (filtered like params) without reading the whole
   * stream: /api/events pages forward from `since`, and stream ids start with
   * their time in ms, so ask for growing windows back from now. */
  async function fetchRecent(params, want) {
    /* a short history fits in one answer: try that first */
    var all = await getEvents(params, '', want);
    if (!all || all.events.length < want) return all ? all.events : null;
    var last = parseId(st.lastSeen);
    var end = last ? last[0] : serverNow();
    var windows = [300e3, 3600e3, 86400e3, 7 * 86400e3];
    var best = null;
    for (var w = 0; w < windows.length; w++) {
      var since = Math.max(0, Math.floor(end - windows[w])) + '-0';
      var r = await getEvents(params, since, want);
      if (!r) return best;
      if (r.events.length >= want) {
        if (best && best.length) return best;
        /* this window alone has more than we want: page on, keep the newest */
        var evs = r.events, next = r.last;
        for (var p = 0; p < 20 && next; p++) {
          var more = await getEvents(params, next, want);
          if (!more || !more.events.length) break;
          evs = evs.concat(more.events).slice(-want);
          next = more.last;
          if (more.events.length < want) break;
        }
        return evs;
      }
      best = r.events;
      if (best.length >= want / 2) return best;
    }
    return best && best.length ? best : all.events;
  }

  async function getEvents(params, since, limit) {
    var q = ['limit=' + limit];
    if (since) q.push('since=' + encodeURIComponent(since));
    if (params.device) q.push('device=' + encodeURIComponent(params.device));
    if (params.plan_uid) q.push('plan_uid=' + encodeURIComponent(params.plan_uid));
    if (!st.connected) return null;
    var r = await api('/api/events?' + q.join('&'));
    if (!r || r.status !== 200 || !r.body || !Array.isArray(r.body.events)) return null;
    return { events: r.body.events, last: r.body.last_event_id || null };
  }

  async function loadHistory(params) {
    var evs = await fetchRecent(params || {}, HISTORY_WANT);
    if (!evs) return;
    for (var i = 0; i < evs.length; i++) addEvent(evs[i], false);
    if (feedDirty) { feedDirty = false; renderFeed(); }
  }

  /* ---------- WebSocket ---------- */

  var ws = null, backoff = BACKOFF_MIN, retryTimer = 0, failures = 0, lastMessageAt = 0, resumeSeq = 0;

  function setConn(state, text) {
    var el = $('conn');
    st.connected = state === 'connected';
    if (st.connected) st.everConnected = true;
    el.dataset.state = state;
    el.textContent = text || state;
    document.title = (state === 'disconnected' ? '⚠ disconnected · ' : '') + 'devlock';
    if (st.connected) pumpWaiters();
  }

  function wsUrl() {
    var u = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
    return token ? u + '?token=' + encodeURIComponent(token) : u;
  }

  function send(obj) {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(obj));
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    if (!st.everConnected) setConn('connecting', 'connecting…');
    var sock;
    try {
      sock = new WebSocket(wsUrl());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    var opened = false;
    sock.onopen = function () {
      opened = true;
      failures = 0;
      setConn('connecting', st.everConnected ? 'reconnecting…' : 'connecting…');
      lastMessageAt = Date.now();
      /* the server sends initial_status first; the replay follows it */
      if (st.lastSeen) send({ type: 'resume', since: st.lastSeen, id: 'resume-' + (++resumeSeq) });
    };
    sock.onmessage = function (ev) {
      if (ws !== sock) return;
      lastMessageAt = Date.now();
      var m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m && typeof m === 'object') handle(m);
    };
    sock.onerror = function () { /* onclose follows */ };
    sock.onclose = function () {
      if (ws !== sock) return;
      ws = null;
      if (!opened) failures++;
      setConn('disconnected', 'disconnected · reconnecting');
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    if (retryTimer) return;
    var delay = backoff * (0.75 + Math.random() * 0.5);
    backoff = Math.min(BACKOFF_MAX, backoff * 2);
    retryTimer = setTimeout(async function () {
      retryTimer = 0;
      /* With a token in use, a refused upgrade may mean the token is no
       * longer valid: after several failed handshakes ask an API route. */
      if (st.authUsed && failures >= 5 && failures % 5 === 0) {
        var r = await api('/api/locks/status?limit=1');
        if (!r) { scheduleReconnect(); return; }
      }
      connect();
    }, delay);
    $('conn').textContent = 'disconnected · retry in ' + Math.max(1, Math.round(delay / 1000)) + 's';
  }

  setInterval(function () {
    if (!ws || ws.readyState !== 1) return;
    if (Date.now() - lastMessageAt > SILENCE_MS) { ws.close(); return; }
    send({ type: 'ping' });
  }, PING_MS);

  function handle(m) {
    switch (m.type) {
    case 'initial_status': onInitialStatus(m); break;
    case 'lock_update': onLockUpdate(m); break;
    case 'resume_result': noteSeen(m.event_id); if (feedDirty) { feedDirty = false; renderFeed(); } break;
    case 'pong': break;
    case 'error':
      if (m.error === 'resume_gap') {
        /* a fresh initial_status follows; the feed reloads what is kept */
        addEvent({ event_id: st.lastSeen, key: 'gap:' + st.lastSeen, action: 'gap',
                   timestamp: new Date(serverNow()).toISOString(),
                   detail: 'some events from while this page was disconnected are no longer kept' }, true);
        st.historyLoaded = false;
      } else {
        showBanner('Broker: ' + (m.detail || m.error || 'error'));
      }
      break;
    default: break;
    }
  }

  var bannerTimer = 0;
  function showBanner(text) {
    var b = $('banner');
    b.textContent = text;
    b.hidden = false;
    clearTimeout(bannerTimer);
    bannerTimer = setTimeout(function () { b.hidden = true; }, 10000);
  }

  /* ---------- summary, countdowns: one animation frame loop ---------- */

  var summaryDirty = true, lastTick = 0, lastSummary = 0;
  function dirtySummary() { summaryDirty = true; }

  function renderSummary() {
    var counts = [0, 0, 0, 0], held = 0, shown = 0;
    st.devices.forEach(function (d) {
      if (d.lock) { held++; counts[prioOf(d.lock)]++; }
      if (!d.el.hidden) shown++;
    });
    var total = st.devices.size;
    var s = $('summary');
    var parts = [
      ['', total, 'devices'], ['free', total - held, 'free'],
      ['p0', counts[0], 'maintenance'], ['p1', counts[1], 'executing'],
      ['p2', counts[2], 'manual'], ['p3', counts[3], 'queued']
    ];
    var nodes = parts.map(function (p) {
      var span = document.createElement('span');
      if (p[0]) { var sw = document.createElement('i'); sw.className = 'sw ' + p[0]; span.append(sw); }
      var b = document.createElement('b');
      b.textContent = p[1];
      span.append(b, ' ' + p[2]);
      return span;
    });
    s.replaceChildren.apply(s, nodes);
    $('empty').hidden = total > 0;
    $('nomatch').hidden = total === 0 || shown > 0;
  }

  function tick(now) {
    requestAnimationFrame(tick);
    if (now - lastTick < 100) return;
    lastTick = now;
    var t = serverNow();
    timed.forEach(function (d) { if (d.visible && !d.el.hidden) updateTimer(d, t); });
    if (summaryDirty && now - lastSummary > 250) {
      summaryDirty = false;
      lastSummary = now;
      renderSummary();
    }
    if (feedDirty) { feedDirty = false; renderFeed(); }
  }

  /* ---------- controls ---------- */

  var filterHooks = [];
  function applyFilter() {
    st.devices.forEach(function (d) { d.el.hidden = !matches(d); });
    dirtySummary();
    for (var i = 0; i < filterHooks.length; i++) filterHooks[i]();
  }
  var filterTimer = 0;
  $('search').addEventListener('input', function () {
    clearTimeout(filterTimer);
    var v = this.value;
    filterTimer = setTimeout(function () {
      st.filterWords = v.toLowerCase().split(/\s+/).filter(Boolean);
      applyFilter();
    }, 80);
  });
  $('held-only').addEventListener('change', function () { st.heldOnly = this.checked; applyFilter(); });

  var feedTimer = 0;
  function feedFilterChanged() {
    st.feedDevice = $('f-device').value.trim().toLowerCase();
    st.feedPlan = $('f-plan').value.trim().toLowerCase();
    renderFeed();
    clearTimeout(feedTimer);
    var dev = $('f-device').value.trim(), plan = $('f-plan').value.trim();
    if (!dev && !plan) return;
    /* the history of that exact device / plan from the server as well */
    feedTimer = setTimeout(function () {
      if (dev && !st.devices.has(dev)) dev = '';
      if (dev || plan) loadHistory({ device: dev, plan_uid: plan }).catch(function () {});
    }, 400);
  }
  $('f-device').addEventListener('input', feedFilterChanged);
  $('f-plan').addEventListener('input', feedFilterChanged);

  function selectTile(d) {
    if (st.selected) st.selected.el.classList.remove('selected');
    if (st.selected === d) {
      st.selected = null;
      $('f-device').value = '';
    } else {
      st.selected = d;
      d.el.classList.add('selected');
      $('f-device').value = d.name;
      waiterQueue.add(d.name);
      pumpWaiters();
    }
    feedFilterChanged();
  }
  grid.addEventListener('click', function (ev) {
    var el = ev.target.closest('.tile');
    if (el && el._dev) selectTile(el._dev);
  });
  grid.addEventListener('keydown', function (ev) {
    if ((ev.key === 'Enter' || ev.key === ' ') && ev.target._dev) { ev.preventDefault(); selectTile(ev.target._dev); }
  });

  function setWall(on) {
    document.body.classList.toggle('wall', on);
    $('wall').setAttribute('aria-pressed', on ? 'true' : 'false');
  }
  var wallParam = new URLSearchParams(location.search).get('wall');
  var wallSaved = null;
  try { wallSaved = localStorage.getItem(WALL_KEY); } catch (e) { wallSaved = null; }
  setWall(wallParam != null ? wallParam !== '0' : wallSaved === '1');
  $('wall').addEventListener('click', function () {
    var on = !document.body.classList.contains('wall');
    setWall(on);
    try { localStorage.setItem(WALL_KEY, on ? '1' : '0'); } catch (e) { /* not kept */ }
  });

  /* ---------- start ---------- */

  /* For tests and the curious: read-only views of the state. */
  window.devlockDashboard = {
    devices: function () { return st.devices; },
    connected: function () { return st.connected; },
    lastEventId: function () { return st.lastSeen; },
    events: function () { return st.events; },
    busy: function () { return inflight + waiterQueue.size + waiterTimers.size + waiterActive; },
    busyParts: function () { return [inflight, waiterQueue.size, waiterTimers.size, waiterActive]; }
  };
  /* What timeline.js builds on: not a public interface. */
  window.devlockDashboard.internal = {
    api: api,
    serverNow: serverNow,
    parseTime: parseTime,
    idCmp: idCmp,
    who: who,
    fmtLeft: fmtLeft,
    devices: st.devices,
    order: function () { return st.order; },
    shown: function (d) { return !d.el.hidden; },
    getDevice: function (name) { return getDevice(name, true); },
    connected: function () { return st.connected; },
    token: function () { return token; },
    setToken: function (t) {
      token = t;
      st.authUsed = st.authUsed || !!t;
      try { if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* kept in memory */ }
    },
    on: function (kind, fn) { listeners[kind].push(fn); },
    filterChanged: function (fn) { filterHooks.push(fn); }
  };

  requestAnimationFrame(tick);
  (async function start() {
    try {
      await loadDevices();   /* asks for a token first if the broker wants one */
    } catch (e) { /* the WebSocket retries on its own */ }
    connect();
  })();
})();

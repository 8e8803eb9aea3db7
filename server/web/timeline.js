/* devlock dashboard: the timeline (one row per device: past locks, the
 * current holder, bookings) and the operator's actions.
 *
 * Design notes (docs/dashboard.md has the long form):
 * - Built on app.js (window.devlockDashboard.internal): its device list and
 *   filter, its WebSocket (every lock_update and initial_status is passed on
 *   here), its clock offset and its GET helper.
 * - Past locks come from GET /api/events, read forward from the left edge of
 *   the window; each lock is one interval keyed by device and fence: an end
 *   event (released, force_released, expired) carries the lock, so its
 *   acquired_at gives the start even when the acquired event is older than
 *   what was read. The current holder is app.js's lock state.
 * - Bookings come from GET /api/reservations?from=&to= for the window (and
 *   a margin), then live from reservation_* frames, newest updated_at wins.
 * - Rows are virtual: only the rows on screen exist in the DOM, and only the
 *   bars that meet the window; a render is one animation frame, on demand.
 * - Lock keys: every lock_key is deleted from every object as it arrives.
 *   The page keeps only the keys it got itself, in `keys` (device -> key,
 *   from its own request answers) and `bookingKeys` (booking id -> key, from
 *   bookings whose user_id is the operator's). An admin's answers carry every
 *   user's key; they are dropped the same way.
 * - Actions go through the public API with the operator's token
 *   (sessionStorage, the key app.js uses); an error shows the API's detail
 *   and error code.
 */
'use strict';
(function () {
  var D = window.devlockDashboard && window.devlockDashboard.internal;
  if (!D) return;
  var USER_KEY = 'devlock.user';
  var ROW_H = 30;
  var SPAN_MIN = 15 * 60e3, SPAN_MAX = 8 * 7 * 86400e3;
  var NOW_AT = 0.4;                   /* where "now" sits when the window is reset */
  var HISTORY_PAGES = 20, HISTORY_PAGE = 1000;
  var BOOKING_PAGES = 10, BOOKING_PAGE = 1000;
  var LIVE_STATES = { booked: 1, waiting: 1, active: 1 };
  var END_ACTIONS = { released: 1, force_released: 1, expired: 1 };

  function $(id) { return document.getElementById(id); }

  var tl = {
    shown: false,
    start: 0, span: 6 * 3600e3,       /* the visible window [start, start + span) */
    intervals: new Map(),             /* device -> Map(fence key -> interval) */
    histFrom: null,                   /* history is read from this time (ms) on */
    histLoading: null,
    bookings: new Map(),              /* id -> booking (lock_key removed) */
    byDevice: null,                   /* device -> [booking], rebuilt when dirty */
    rsvFrom: null, rsvTo: null,       /* the range of the last booking load */
    rsvSupported: null,
    keys: new Map(),                  /* device -> {key, user_id, fence}: our own locks */
    bookingKeys: new Map(),           /* booking id -> {key, user_id}: our own bookings */
    user: '',
    selected: null,                   /* {kind, id, device} of the bar shown in the panel */
    device: null,                     /* the device the action forms act on */
    pending: 0,
    dirty: true
  };
  try { tl.user = sessionStorage.getItem(USER_KEY) || ''; } catch (e) { tl.user = ''; }

  var scroll = $('tl-scroll'), body = $('tl-body'), axis = $('tl-axis'), nowLine = $('tl-nowline');

  /* ---------- helpers ---------- */

  function t(s) { return D.parseTime(s); }
  function noKey(o) {
    if (!o || typeof o !== 'object') return o;
    var c = Object.assign({}, o);
    delete c.lock_key;
    return c;
  }
  function pad(n) { return String(n).padStart(2, '0'); }
  var DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  function fmtDay(ms) { var d = new Date(ms); return DAYS[d.getDay()] + ' ' + pad(d.getDate()) + '.' + pad(d.getMonth() + 1) + '.'; }
  function fmtHm(ms) { var d = new Date(ms); return pad(d.getHours()) + ':' + pad(d.getMinutes()); }
  function fmtWhen(ms) { return ms == null ? '' : fmtDay(ms) + ' ' + fmtHm(ms); }
  function fmtSpan(ms) {
    if (ms >= 86400e3) return +(ms / 86400e3).toFixed(1) + ' d';
    if (ms >= 3600e3) return +(ms / 3600e3).toFixed(1) + ' h';
    return Math.round(ms / 60e3) + ' min';
  }
  function localInput(ms) {
    var d = new Date(ms);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' + pad(d.getHours()) + ':' + pad(d.getMinutes());
  }
  function prio(x) {
    if (x && typeof x.priority === 'number') return x.priority;
    var i = ['MAINTENANCE', 'QUEUE_EXECUTING', 'MANUAL_OPERATOR', 'QUEUE_QUEUED'].indexOf(x && x.lock_type);
    return i < 0 ? 3 : i;
  }
  function dirty() {
    if (tl.dirty || !tl.shown) { tl.dirty = true; return; }
    tl.dirty = true;
    requestAnimationFrame(render);
  }

  /* ---------- HTTP for actions: the API's answer, errors as {detail, error} ---------- */

  async function call(method, path, json) {
    var headers = {};
    var tok = D.token();
    if (tok) headers.Authorization = 'Bearer ' + tok;
    var init = { method: method, headers: headers, cache: 'no-store' };
    if (json !== undefined) { headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(json); }
    tl.pending++;
    try {
      var res = await fetch(path, init);
      var b = null;
      try { b = await res.json(); } catch (e) { b = null; }
      return { status: res.status, body: b };
    } catch (e) {
      return { status: 0, body: { detail: 'the broker did not answer (' + (e && e.message || e) + ')', error: 'network' } };
    } finally {
      tl.pending--;
    }
  }

  var msgTimer = 0;
  function say(text, kind) {
    var m = $('tl-msg');
    m.textContent = text;
    m.dataset.kind = kind || 'ok';
    m.hidden = false;
    clearTimeout(msgTimer);
    msgTimer = setTimeout(function () { m.hidden = true; }, 15000);
  }
  /* The answer as the operator should read it: the API's detail and error code. */
  function explain(r, what) {
    var b = r.body || {};
    if (r.status >= 200 && r.status < 300 && b.success !== false) return null;
    if (b.detail) return what + ': ' + b.detail + (b.error ? ' (' + b.error + ')' : '');
    if (b.message) return what + ': ' + b.message;
    return what + ': HTTP ' + r.status;
  }

  /* ---------- data: locks ---------- */

  /* A lock is its device's fence and its grant time (fences restart only
   * with a new database, and then the times differ). */
  function lockId(l) { return 'f' + (l.fence != null ? l.fence : '') + '@' + (l.acquired_at || ''); }

  function devIntervals(dev) {
    var m = tl.intervals.get(dev);
    if (!m) { m = new Map(); tl.intervals.set(dev, m); }
    return m;
  }

  /* One event into the intervals (and bookings). Returns true if it changed something. */
  function ingest(e) {
    if (!e || typeof e.device_name !== 'string') return false;
    if (e.reservation && typeof e.reservation === 'object') upsertBooking(e.reservation);
    var l = e.lock;
    if (!l || typeof l !== 'object') return !!e.reservation;
    var act = e.action;
    if (act !== 'acquired' && act !== 'renewed' && !END_ACTIONS[act]) return !!e.reservation;
    var fk = lockId(l);
    var m = devIntervals(e.device_name);
    var iv = m.get(fk);
    if (!iv) {
      iv = { device: e.device_name, key: fk, start: null, end: null, exp: null, endAction: null, cause: null };
      m.set(fk, iv);
    }
    iv.lock = noKey(l);
    iv.start = t(l.acquired_at) || iv.start || t(e.timestamp);
    if (END_ACTIONS[act]) {
      iv.end = t(e.timestamp);
      iv.endAction = act;
      iv.cause = e.cause || null;
    } else if (iv.end == null) {
      iv.exp = t(l.expires_at);
    }
    return true;
  }

  /* Reads the history of [from, until) (ms) forward, at most `pages` pages.
   * Resolves to {pages, done} (done: it got to `until` or to the end of the
   * stream), or null when the broker did not answer. */
  async function readRange(from, until, pages) {
    var since = Math.max(0, Math.floor(from)) + '-0';
    for (var p = 0; p < pages; p++) {
      if (!D.connected()) return null;
      var r = await D.api('/api/events?limit=' + HISTORY_PAGE + '&since=' + encodeURIComponent(since));
      if (!r || r.status !== 200 || !r.body || !Array.isArray(r.body.events)) return null;
      var evs = r.body.events;
      for (var i = 0; i < evs.length; i++) ingest(evs[i]);
      dirty();
      var last = r.body.last_event_id;
      if (evs.length < HISTORY_PAGE || !last || last === since) return { pages: p + 1, done: true };
      since = last;
      if (Number(String(last).split('-')[0]) >= until) return { pages: p + 1, done: true };
    }
    return { pages: pages, done: false };
  }

  /* The history from the window's left edge (a quarter span before it) to
   * what is read already (or now), newest first, in eighths, at most
   * HISTORY_PAGES pages per call: the part nearest now fills first, and a
   * busy stretch costs its oldest events, not the newest. The read part
   * stays contiguous up to now (live events extend it), so tl.histFrom is
   * all it needs to remember. A call that used its pages is followed by
   * another while the window still wants more. */
  function wantHistory() {
    if (!tl.shown || tl.histLoading || !D.connected()) return;
    var now = D.serverNow();
    var from = Math.min(tl.start - tl.span * 0.25, now);
    if (tl.histFrom != null && tl.histFrom <= from) return;
    var to = tl.histFrom != null ? tl.histFrom : now + 60e3;
    var chunk = Math.max(3600e3, (to - from) / 8);
    tl.histLoading = (async function () {
      var budget = HISTORY_PAGES;
      for (var end = to; end > from && budget > 0; end -= chunk) {
        var begin = Math.max(from, end - chunk);
        var r = await readRange(begin, end, budget);
        if (!r) return false;
        budget -= r.pages;
        /* a stretch with more than the budget keeps a gap; the next call goes on below it */
        tl.histFrom = tl.histFrom == null ? begin : Math.min(tl.histFrom, begin);
      }
      return true;
    })().then(function (ok) {
      tl.histLoading = null;
      /* not after a failure: the next status (a reconnect) or window change asks again */
      if (ok && tl.histFrom > Math.min(tl.start - tl.span * 0.25, D.serverNow())) wantHistory();
    }, function () { tl.histLoading = null; });
  }

  /* ---------- data: bookings ---------- */

  /* RFC 3339 times to the microsecond (Date keeps milliseconds): the broker
   * writes them all alike, so equal lengths compare as text. */
  function timeCmp(a, b) {
    if (typeof a !== 'string' || typeof b !== 'string') return 0;
    if (a.length === b.length && a.slice(-1) === 'Z' && b.slice(-1) === 'Z') return a < b ? -1 : a > b ? 1 : 0;
    return (t(a) || 0) - (t(b) || 0);
  }

  function upsertBooking(b) {
    if (!b || typeof b.id !== 'string') return;
    var old = tl.bookings.get(b.id);
    /* an answer can arrive after the frames of later changes: the newest wins */
    if (old && (timeCmp(b.updated_at, old.updated_at) < 0 ||
        (timeCmp(b.updated_at, old.updated_at) === 0 && (b.sequence || 0) < (old.sequence || 0)))) return;
    if (typeof b.lock_key === 'string' && b.lock_key && tl.user && b.user_id === tl.user)
      tl.bookingKeys.set(b.id, { key: b.lock_key, user_id: b.user_id });
    tl.bookings.set(b.id, noKey(b));
    tl.byDevice = null;
    dirty();
  }

  function bookingsOf(dev) {
    if (!tl.byDevice) {
      tl.byDevice = new Map();
      tl.bookings.forEach(function (b) {
        var names = Array.isArray(b.device_names) ? b.device_names : [];
        for (var i = 0; i < names.length; i++) {
          var a = tl.byDevice.get(names[i]);
          if (!a) tl.byDevice.set(names[i], a = []);
          a.push(b);
        }
      });
    }
    return tl.byDevice.get(dev) || [];
  }

  var rsvTimer = 0, rsvSeq = 0;
  function wantBookings(force) {
    if (!tl.shown || !D.connected()) return;
    var from = tl.start - tl.span, to = tl.start + 2 * tl.span;
    if (!force && tl.rsvFrom != null && tl.rsvFrom <= tl.start && tl.rsvTo >= tl.start + tl.span) return;
    clearTimeout(rsvTimer);
    rsvTimer = setTimeout(function () { loadBookings(from, to); }, force ? 0 : 200);
  }

  async function loadBookings(from, to) {
    var seq = ++rsvSeq;
    var q = '/api/reservations?limit=' + BOOKING_PAGE + '&from=' + encodeURIComponent(new Date(from).toISOString()) +
      '&to=' + encodeURIComponent(new Date(to).toISOString());
    var cursor = null;
    tl.pending++;
    try {
      for (var p = 0; p < BOOKING_PAGES; p++) {
        var r = await D.api(q + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
        if (!r) return;
        if (r.status === 404 && p === 0 && !(r.body && r.body.reservations)) {
          tl.rsvSupported = false;
          note();
          return;
        }
        if (r.status !== 200 || !r.body || !Array.isArray(r.body.reservations)) return;
        tl.rsvSupported = true;
        r.body.reservations.forEach(upsertBooking);
        cursor = r.body.next_cursor;
        if (!cursor) break;
      }
      if (seq === rsvSeq) { tl.rsvFrom = from; tl.rsvTo = to; }
      note();
    } finally {
      tl.pending--;
    }
  }

  function note() {
    $('tl-note').textContent = tl.rsvSupported === false ? 'this broker has no bookings (GET /api/reservations: 404)' : '';
  }

  /* ---------- our own keys ---------- */

  /* The key this page may use for the lock on dev, or null. */
  function keyFor(dev) {
    var d = D.devices.get(dev);
    var l = d && d.lock;
    if (!l) return null;
    var k = tl.keys.get(dev);
    if (k && k.user_id === l.user_id && (k.fence == null || l.fence == null || k.fence === l.fence)) return k.key;
    if (l.reservation) {
      var bk = tl.bookingKeys.get(l.reservation);
      if (bk && bk.user_id === l.user_id) return bk.key;
    }
    return null;
  }

  function forgetOthers() {
    tl.keys.forEach(function (k, dev) { if (k.user_id !== tl.user) tl.keys.delete(dev); });
    tl.bookingKeys.forEach(function (k, id) { if (k.user_id !== tl.user) tl.bookingKeys.delete(id); });
  }

  /* ---------- live updates from app.js ---------- */

  D.on('update', function (m) {
    var changed = ingest(m);
    var l = m.lock;
    if (END_ACTIONS[m.action] && l) {
      var k = tl.keys.get(m.device_name);
      if (k && (k.fence == null || k.fence === l.fence)) tl.keys.delete(m.device_name);
    }
    if (changed || m.action === 'acquired') dirty();
    if (tl.device === m.device_name) deviceForm();
    if (tl.selected && (tl.selected.device === m.device_name ||
        (m.reservation && tl.selected.id === m.reservation.id))) showDetails(tl.selected);
  });
  D.on('status', function () {
    dirty();
    if (tl.shown) { wantHistory(); wantBookings(true); }
  });
  D.filterChanged(function () { dirty(); });

  /* ---------- the window ---------- */

  function setWindow(start, span) {
    span = Math.min(SPAN_MAX, Math.max(SPAN_MIN, span));
    tl.start = start;
    tl.span = span;
    var zb = document.querySelectorAll('.tl-zoom [data-span]');
    for (var i = 0; i < zb.length; i++) zb[i].setAttribute('aria-pressed', Number(zb[i].dataset.span) === span ? 'true' : 'false');
    $('tl-range').textContent = fmtWhen(start) + ' – ' + fmtWhen(start + span) + ' (' + fmtSpan(span) + ')';
    dirty();
    wantHistory();
    wantBookings(false);
  }
  function zoomAt(factor, at) {
    var span = Math.min(SPAN_MAX, Math.max(SPAN_MIN, tl.span * factor));
    var frac = (at - tl.start) / tl.span;
    setWindow(at - frac * span, span);
  }
  function resetWindow(span) { setWindow(D.serverNow() - NOW_AT * span, span); }

  /* ---------- rendering ---------- */

  var TICKS = [60e3, 5 * 60e3, 15 * 60e3, 30 * 60e3, 3600e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3, 86400e3, 2 * 86400e3, 7 * 86400e3];

  function pct(ms) { return ((ms - tl.start) / tl.span * 100); }

  function renderAxis() {
    var step = TICKS[TICKS.length - 1];
    for (var i = 0; i < TICKS.length; i++) if (tl.span / TICKS[i] <= 12) { step = TICKS[i]; break; }
    var tz = new Date(tl.start).getTimezoneOffset() * 60e3;
    var first = Math.ceil((tl.start - tz) / step) * step + tz;
    var nodes = [];
    for (var x = first; x < tl.start + tl.span; x += step) {
      var s = document.createElement('span');
      s.className = 'tl-tick';
      s.style.left = pct(x) + '%';
      var midnight = new Date(x).getHours() === 0 && new Date(x).getMinutes() === 0;
      s.textContent = step >= 86400e3 || midnight ? fmtDay(x) : fmtHm(x);
      if (midnight) s.classList.add('day');
      nodes.push(s);
    }
    var now = D.serverNow();
    if (now >= tl.start && now < tl.start + tl.span) {
      var nw = document.createElement('span');
      nw.className = 'tl-tick now';
      nw.style.left = pct(now) + '%';
      nw.textContent = 'now';
      nodes.push(nw);
    }
    var lane = document.createElement('div');
    lane.className = 'tl-axis-lane';
    lane.append.apply(lane, nodes);
    var lab = document.createElement('div');
    lab.className = 'tl-label tl-axis-label';
    lab.textContent = 'device';
    axis.replaceChildren(lab, lane);
  }

  function bar(kind, x0, x1, p, text, title, data) {
    var lo = Math.max(tl.start, x0), hi = Math.min(tl.start + tl.span, x1);
    if (!(hi > lo) && !(x1 === x0 && x0 >= tl.start && x0 < tl.start + tl.span)) return null;
    var el = document.createElement('div');
    el.className = 'tl-bar ' + kind;
    el.dataset.kind = kind;
    el.dataset.prio = String(p);
    for (var k in data) if (data[k] != null) el.dataset[k] = data[k];
    el.style.left = pct(lo) + '%';
    el.style.width = 'max(3px, ' + (pct(hi) - pct(lo)) + '%)';
    if (x0 < tl.start) el.classList.add('cut-l');
    if (x1 > tl.start + tl.span) el.classList.add('cut-r');
    el.textContent = text;
    el.title = title;
    return el;
  }

  function rowBars(name, now) {
    var out = [];
    var d = D.devices.get(name);
    var cur = d && d.lock;
    var curKey = cur ? lockId(cur) : null;
    var m = tl.intervals.get(name);
    if (m) m.forEach(function (iv) {
      if (iv.key === curKey && iv.end == null) return;
      var end = iv.end != null ? iv.end : Math.min(now, iv.exp != null ? iv.exp : now);
      var l = iv.lock || {};
      var b = bar('lock', iv.start, end, prio(l), l.user_id || '',
        name + ': ' + D.who(l) + ' ' + fmtWhen(iv.start) + ' – ' + fmtWhen(end) + (iv.endAction ? ' (' + iv.endAction + (iv.cause ? ', ' + iv.cause : '') + ')' : ''),
        { id: name + '#' + iv.key, device: name, user: l.user_id, end: iv.endAction || 'open' });
      if (b) out.push(b);
    });
    if (cur) {
      var s = t(cur.acquired_at) || now, e = t(cur.expires_at);
      var b = bar('current', s, e != null ? e : tl.start + tl.span * 2, prio(cur), cur.user_id || '(hidden)',
        name + ': held by ' + D.who(cur) + ' since ' + fmtWhen(s) + (e != null ? ', expires ' + fmtWhen(e) : ', no expiry'),
        { id: name + '#' + curKey, device: name, user: cur.user_id, mine: keyFor(name) ? '1' : null });
      if (b) { if (e == null) b.classList.add('open'); out.push(b); }
    }
    var bs = bookingsOf(name);
    for (var i = 0; i < bs.length; i++) {
      var bk = bs[i], bs0 = t(bk.start), bs1 = t(bk.end);
      if (bs0 == null || bs1 == null) continue;
      var bb = bar('booking', bs0, bs1, prio(bk), (bk.user_id || '') + (bk.reason ? ' · ' + bk.reason : ''),
        bk.id + ' ' + D.who(bk) + ' ' + fmtWhen(bs0) + ' – ' + fmtWhen(bs1) + ' (' + bk.state + ')',
        { id: bk.id, device: name, user: bk.user_id, state: bk.state });
      if (bb) out.push(bb);
    }
    return out;
  }

  /* Rows on screen, by device. A row that stays on screen is kept (its
   * label keeps the keyboard focus); its bars are redrawn. */
  var rowEls = new Map(), rowsFirst = -1, rowsLast = -1, renders = 0;
  function makeRow(name) {
    var row = document.createElement('div');
    row.className = 'tl-row';
    row.dataset.device = name;
    var lab = document.createElement('div');
    lab.className = 'tl-label';
    lab.tabIndex = 0;
    lab.setAttribute('role', 'button');
    lab.textContent = name;
    lab.title = name + ': click for actions';
    var lane = document.createElement('div');
    lane.className = 'tl-lane';
    row.append(lab, lane);
    return row;
  }
  function render() {
    if (!tl.shown) return;
    tl.dirty = false;
    var now = D.serverNow();
    var names = D.order().filter(function (n) { var d = D.devices.get(n); return d && D.shown(d); });
    body.style.height = (names.length * ROW_H) + 'px';
    var top = Math.max(0, scroll.scrollTop - axis.offsetHeight);
    var first = Math.max(0, Math.floor(top / ROW_H) - 3);
    var last = Math.min(names.length, Math.ceil((top + scroll.clientHeight) / ROW_H) + 3);
    rowsFirst = first; rowsLast = last;
    renders++;
    var keep = new Map();
    if (body.firstChild !== nowLine) body.prepend(nowLine);
    var at = nowLine;
    for (var i = first; i < last; i++) {
      var name = names[i];
      var row = rowEls.get(name) || makeRow(name);
      keep.set(name, row);
      row.style.top = (i * ROW_H) + 'px';
      row.classList.toggle('selected', tl.device === name);
      var bars = rowBars(name, now);
      row.lastChild.replaceChildren.apply(row.lastChild, bars);
      if (at.nextSibling !== row) body.insertBefore(row, at.nextSibling);
      at = row;
    }
    rowEls.forEach(function (row, n) { if (!keep.has(n)) row.remove(); });
    rowEls = keep;
    if (tl.selected) {
      var sel = body.querySelectorAll('.tl-bar');
      for (var j = 0; j < sel.length; j++) if (sel[j].dataset.id === tl.selected.id) sel[j].classList.add('selected');
    }
    renderAxis();
    placeNow(now);
  }

  function placeNow(now) {
    var p = pct(now);
    nowLine.hidden = p < 0 || p > 100;
    nowLine.style.setProperty('--f', String(p / 100));
    nowLine.title = 'now ' + fmtHm(now);
  }

  /* ---------- details of a bar ---------- */

  function field(list, name, value) {
    if (value == null || value === '') return;
    var dt = document.createElement('dt'), dd = document.createElement('dd');
    dt.textContent = name;
    dd.textContent = Array.isArray(value) ? value.join(', ') : String(value);
    dd.dataset.field = name;
    list.push(dt, dd);
  }

  function showDetails(sel) {
    tl.selected = sel;
    var box = $('tl-details'), list = [], title = '';
    $('tl-cancel').hidden = true;
    if (sel.kind === 'booking') {
      var b = tl.bookings.get(sel.id);
      if (!b) { box.hidden = true; return; }
      title = 'Booking ' + b.id;
      field(list, 'id', b.id);
      field(list, 'devices', b.device_names);
      field(list, 'user', b.user_id);
      field(list, 'type', b.lock_type + (typeof b.priority === 'number' ? ' (priority ' + b.priority + ')' : ''));
      field(list, 'start', b.start);
      field(list, 'end', b.end);
      field(list, 'state', b.state);
      field(list, 'cause', b.cause);
      field(list, 'bumped by', b.bumped_by);
      field(list, 'reason', b.reason);
      field(list, 'plan', b.plan_uid);
      field(list, 'created', b.created_at);
      $('tl-cancel').hidden = !LIVE_STATES[b.state];
      $('tl-cancel').dataset.id = b.id;
    } else {
      var d = D.devices.get(sel.device), l = null, iv = null;
      if (sel.kind === 'current') l = d && d.lock;
      else {
        var m = tl.intervals.get(sel.device);
        iv = m && m.get(sel.id.slice(sel.device.length + 1));
        l = iv && iv.lock;
      }
      if (!l) { box.hidden = true; return; }
      title = (sel.kind === 'current' ? 'Current lock on ' : 'Lock on ') + sel.device;
      field(list, 'device', l.device_name || sel.device);
      field(list, 'user', l.user_id);
      field(list, 'type', l.lock_type + ' (priority ' + prio(l) + ')');
      field(list, 'start', l.acquired_at);
      if (iv && iv.end != null) field(list, 'end', new Date(iv.end).toISOString() + ' (' + iv.endAction + (iv.cause ? ', ' + iv.cause : '') + ')');
      else field(list, 'expires', l.expires_at || 'no expiry');
      field(list, 'state', iv && iv.end != null ? 'ended' : 'held');
      field(list, 'fence', l.fence);
      field(list, 'reason', l.reason);
      field(list, 'plan', l.plan_uid);
      field(list, 'booking', l.reservation);
      field(list, 'group', Array.isArray(l.group) && l.group.length > 1 ? l.group : null);
    }
    $('tl-d-title').textContent = title;
    $('tl-d-fields').replaceChildren.apply($('tl-d-fields'), list);
    box.dataset.kind = sel.kind;
    box.dataset.id = sel.id;
    box.hidden = false;
    var bars = body.querySelectorAll('.tl-bar');
    for (var i = 0; i < bars.length; i++) bars[i].classList.toggle('selected', bars[i].dataset.id === sel.id);
  }

  $('tl-d-close').addEventListener('click', function () {
    tl.selected = null;
    $('tl-details').hidden = true;
    dirty();
  });

  /* ---------- the device's action forms ---------- */

  function selectDevice(name) {
    tl.device = name;
    $('tl-device').hidden = !name;
    $('tl-dev-name').textContent = name || '';
    if (name && !$('bk-from').value) {
      var h = Math.ceil(D.serverNow() / 3600e3) * 3600e3;
      $('bk-from').value = localInput(h);
      $('bk-to').value = localInput(h + 3600e3);
    }
    deviceForm();
    dirty();
  }

  function deviceForm() {
    var name = tl.device;
    if (!name) return;
    var d = D.devices.get(name), l = d && d.lock;
    $('tl-dev-holder').textContent = l ? 'held by ' + D.who(l) : 'free';
    var mine = !!keyFor(name);
    $('rq-release').disabled = !mine;
    $('rq-renew').disabled = !mine;
    $('rq-release').title = $('rq-renew').title = mine ? '' : 'this page does not hold a key for the lock on ' + name;
    $('rq-force').disabled = !l;
  }

  function needUser() {
    if (tl.user) return true;
    say('Enter your user_id under "Act as" first.', 'error');
    $('op-user').focus();
    return false;
  }

  $('f-request').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var dev = tl.device;
    if (!dev || !needUser()) return;
    var lease = Number($('rq-timeout').value);
    var req = { device_name: dev, lock_type: $('rq-type').value, user_id: tl.user, timeout: lease > 0 ? lease : 300 };
    var reason = $('rq-reason').value.trim();
    if (reason) req.reason = reason;
    var r = await call('POST', '/api/lock/request', req);
    var err = explain(r, 'Request ' + dev);
    if (err) { say(err, 'error'); return; }
    if (r.body.lock_key) tl.keys.set(dev, { key: r.body.lock_key, user_id: tl.user, fence: r.body.fence != null ? r.body.fence : null });
    say(r.body.message || ('Lock acquired for ' + dev), 'ok');
    deviceForm();
    dirty();
  });

  async function holderAction(kind) {
    var dev = tl.device;
    if (!dev || !needUser()) return;
    var key = keyFor(dev);
    if (!key) { say('This page does not hold a key for the lock on ' + dev + '.', 'error'); return; }
    var req = { device_name: dev, lock_key: key, user_id: tl.user };
    if (kind === 'renew') {
      var lease = Number($('rq-timeout').value);
      if (lease > 0) req.timeout = lease;
    }
    var r = await call('POST', '/api/lock/' + kind, req);
    var err = explain(r, (kind === 'renew' ? 'Renew ' : 'Release ') + dev);
    if (err) { say(err, 'error'); return; }
    if (kind === 'release') tl.keys.delete(dev);
    say(r.body.message || (kind + 'd ' + dev), 'ok');
    deviceForm();
  }
  $('rq-release').addEventListener('click', function () { holderAction('release'); });
  $('rq-renew').addEventListener('click', function () { holderAction('renew'); });

  $('rq-force').addEventListener('click', async function () {
    var dev = tl.device;
    if (!dev) return;
    var r = await call('POST', '/api/lock/force_release', { device_name: dev, reason: 'from the dashboard' + (tl.user ? ' (' + tl.user + ')' : '') });
    var err = explain(r, 'Force release ' + dev);
    if (err) { say(err, 'error'); return; }
    say(r.body.message || ('Force-released ' + dev), 'ok');
  });

  $('f-book').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var dev = tl.device;
    if (!dev || !needUser()) return;
    var from = new Date($('bk-from').value), to = new Date($('bk-to').value);
    if (isNaN(from) || isNaN(to)) { say('Book ' + dev + ': enter the start and the end.', 'error'); return; }
    var req = { device_names: [dev], lock_type: $('bk-type').value, user_id: tl.user,
      start: from.toISOString(), end: to.toISOString() };
    var reason = $('bk-reason').value.trim();
    if (reason) req.reason = reason;
    var r = await call('POST', '/api/reservations', req);
    var err = explain(r, 'Book ' + dev);
    if (err) { say(err, 'error'); return; }
    var b = r.body.reservation;
    if (b) {
      upsertBooking(b);
      showDetails({ kind: 'booking', id: b.id, device: dev });
    }
    say('Booked ' + dev + (b ? ' as ' + b.id : '') + (Array.isArray(r.body.bumped) && r.body.bumped.length ? ' (bumped ' + r.body.bumped.join(', ') + ')' : ''), 'ok');
  });

  $('tl-cancel').addEventListener('click', async function () {
    var id = this.dataset.id;
    if (!id) return;
    var r = await call('DELETE', '/api/reservations/' + encodeURIComponent(id));
    var err = explain(r, 'Cancel ' + id);
    if (err) { say(err, 'error'); return; }
    if (r.body.reservation) upsertBooking(r.body.reservation);
    say('Cancelled ' + id, 'ok');
    if (tl.selected && tl.selected.id === id) showDetails(tl.selected);
  });

  /* ---------- operator: user and token ---------- */

  function showOperator() {
    $('op-user').value = tl.user;
    $('op-token').value = '';
    $('op-token').placeholder = D.token() ? 'a token is in use (this tab only)' : 'bearer token, if needed';
    $('op-state').textContent = tl.user ? 'acting as ' + tl.user + (D.token() ? ' with a token' : '') : '';
  }
  $('op').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var u = $('op-user').value.trim(), tok = $('op-token').value.trim();
    if (u !== tl.user) {
      tl.user = u;
      try { sessionStorage.setItem(USER_KEY, u); } catch (e) { /* kept in memory */ }
      forgetOthers();
    }
    if (tok) D.setToken(tok);
    showOperator();
    wantBookings(true);     /* another user or token may see other bookings' details */
    deviceForm();
    dirty();
  });

  /* ---------- pointer: click, drag to pan, wheel to zoom ---------- */

  var drag = null;
  function laneRect() {
    var lane = body.querySelector('.tl-lane') || axis.querySelector('.tl-axis-lane');
    return lane ? lane.getBoundingClientRect() : scroll.getBoundingClientRect();
  }
  /* What a press is on, read when it starts: rows are redrawn (every second,
   * and on every event), so the element pressed may be gone when the button
   * comes up, and the browser then sends no click. */
  function pressTarget(el) {
    var b = el.closest && el.closest('.tl-bar');
    if (b) return { kind: b.dataset.kind, id: b.dataset.id, device: b.dataset.device };
    var row = el.closest && el.closest('.tl-row');
    return row ? { device: row.dataset.device } : null;
  }
  function activate(p) {
    if (!p) return;
    if (p.kind) showDetails({ kind: p.kind, id: p.id, device: p.device });
    selectDevice(p.device);
  }
  scroll.addEventListener('pointerdown', function (ev) {
    if (ev.button !== 0) return;
    drag = { x: ev.clientX, start: tl.start, moved: false, id: ev.pointerId, w: laneRect().width, target: pressTarget(ev.target) };
  });
  scroll.addEventListener('pointermove', function (ev) {
    if (!drag || ev.pointerId !== drag.id) return;
    var dx = ev.clientX - drag.x;
    if (!drag.moved && Math.abs(dx) < 4) return;
    if (!drag.moved) { drag.moved = true; try { scroll.setPointerCapture(ev.pointerId); } catch (e) { /* no capture */ } }
    scroll.classList.add('dragging');
    setWindow(drag.start - dx / drag.w * tl.span, tl.span);
  });
  function endDrag(ev) {
    if (!drag || ev.pointerId !== drag.id) return;
    var moved = drag.moved, target = drag.target;
    drag = null;
    scroll.classList.remove('dragging');
    if (!moved && ev.type === 'pointerup') activate(target);
  }
  scroll.addEventListener('pointerup', endDrag);
  scroll.addEventListener('pointercancel', endDrag);

  scroll.addEventListener('keydown', function (ev) {
    if ((ev.key === 'Enter' || ev.key === ' ') && ev.target.classList.contains('tl-label')) {
      ev.preventDefault();
      activate(pressTarget(ev.target));
    }
  });
  /* a click without a pointer (keyboard, el.click()); pointer clicks are handled on pointerup */
  scroll.addEventListener('click', function (ev) {
    if (ev.detail === 0) activate(pressTarget(ev.target));
  });

  scroll.addEventListener('wheel', function (ev) {
    var onAxis = !!ev.target.closest('.tl-axis');
    if (!ev.ctrlKey && !ev.metaKey && !onAxis) {
      if (ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(ev.deltaY)) {
        ev.preventDefault();
        var d = ev.shiftKey ? ev.deltaY : ev.deltaX;
        setWindow(tl.start + d / laneRect().width * tl.span, tl.span);
      }
      return;                 /* a plain wheel scrolls the rows */
    }
    ev.preventDefault();
    var r = laneRect();
    var at = tl.start + Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width)) * tl.span;
    zoomAt(ev.deltaY > 0 ? 1.25 : 0.8, at);
  }, { passive: false });

  scroll.addEventListener('scroll', function () { dirty(); });
  window.addEventListener('resize', function () { dirty(); });

  var zoomButtons = document.querySelectorAll('.tl-zoom [data-span]');
  for (var zi = 0; zi < zoomButtons.length; zi++) {
    zoomButtons[zi].addEventListener('click', function () {
      var span = Number(this.dataset.span), now = D.serverNow();
      var inView = now >= tl.start && now < tl.start + tl.span;
      zoomAt(span / tl.span, inView ? now : tl.start + tl.span / 2);
    });
  }
  $('tl-in').addEventListener('click', function () { zoomAt(0.5, tl.start + tl.span / 2); });
  $('tl-out').addEventListener('click', function () { zoomAt(2, tl.start + tl.span / 2); });
  $('tl-earlier').addEventListener('click', function () { setWindow(tl.start - tl.span / 2, tl.span); });
  $('tl-later').addEventListener('click', function () { setWindow(tl.start + tl.span / 2, tl.span); });
  $('tl-now').addEventListener('click', function () { resetWindow(tl.span); });

  /* ---------- the view switch ---------- */

  function show(on) {
    tl.shown = on;
    $('timeline').hidden = !on;
    document.querySelector('.devices').hidden = on;
    $('view-tiles').setAttribute('aria-pressed', on ? 'false' : 'true');
    $('view-timeline').setAttribute('aria-pressed', on ? 'true' : 'false');
    if (on) {
      if (!tl.start) resetWindow(tl.span);
      showOperator();
      tl.dirty = true;
      requestAnimationFrame(render);
      wantHistory();
      wantBookings(true);
    }
  }
  $('view-tiles').addEventListener('click', function () { show(false); });
  $('view-timeline').addEventListener('click', function () { show(true); });

  /* the now line, the open bars and the bars that are growing, once a second */
  setInterval(function () {
    if (!tl.shown || document.hidden) return;
    render();
  }, 1000);

  /* Memory stays bounded on a page left open for weeks: what ended long
   * before both the window and SPAN_MAX before now is dropped (and read again
   * from the history if the window goes back there). */
  setInterval(function () {
    var cut = Math.min(tl.start || Infinity, D.serverNow() - SPAN_MAX) - tl.span;
    tl.intervals.forEach(function (m, dev) {
      m.forEach(function (iv, k) { if (iv.end != null && iv.end < cut) m.delete(k); });
      if (!m.size) tl.intervals.delete(dev);
    });
    if (tl.histFrom != null && tl.histFrom < cut) tl.histFrom = cut;
    var gone = 0;
    tl.bookings.forEach(function (b, id) {
      if (!LIVE_STATES[b.state] && (t(b.end) || 0) < cut) { tl.bookings.delete(id); tl.bookingKeys.delete(id); gone++; }
    });
    if (gone) { tl.byDevice = null; tl.rsvFrom = tl.rsvTo = null; }
  }, 60000);

  /* For tests and the curious: read-only views of the timeline. */
  window.devlockTimeline = {
    window: function () { return { start: tl.start, end: tl.start + tl.span, span: tl.span }; },
    setWindow: function (start, span) { setWindow(start, span); },
    bookings: function () { return tl.bookings; },
    intervals: function () { return tl.intervals; },
    keys: function () { return { locks: tl.keys, bookings: tl.bookingKeys }; },
    rows: function () { return [rowsFirst, rowsLast]; },
    renders: function () { return renders; },
    busy: function () { return tl.pending + (tl.histLoading ? 1 : 0); }
  };

  var viewParam = new URLSearchParams(location.search).get('view');
  show(viewParam === 'timeline');
})();

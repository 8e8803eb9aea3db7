#!/usr/bin/env node
// tests/client/ics_roundtrip.js URL [TOKEN] - the calendar feed against the
// JSON listing, read by a third-party iCalendar parser (ical.js).
//
// Makes bookings of its own user on the broker at URL (one device, a group
// with a reason full of commas, semicolons, backslashes, line breaks and
// multi-byte UTF-8, long enough to be folded; a cancelled one, a moved one,
// a bumped one and the one that bumped it), then reads GET
// /api/reservations.ics and GET /api/reservations with the same filters
// (user, and device) and checks that every booking round-trips: UID, start,
// end, summary (devices, user), description (the reason), status,
// sequence, categories, and that the feed's lines are CRLF-terminated, at
// most 75 octets, valid UTF-8 each. Last line: "N passed, M failed".
'use strict';
const path = require('path');
const ROOT = path.resolve(__dirname, '..', '..');
const icalModule = require(path.join(ROOT, 'tests', 'node_modules', 'ical.js'));
const ICAL = icalModule.default || icalModule;

const url = process.argv[2];
const token = process.argv[3] || process.env.DEVLOCK_TOKEN || '';
if (!url) {
    console.error('usage: node tests/client/ics_roundtrip.js URL [TOKEN]');
    process.exit(2);
}
let passed = 0, failed = 0;
function check(name, cond, detail) {
    if (cond) { passed++; console.log(`ok - ${name}`); return true; }
    failed++;
    console.log(`FAIL - ${name}${detail !== undefined ? ': ' + detail : ''}`);
    return false;
}

const timer = setTimeout(() => { check('finished within 30 s', false); finish(); }, 30000);
function finish() {
    clearTimeout(timer);
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
}

async function call(method, p, body) {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = await fetch(url + p, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                    signal: AbortSignal.timeout(5000)});
    const text = await r.text();
    return {status: r.status, type: r.headers.get('content-type') || '', text,
            buf: Buffer.from(text, 'utf8'), json: (() => { try { return JSON.parse(text); } catch { return null; } })()};
}

// RFC 3339 with up to 6 fraction digits, in µs (BigInt: µs pass 2^53)
function micros(s) {
    const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6})\d*)?(Z|[+-]\d\d:\d\d)$/.exec(s || '');
    if (!m) return null;
    const ms = Date.parse(m[1] + (m[3] === 'Z' ? 'Z' : m[3]));
    return BigInt(ms) * 1000n + BigInt((m[2] || '').padEnd(6, '0'));
}

const tag = `ics${process.pid}`;
const user = `ics-user-${process.pid}`;
const HOUR = 3600 * 1000;
const base = (Math.floor(Date.now() / HOUR) + 48) * HOUR;
const iso = (ms) => new Date(ms).toISOString();
const tricky = 'Kalibrierung, Teil 2; Spiegel\\Blende\nzweite Zeile\r\ndritte: é€😀 日本語のテキスト, ' +
    'and a long tail so that the line is folded more than once: ' + 'ü'.repeat(40) + ' end';

async function book(devices, type, atH, hours, reason) {
    const r = await call('POST', '/api/reservations', {
        device_names: devices, lock_type: type, user_id: user,
        start: iso(base + atH * HOUR), end: iso(base + (atH + hours) * HOUR), reason,
    });
    check(`book ${devices.join('+')} ${type} (201)`, r.status === 201 && r.json && r.json.reservation,
          `${r.status} ${r.text.slice(0, 200)}`);
    return r.json && r.json.reservation;
}

// The feed's physical lines: CRLF ends, <= 75 octets, each valid UTF-8.
function physicalLines(buf) {
    const lines = [];
    let start = 0;
    for (let i = 0; i < buf.length; i++) {
        if (buf[i] === 0x0a) {
            lines.push({bytes: buf.subarray(start, i), crlf: i > start && buf[i - 1] === 0x0d});
            start = i + 1;
        }
    }
    return {lines, tail: buf.length - start};
}

function checkForm(name, buf) {
    const {lines, tail} = physicalLines(buf);
    const noCr = lines.filter(l => !l.crlf);
    check(`${name}: every line ends in CRLF`, noCr.length === 0 && tail === 0, `${noCr.length} without CR, ${tail} octets after the last`);
    const content = lines.map(l => l.crlf ? l.bytes.subarray(0, l.bytes.length - 1) : l.bytes);
    const long = content.filter(b => b.length > 75);
    check(`${name}: no line longer than 75 octets`, long.length === 0, long.map(b => b.length).join(','));
    const broken = content.filter(b => Buffer.compare(Buffer.from(b.toString('utf8'), 'utf8'), b) !== 0);
    check(`${name}: every physical line is valid UTF-8 (no fold inside a character)`, broken.length === 0,
          broken.map(b => b.toString('hex').slice(-12)).join(' '));
    return content.filter(b => b[0] === 0x20).length;     // continuation lines
}

function parseFeed(name, text) {
    try {
        const comp = new ICAL.Component(ICAL.parse(text));
        check(`${name}: ical.js parses the feed`, comp.name === 'vcalendar');
        check(`${name}: VERSION 2.0, PRODID, METHOD PUBLISH, CALSCALE GREGORIAN`,
              comp.getFirstPropertyValue('version') === '2.0' && !!comp.getFirstPropertyValue('prodid') &&
              comp.getFirstPropertyValue('method') === 'PUBLISH' && comp.getFirstPropertyValue('calscale') === 'GREGORIAN');
        return comp.getAllSubcomponents('vevent');
    } catch (e) {
        check(`${name}: ical.js parses the feed`, false, e.message);
        return [];
    }
}

function roundTrip(name, bookings, vevents) {
    check(`${name}: as many VEVENTs (${vevents.length}) as bookings (${bookings.length})`,
          vevents.length === bookings.length && bookings.length > 0);
    const byUid = new Map(vevents.map(v => [v.getFirstPropertyValue('uid'), v]));
    for (const b of bookings) {
        const uid = `${b.id}-${micros(b.created_at)}@devlock`;
        const v = byUid.get(uid);
        if (!check(`${name}: ${b.id} has the VEVENT ${uid}`, !!v, [...byUid.keys()].join(' ')))
            continue;
        const ev = new ICAL.Event(v);
        const secs = (s) => Number(micros(s) / 1000000n);
        check(`${name}: ${b.id} DTSTART is start in UTC`, ev.startDate.toUnixTime() === secs(b.start) &&
              ev.startDate.zone === ICAL.Timezone.utcTimezone, `${ev.startDate.toString()} vs ${b.start}`);
        check(`${name}: ${b.id} DTEND is end in UTC`, ev.endDate.toUnixTime() === secs(b.end) &&
              ev.endDate.zone === ICAL.Timezone.utcTimezone, `${ev.endDate.toString()} vs ${b.end}`);
        const summary = ev.summary || '';
        check(`${name}: ${b.id} SUMMARY names the devices, the user and the type`,
              b.device_names.every(d => summary.includes(d)) && summary.includes(b.user_id) &&
              summary.includes(b.lock_type), summary);
        const description = ev.description || '';
        // the reason as sent, but for its line breaks: CRLF arrives as \n
        check(`${name}: ${b.id} DESCRIPTION holds the reason and the id`,
              (!b.reason || description.includes(b.reason.replace(/\r\n/g, '\n'))) && description.includes(b.id),
              JSON.stringify(description));
        const want = b.state === 'cancelled' || b.state === 'bumped' ? 'CANCELLED' : 'CONFIRMED';
        check(`${name}: ${b.id} STATUS ${want} (state ${b.state})`, v.getFirstPropertyValue('status') === want,
              v.getFirstPropertyValue('status'));
        check(`${name}: ${b.id} SEQUENCE ${b.sequence}`, ev.sequence === b.sequence, ev.sequence);
        check(`${name}: ${b.id} CATEGORIES ${b.lock_type}`, v.getFirstPropertyValue('categories') === b.lock_type,
              v.getFirstPropertyValue('categories'));
        const created = v.getFirstPropertyValue('created'), modified = v.getFirstPropertyValue('last-modified');
        check(`${name}: ${b.id} CREATED and LAST-MODIFIED`,
              created && created.toUnixTime() === secs(b.created_at) && modified &&
              modified.toUnixTime() === secs(b.updated_at), `${created} ${modified}`);
    }
}

async function compare(name, query) {
    const j = await call('GET', `/api/reservations?${query}&limit=1000`);
    const ics = await call('GET', `/api/reservations.ics?${query}`);
    check(`${name}: GET /api/reservations 200`, j.status === 200 && j.json && Array.isArray(j.json.reservations),
          `${j.status} ${j.text.slice(0, 200)}`);
    check(`${name}: GET /api/reservations.ics 200 text/calendar`, ics.status === 200 && /^text\/calendar/.test(ics.type),
          `${ics.status} ${ics.type}`);
    if (!j.json || !Array.isArray(j.json.reservations) || ics.status !== 200)
        return {folded: 0};
    const folded = checkForm(name, ics.buf);
    roundTrip(name, j.json.reservations, parseFeed(name, ics.text));
    return {folded, bookings: j.json.reservations};
}

(async () => {
    const plain = await book([`${tag}.m1`], 'MANUAL_OPERATOR', 0, 2, 'plain');
    const group = await book([`${tag}.g1`, `${tag}.g2`], 'QUEUE_EXECUTING', 1, 3, tricky);
    const cancelled = await book([`${tag}.c1`], 'MANUAL_OPERATOR', 2, 1, 'to be cancelled');
    const moved = await book([`${tag}.v1`], 'MANUAL_OPERATOR', 3, 1, 'to be moved');
    const low = await book([`${tag}.b1`], 'QUEUE_QUEUED', 4, 2, 'to be bumped');
    const high = await book([`${tag}.b1`], 'MAINTENANCE', 5, 2, 'bumps the low one');
    if (!plain || !group || !cancelled || !moved || !low || !high)
        return finish();
    const del = await call('DELETE', `/api/reservations/${cancelled.id}`);
    check('cancel (200)', del.status === 200, `${del.status} ${del.text.slice(0, 200)}`);
    const patch = await call('PATCH', `/api/reservations/${moved.id}`, {end: iso(base + 3.5 * HOUR)});
    check('move (200)', patch.status === 200, `${patch.status} ${patch.text.slice(0, 200)}`);
    const window = `from=${encodeURIComponent(iso(base - HOUR))}&to=${encodeURIComponent(iso(base + 100 * HOUR))}`;

    const all = await compare('by user', `user=${encodeURIComponent(user)}&${window}`);
    check('by user: the feed folds the long reason (continuation lines)', all.folded > 0, all.folded);
    const states = Object.fromEntries((all.bookings || []).map(b => [b.id, b]));
    check('by user: all six bookings listed', Object.keys(states).length === 6, Object.keys(states).join(' '));
    check('by user: states cancelled, bumped, and sequence 1 after a move',
          states[cancelled.id] && states[cancelled.id].state === 'cancelled' &&
          states[low.id] && states[low.id].state === 'bumped' &&
          states[moved.id] && states[moved.id].sequence === 1,
          JSON.stringify(Object.values(states).map(b => [b.id, b.state, b.sequence])));
    const g = await compare('by device', `device=${encodeURIComponent(`${tag}.g2`)}&${window}`);
    check('by device: only the group booking', g.bookings && g.bookings.length === 1 && g.bookings[0].id === group.id);
    finish();
})().catch(e => { check('no exception', false, e.stack); finish(); });

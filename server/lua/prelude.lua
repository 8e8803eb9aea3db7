-- prelude.lua: shared by every script (prepended at build time).
--
-- Data model. Keys of one device D share the hash slot {D}:
--   dl:{D}:lock    HASH device_name lock_type user_id lock_key acq exp lease
--                       prio fence owner [reason] [plan_uid] [client] [group] [session]
--                       [pending wbroker] [preempt_until preempt_grace preempt_by]
--                       (preempt_*: a graceful-preemption window is open on the
--                        lock: its end (us), grace (ms), and the requester as JSON)
--                       (owner: the token of the broker call that answers the
--                        grant: the request's own, or the retry's that replayed it;
--                        pending: the waiter a hand-over was for, until its broker
--                        (wbroker) has picked the grant up)
--                       (acq/exp: microseconds of Redis TIME; exp 0 = none;
--                        lease in ms, 0 = none; group: JSON array of names)
--   dl:{D}:fence   counter, INCR on every grant: fences never repeat
--   dl:{D}:waitq   ZSET of waiter ids, score = rank (priority, then arrival)
--   dl:{D}:delay   exists while D is in lock-delay after an abnormal end
--   dl:{D}:conf    HASH grace_ms delay_ms (per-device settings, from the catalogue)
-- Global keys (per shard once sharded):
--   dl:held        ZSET score 0: every held device, in name order
--   dl:expiry      ZSET score = Redis-clock us: lease ends (member D) and
--                  other deadlines: '?D' expiry warning, '!D' end of a
--                  graceful-preemption window, '~D' end of lock-delay,
--                  '$S' end of session S's grace period, '^D' check that a
--                  hand-over's grant was picked up (released if its broker died)
--   dl:events      STREAM: dev plan exp [w] j (j = event JSON; exp = the
--                  earliest deadline after this event, for brokers' timers;
--                  w = the waiter a grant was for)
--   dl:waiter:<id> HASH a queued request (broker: whose requester it is;
--                  owner: that call's token); dl:wres:<id> its reply once granted
--                  (id: 'w' and 24 hex digits of the SHA-1 of the call's token,
--                  so the broker can name its keys; a booking's: 'b' .. its id)
--   dl:seq         arrival counter for waiter ranks
--   dl:rid:<user>:<request_id>  idempotency record: reply, or 'W:<waiter>'
--   dl:sess:<S>    SET of devices locked by session S
--   dl:broker:<B>  exists while broker B is alive (its waiters are served)
--   dl:stats       HASH p0..p3: held locks by priority, kept by grant and
--                  end_lock (count_held) so /metrics reads them in O(1);
--                  full = they count every held lock; scan = how far the
--                  one-time count of an older database has got (stats.lua)
-- Every transition changes the state and XADDs its events in the same
-- script: an event exists if and only if its change does.

-- One call's state, set by begin(ARGV, KEYS) before the script's own code
-- runs. Sent with EVAL, the prelude runs on every call and begin follows
-- it; in the Functions library (store.c, "the Functions library" in
-- design.md) the prelude runs once, at FUNCTION LOAD, where Redis 7.0
-- allows neither `math` nor redis.call, and every function calls begin
-- first. So nothing at the top level of the prelude may read a global or
-- keep state of one call: what does is here.
--   S        settings a script receives in ARGV and sets before calling the
--            helpers. The broker appends one argument to every script, its
--            flags (a number: 1 the fence clock is on, 2 strict keys, 4 a
--            test fault: no walk, so nothing asks for the keys it lacks,
--            8 no fast path: acquire, renew and release always take their
--            general path, to compare the two), taken off here so each script
--            sees only its own. S.keys: the call's KEYS as a set ("keys
--            declared" below), made by keyset() when first asked (a fast
--            path never asks). S.qempty: the devices whose queue the keys
--            walk read empty; S.queued: a waiter joined a queue since (then
--            serve asks again).
--   int_memo, iso_memo  the formatting memos of int() and iso() below
--   rcall, rpcall  redis.call and redis.pcall, or with strict keys the
--            same after a check that every key the command names is in KEYS
local floor, S, int_memo, iso_memo, rcall, rpcall, strict_call, strict_pcall

local function begin(argv, keys)
    floor = math.floor
    local flags = tonumber(table.remove(argv)) or 0
    S = {maxlen = nil, delay_ms = 0, grace_ms = 0, last_id = '', deadline = nil,
        fence_clock = flags % 2 == 1, skip_walk = flags % 8 >= 4, fast = flags % 16 < 8, lock_of = {},
        keys = nil, keylist = keys, qempty = {}, queued = false}
    int_memo = {}
    iso_memo = {}
    if flags % 4 >= 2 then
        rcall, rpcall = strict_call, strict_pcall
    else
        rcall, rpcall = redis.call, redis.pcall
    end
end

-- Strict keys (a test mode, DEVLOCK_TEST_STRICT_KEYS=1 at the broker):
-- every key a command names must be one of the call's KEYS, as Redis
-- Cluster requires, else the script fails with "devlock strict keys". Where
-- a command's keys are: the first argument, unless listed (DEL and EXISTS
-- take several, XGROUP and XINFO name a subcommand first, XREADGROUP its
-- streams after STREAMS; TIME and SCAN take none).
-- The call's KEYS as a set (S.keys), made on first use: a set of 16 keys
-- grown one by one cost more than a fast path's whole check of its keys.
local function keyset()
    local ks = S.keys
    if ks then return ks end
    ks = {}
    local list = S.keylist
    for i = 1, #list do ks[list[i]] = true end
    S.keys = ks
    return ks
end

local KEYS_AT = {DEL = 'all', EXISTS = 'all', XGROUP = 2, XINFO = 2, XREADGROUP = 'streams',
    TIME = 0, SCAN = 0}

local function strict_check(cmd, ...)
    local a = {...}
    local at = KEYS_AT[string.upper(cmd)]
    local first, last = 1, 1
    if at == 0 then return end
    if at == 'all' then
        last = #a
    elseif at == 'streams' then
        for i = 1, #a do
            if string.upper(a[i]) == 'STREAMS' then first = i + 1 end
        end
        last = first + (#a - first + 1) / 2 - 1
    elseif at then
        first, last = at, at
    end
    local ks = keyset()
    for i = first, last do
        if not ks[a[i]] then
            error('devlock strict keys: ' .. cmd .. ' of ' .. tostring(a[i]) .. ', not in KEYS')
        end
    end
end

strict_call = function(cmd, ...)
    strict_check(cmd, ...)
    return redis.call(cmd, ...)
end

strict_pcall = function(cmd, ...)
    strict_check(cmd, ...)
    return redis.pcall(cmd, ...)
end


-- Redis turns Lua numbers into arguments with 14 significant digits: pass
-- microsecond times through int() to keep them exact. A transition formats
-- the same few times over and over (now, a lease's end as the lock's exp,
-- its deadline and its event's x): each is formatted once per call.
local function int(n)
    local s = int_memo[n]
    if not s then
        s = string.format('%d', n)
        int_memo[n] = s
    end
    return s
end

-- (x + 0 turns a text that is surely a number into it with one strtod;
-- tonumber takes two, lua_isnumber's and lua_tonumber's: on the hot paths
-- a lock's acq and exp, TIME's answer and the stream's retention go so)
local function now_us()
    local t = rcall('TIME')
    return t[1] * 1000000 + t[2]
end

local function lock_key(dev) return 'dl:{' .. dev .. '}:lock' end
local function fence_key(dev) return 'dl:{' .. dev .. '}:fence' end
local function waitq_key(dev) return 'dl:{' .. dev .. '}:waitq' end
local function delay_key(dev) return 'dl:{' .. dev .. '}:delay' end

-- '00' .. '99' by value, for iso (a constant: no state of a call)
local D2 = {
    [0] = '00', '01', '02', '03', '04', '05', '06', '07', '08', '09', '10', '11', '12', '13', '14',
    '15', '16', '17', '18', '19', '20', '21', '22', '23', '24', '25', '26', '27', '28', '29', '30',
    '31', '32', '33', '34', '35', '36', '37', '38', '39', '40', '41', '42', '43', '44', '45', '46',
    '47', '48', '49', '50', '51', '52', '53', '54', '55', '56', '57', '58', '59', '60', '61', '62',
    '63', '64', '65', '66', '67', '68', '69', '70', '71', '72', '73', '74', '75', '76', '77', '78',
    '79', '80', '81', '82', '83', '84', '85', '86', '87', '88', '89', '90', '91', '92', '93', '94',
    '95', '96', '97', '98', '99'}

-- The civil date of a day number (days since 1970-01-01): year, month,
-- day (Howard Hinnant's civil_from_days). floor(q) is written q - q % 1
-- (the same number: Lua's % is floored, and done by the VM): 16 calls of
-- math.floor were half an instant's cost.
local function civil(days)
    local z = days + 719468
    local era = z / 146097
    era = era - era % 1
    local doe = z - era * 146097
    local q1, q2, q3 = doe / 1460, doe / 36524, doe / 146096
    local yoe = (doe - (q1 - q1 % 1) + (q2 - q2 % 1) - (q3 - q3 % 1)) / 365
    yoe = yoe - yoe % 1
    local y = yoe + era * 400
    q1, q2 = yoe / 4, yoe / 100
    local doy = doe - (365 * yoe + (q1 - q1 % 1) - (q2 - q2 % 1))
    local mp = (5 * doy + 2) / 153
    mp = mp - mp % 1
    q1 = (153 * mp + 2) / 5
    local d = doy - (q1 - q1 % 1) + 1
    local m = mp < 10 and mp + 3 or mp - 9
    if m <= 2 then y = y + 1 end
    return y, m, d
end

-- The last day iso() wrote as "YYYY-MM-DDT": nearly every instant a call
-- formats falls on it, and the date was two thirds of an instant's cost.
-- A cache of a function of its key, not state of a call: whichever call
-- filled it, the text is the same.
local last_day, last_date = nil, nil

-- A transition formats the same instant several times (a grant: its
-- acquired_at, its event's timestamp, the reply's expires_at twice): each
-- instant is formatted once per call. The table (iso_memo, set by begin)
-- lives for one call only.
local function iso(us)
    local memo = iso_memo[us]
    if memo then return memo end
    local s = us / 1000000
    s = s - s % 1
    local frac = us - s * 1000000
    local days = s / 86400
    days = days - days % 1
    local rem = s - days * 86400
    local hh, mm = rem / 3600, rem % 3600 / 60
    hh, mm = hh - hh % 1, mm - mm % 1
    if days ~= last_day or frac % 1 ~= 0 then
        local y, m, d = civil(days)
        if y < 0 or y > 9999 or frac % 1 ~= 0 then
            memo = string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', y, m, d, hh, mm, rem % 60, frac)
            iso_memo[us] = memo
            return memo
        end
        -- two digits at a time from a table: string.format ran one sprintf
        -- per field
        local c = y / 100
        c = c - c % 1
        last_day, last_date = days, D2[c] .. D2[y - c * 100] .. '-' .. D2[m] .. '-' .. D2[d] .. 'T'
    end
    local f2 = frac / 100
    f2 = f2 - f2 % 1
    local f1 = f2 / 100
    f1 = f1 - f1 % 1
    memo = last_date .. D2[hh] .. ':' .. D2[mm] .. ':' .. D2[rem % 60] .. '.' .. D2[f1] .. D2[f2 - f1 * 100] ..
        D2[frac - f2 * 100] .. 'Z'
    iso_memo[us] = memo
    return memo
end

local function jstr(v)
    if v == nil or v == false then return 'null' end
    return cjson.encode(v)
end

local function hload(key)
    local a = rcall('HGETALL', key)
    if #a == 0 then return nil end
    local h = {}
    for i = 1, #a, 2 do h[a[i]] = a[i + 1] end
    return h
end

local function split(s)
    local out = {}
    for d in string.gmatch(s or '', '[^,]+') do out[#out + 1] = d end
    return out
end

local function conf(dev, field, default)
    local v = rcall('HGET', 'dl:{' .. dev .. '}:conf', field)
    if v then return tonumber(v) end
    return tonumber(default)
end

-- lease_s: the lease as last set (renewals without a timeout keep it), so a
-- client can follow a manual extension; preempt: the open window, if any.
local function lock_json(h)
    local exp = h.exp + 0
    local lease = tonumber(h.lease) or 0
    local s = '{"device_name":' .. jstr(h.device_name) ..
        ',"lock_type":' .. jstr(h.lock_type) ..
        ',"user_id":' .. jstr(h.user_id) ..
        ',"lock_key":' .. jstr(h.lock_key) ..
        ',"acquired_at":"' .. iso(h.acq + 0) .. '"' ..
        ',"expires_at":' .. (exp > 0 and ('"' .. iso(exp) .. '"') or 'null') ..
        ',"reason":' .. jstr(h.reason) ..
        ',"plan_uid":' .. jstr(h.plan_uid) ..
        ',"priority":' .. h.prio ..
        ',"fence":' .. h.fence ..
        ',"lease_s":' .. (lease > 0 and tostring(lease / 1000) or 'null') ..
        -- the optional members in the same concatenation: each step of a
        -- longer chain copied the whole text again
        (h.preempt_until and (',"preempt":{"until":"' .. iso(tonumber(h.preempt_until)) .. '","grace_s":' ..
            tostring(tonumber(h.preempt_grace) / 1000) .. ',"requested_by":' .. h.preempt_by .. '}') or '') ..
        (h.rsv and (',"reservation":' .. jstr(h.rsv)) or '') ..
        (h.group and (',"group":' .. h.group) or '') ..
        (h.session and ',"session":true' or '') ..
        (h.client and (',"client":' .. h.client) or '') .. '}'
    S.lock_of[s] = h -- emit's typed fields come from the hash, not the text
    return s
end

-- Every deadline a script adds goes through here (or set_deadlines, which
-- adds a lease's two at once): its events then carry the earliest one
-- ("exp"), so every broker arms its timer for it.
local function add_deadline(at, member)
    local s = int(at)
    rcall('ZADD', 'dl:expiry', s, member)
    if not S.deadline or at < S.deadline then S.deadline = at end
end

local function earliest()
    if S.deadline then return int(S.deadline) end
    return '0'
end

-- The retention of an XADD to dl:events: a positive maxlen keeps that
-- many events, a negative one keeps -maxlen milliseconds of history (now:
-- us, Redis clock). trim_of gives its kind and value (XADD kind '~' value),
-- stream_trim appends the three to args.
local function trim_of(maxlen, now)
    local n = maxlen + 0
    if n > 0 then return 'MAXLEN', maxlen end
    return 'MINID', int(floor(now / 1000) + n)
end

local function stream_trim(args, maxlen, now)
    local kind, value = trim_of(maxlen, now)
    local k = #args
    args[k + 1], args[k + 2], args[k + 3] = kind, '~', value
end

-- Appends an event; returns its stream id. lj: the lock object's JSON text
-- (a lock_json result) or 'null'; rest: more raw JSON members after "lock"
-- (or nil); extra: more after the cause; user: the user_id of an event
-- without a lock (a booking's).
--
-- Besides the event's JSON (j, what clients get), each entry carries its
-- facts as fields, so no reader searches j: a action, u user_id, c cause,
-- t lock_type, f fence, x the lock's expiry (us), lo/ln where the lock object lies in j
-- (byte offset and length); '' when the event has none. dev, plan, exp
-- (the earliest deadline) and w (a served waiter) as before.
local function emit_members(action, dev, plan, lj, rest, now, cause, maxlen, waiter, extra, user)
    local dj = jstr(dev)
    -- one concatenation: each step of a longer chain would copy (and intern)
    -- the whole event text again
    local j = '{"action":"' .. action .. '","device_name":' .. dj .. ',"lock":' .. lj ..
        (rest and (',' .. rest) or '') .. ',"timestamp":"' .. iso(now) .. '"' ..
        (cause and (',"cause":"' .. cause .. '"') or '') .. (extra and (',' .. extra) or '') .. '}'
    local h = S.lock_of[lj]
    local u, t, f, x, lo, ln = user or '', '', '', '', '', ''
    if h then
        local exp = h.exp + 0
        u, t, f = h.user_id or '', h.lock_type or '', tostring(h.fence)
        if exp > 0 then x = int(exp) end
    end
    -- lj starts after the head: its constant parts, the action and the name
    if lj ~= 'null' then lo, ln = int(#'{"action":"","device_name":,"lock":' + #action + #dj), int(#lj) end
    -- the arguments in place, in one call: a table of them, grown one by
    -- one and unpacked, cost more than the XADD itself (stream_trim's rule)
    local tk, tv = trim_of(maxlen, now)
    if waiter then
        S.last_id = rcall('XADD', 'dl:events', tk, '~', tv, '*', 'dev', dev, 'plan', plan or '',
            'exp', earliest(), 'a', action, 'u', u, 'c', cause or '', 't', t, 'f', f, 'x', x, 'lo', lo, 'ln', ln,
            'w', waiter, 'j', j)
    else
        S.last_id = rcall('XADD', 'dl:events', tk, '~', tv, '*', 'dev', dev, 'plan', plan or '',
            'exp', earliest(), 'a', action, 'u', u, 'c', cause or '', 't', t, 'f', f, 'x', x, 'lo', lo, 'ln', ln,
            'j', j)
    end
    return S.last_id
end

-- A lock's event: the lock object as "lock".
local function emit(action, dev, plan, lj, now, cause, maxlen, waiter, extra)
    return emit_members(action, dev, plan, lj, nil, now, cause, maxlen, waiter, extra)
end

local function expired(h, now)
    local exp = h.exp + 0
    return exp > 0 and exp <= now
end

-- Lease end and the expiry warning (at 80 % of the lease).
local function set_deadlines(dev, from, lease)
    if lease > 0 then
        -- add_deadline's work for both in one ZADD; the warning is the earlier
        local warn = from + lease * 800
        rcall('ZADD', 'dl:expiry', int(from + lease * 1000), dev, int(warn), '?' .. dev)
        if not S.deadline or warn < S.deadline then S.deadline = warn end
    else
        rcall('ZREM', 'dl:expiry', dev, '?' .. dev)
    end
end

-- a <= b in byte order (ZRANGEBYLEX's; Lua's own '<' follows the locale)
local function lex_le(a, b)
    for i = 1, math.min(#a, #b) do
        local x, y = string.byte(a, i), string.byte(b, i)
        if x ~= y then return x < y end
    end
    return #a <= #b
end

-- Counts a lock into (delta 1, just after it joined dl:held) or out of (-1,
-- just after it left) the held counters. Until they are full, a device the
-- count (stats.lua) has not reached yet is left to it; with nothing else
-- held when a lock joins (it is dl:held's only member), they start full.
local function count_held(dev, prio, delta)
    -- HGET, not HMGET of both: its answer is no table, and once the
    -- counters are full (nearly always) scan is not needed
    if not rcall('HGET', 'dl:stats', 'full') then
        local scan = rcall('HGET', 'dl:stats', 'scan')
        if scan then
            if not lex_le(dev, scan) then return end
        elseif delta > 0 and rcall('ZCARD', 'dl:held') == 1 then
            rcall('HSET', 'dl:stats', 'full', '1')
        else
            return
        end
    end
    -- as text: a number argument costs Redis a snprintf
    rcall('HINCRBY', 'dl:stats', 'p' .. prio, delta > 0 and '1' or '-1')
end

-- Every change to dl:held goes through these two, so the counters follow.
-- ZADD and ZREM answer whether the device joined or left, which saves the
-- ZSCORE each used to ask first.
-- (Constant arguments of redis.call are written as text, '0' not 0, here
-- and on the other hot paths: Redis turns a number argument into text with
-- snprintf, the same digits at a cost.)
local function held_add(dev, prio)
    if rcall('ZADD', 'dl:held', '0', dev) == 1 then count_held(dev, prio, 1) end
end

local function held_remove(dev, prio)
    if rcall('ZREM', 'dl:held', dev) == 1 then count_held(dev, prio, -1) end
end

local serve, rsv_after_end

-- How a lock whose lease ran out ends: a booking's lock at its window's end
-- is released (cause reservation_end); any other lock expires.
local function lease_end(h)
    if h.rsv_end and tonumber(h.exp) == tonumber(h.rsv_end) then return 'released', 'reservation_end' end
    return 'force_released', 'expired'
end

-- Ends a held lock (release, preemption, expiry, admin, session end): state
-- and event together. Abnormal ends start the device's lock-delay. The
-- device is then handed to its waiters, unless `hold` (a preemption that
-- grants the device itself next).
local function end_lock(h, action, cause, now, maxlen, hold)
    local dev = h.device_name
    rcall('DEL', lock_key(dev))
    held_remove(dev, h.prio)
    rcall('ZREM', 'dl:expiry', dev, '?' .. dev, '!' .. dev)
    h.preempt_until = nil
    if h.session then rcall('SREM', 'dl:sess:' .. h.session, dev) end
    local delayed = false
    if cause == 'expired' or cause == 'session_lost' then
        local delay = conf(dev, 'delay_ms', S.delay_ms)
        if delay > 0 then
            rcall('SET', delay_key(dev), '1', 'PX', delay)
            add_deadline(now + delay * 1000, '~' .. dev)
            delayed = true
        end
    end
    local id = emit(action, dev, h.plan_uid, lock_json(h), now, cause, maxlen)
    if h.rsv then rsv_after_end(h, action, cause, now, maxlen) end
    if not hold then
        if h.rsv then
            -- D's lock is gone unless a booking's end (rsv_after_end) served it
            serve(dev, now, maxlen)
        else
            -- D's lock-delay is known too: just started, or none (a held
            -- device is never in one: nothing is granted during a lock-delay,
            -- and a preemption takes a device that was held)
            serve(dev, now, maxlen, true, delayed)
        end
    end
    return id
end

-- A preempted lock ends its whole group (no plan is left half-locked): the
-- other devices of the group that are not being taken over are released
-- with the same cause and handed to their waiters.
local function end_group_rest(h, taking, cause, now, maxlen)
    if not h.group then return end
    for _, d in ipairs(cjson.decode(h.group)) do
        if d ~= h.device_name and not taking[d] then
            local x = hload(lock_key(d))
            if x and x.lock_key == h.lock_key then end_lock(x, 'force_released', cause, now, maxlen) end
        end
    end
end

-- D's lock, ending it first if its lease has run out (so a request never
-- sees or is refused by a lock the expiry timer has not reached yet). pre:
-- the lock as the keys walk read it (false: none) when nothing has been
-- written since, else nil: it is read now.
local function live_lock(dev, now, maxlen, pre)
    local h = pre
    if pre == nil then h = hload(lock_key(dev)) elseif pre == false then h = nil end
    if h and expired(h, now) then
        local action, cause = lease_end(h)
        end_lock(h, action, cause, now, maxlen)
        return hload(lock_key(dev)) -- a waiter may have been served
    end
    return h
end

local function in_delay(dev)
    return rcall('EXISTS', delay_key(dev)) == 1
end

local function nz(v)
    if v == '' or v == false then return nil end
    return v
end

-- The lock's fields grant() writes only when set (not false, nil or '').
local GRANT_MAYBE = {'lock_key', 'owner', 'lock_type', 'user_id', 'lease', 'prio', 'reason', 'plan_uid', 'client', 'group',
    'session', 'pending', 'wbroker', 'rsv', 'rsv_end'}

-- Grants D to request r (a table of the request's fields). Returns the lock.
local function grant(dev, r, now, maxlen, group, waiter)
    local fence = rcall('INCR', fence_key(dev))
    if S.fence_clock then
        -- never below the Redis clock in ms: a failover that lost the last
        -- INCRs cannot hand out an old fence again (failover takes seconds)
        local floor_ms = floor(now / 1000)
        if fence < floor_ms then
            fence = floor_ms
            rcall('SET', fence_key(dev), int(fence))
        end
    end
    -- as text from here on (the same digits): the hash, the lock object and
    -- the event's f each took a number-to-text conversion of it
    fence = int(fence)
    local lease = tonumber(r.lease)
    local exp = 0
    if lease > 0 then exp = now + lease * 1000 end
    -- a booking's lock: its lease ends exactly at the window's end
    if r.rsv_end then exp = tonumber(r.rsv_end) end
    local pending, wbroker = nil, nil
    if waiter then pending, wbroker = waiter, nz(r.broker) end
    local h = {device_name = dev, lock_type = r.lock_type, user_id = r.user_id,
        lock_key = r.lock_key, acq = int(now), exp = int(exp), lease = r.lease, prio = r.prio,
        fence = fence, owner = nz(r.owner) or r.lock_key, reason = nz(r.reason), plan_uid = nz(r.plan_uid), client = nz(r.client),
        group = nz(group), session = nz(r.session), pending = pending, wbroker = wbroker,
        rsv = r.rsv_end and r.rsv, rsv_end = r.rsv_end}
    -- the fields never empty in one constructor, then those that may be
    -- (GRANT_MAYBE): a walk over h with pairs and an array grown from
    -- empty cost more
    local fields = {'device_name', dev, 'acq', h.acq, 'exp', h.exp, 'fence', fence}
    local n = 8
    for i = 1, #GRANT_MAYBE do
        local k = GRANT_MAYBE[i]
        local v = h[k]
        if v and v ~= '' then
            fields[n + 1], fields[n + 2] = k, v
            n = n + 2
        end
    end
    rcall('HSET', lock_key(dev), unpack(fields, 1, n))
    held_add(dev, r.prio)
    if r.rsv_end then
        add_deadline(exp, dev)
        add_deadline(now + floor((exp - now) * 0.8), '?' .. dev)
    else
        set_deadlines(dev, now, lease)
    end
    -- a hand-over is picked up by the waiter's broker; if that broker dies
    -- first, nobody would ever answer (or release) this grant
    if wbroker then add_deadline(now + 3000000, '^' .. dev) end
    if h.session then rcall('SADD', 'dl:sess:' .. h.session, dev) end
    -- json: the lock object as granted, which the reply (granted_body) and a
    -- booking's start event (rsv_granted) show again: encoded once. Set after
    -- the HSET above, so it is no field of the hash.
    h.json = lock_json(h)
    h.id = emit('acquired', dev, h.plan_uid, h.json, now, nil, maxlen, waiter)
    return h
end

-- The devices named in a grant's reply body, and its lock_key (nil if the
-- body is not a grant).
local function grant_devices(body)
    local ok, b = pcall(cjson.decode, body)
    if not ok or type(b) ~= 'table' or b.success ~= true or type(b.lock_key) ~= 'string' then return nil end
    local names = {}
    if type(b.locks) == 'table' then
        for i, l in ipairs(b.locks) do names[i] = type(l) == 'table' and l.device_name end
    elseif type(b.lock) == 'table' then
        names[1] = b.lock.device_name
    end
    for _, d in ipairs(names) do if type(d) ~= 'string' then return nil end end
    if #names == 0 then return nil end
    return names, b.lock_key
end

-- A grant's reply is being delivered (to its waiter's broker, or to a
-- retry): it is picked up, so no longer released when a broker dies.
local function picked_up(names, key)
    for _, d in ipairs(names) do
        local h = rcall('HMGET', lock_key(d), 'lock_key', 'pending')
        if h[1] == key and h[2] then rcall('HDEL', lock_key(d), 'pending') end
    end
end

-- The reply to a granted request (one device or a group).
local function granted_body(locks, preempted)
    local first = locks[1]
    if #locks == 1 then
        -- one device, the common case: the same text in one concatenation,
        -- without the tables and the fences a group's answer has
        local exp = first.exp + 0
        return '{"success":true,"lock_key":' .. jstr(first.lock_key) ..
            ',"message":' .. jstr('Lock acquired for ' .. first.device_name) ..
            ',"expires_at":' .. (exp > 0 and ('"' .. iso(exp) .. '"') or 'null') ..
            ',"fence":' .. first.fence .. ',"lock":' .. first.json ..
            (#preempted > 0 and (',"preempted":' .. preempted[1]) or '') .. '}'
    end
    local names, ls, fences = {}, {}, {}
    for i, h in ipairs(locks) do
        names[i] = h.device_name
        ls[i] = h.json -- the grant's own (grant(), unchanged since)
        fences[i] = jstr(h.device_name) .. ':' .. h.fence
    end
    local exp = tonumber(first.exp)
    local b = '{"success":true,"lock_key":' .. jstr(first.lock_key) ..
        ',"message":' .. jstr('Locks acquired for ' .. table.concat(names, ', ')) ..
        ',"expires_at":' .. (exp > 0 and ('"' .. iso(exp) .. '"') or 'null') ..
        ',"fence":' .. first.fence .. ',"lock":' .. ls[1] ..
        ',"locks":[' .. table.concat(ls, ',') .. '],"fences":{' .. table.concat(fences, ',') .. '}'
    if #preempted > 0 then b = b .. ',"preempted":[' .. table.concat(preempted, ',') .. ']' end
    return b .. '}'
end

local function denied_body(dev, holder_json, why)
    return '{"success":false,"lock_key":null,"message":' .. jstr(why) ..
        ',"expires_at":null,"fence":null' ..
        (holder_json and (',"holder":' .. holder_json) or '') .. '}'
end

local function waiter_alive(w, now)
    if tonumber(w.deadline) <= now then return false end
    if w.broker and w.broker ~= '' and rcall('EXISTS', 'dl:broker:' .. w.broker) == 0 then
        return false
    end
    return true
end

-- ---- queue facts --------------------------------------------------------------
-- Waiters enter the device queues only through waiter_add and leave them
-- only through drop_waiter; waiter_move and waiter_refresh change what a
-- read shows of one. Each appends a queue fact to dl:events: an internal
-- entry, without "j", that only the brokers' read copies (mirror.c) apply;
-- every public reader (events.c's consumers, events.lua, resume.lua,
-- webhooks) skips entries without "j" (docs/design.md "Queue facts").
--   q '+' id d (devices) s (rank) u t p (priority) at (queued, us)
--         dl (deadline, us) pl (plan_uid) b (broker) r (its idempotency
--         key) ss (session) exp
--         the waiter as device.lua shows it; it replaces any earlier one
--   q '-' id d (the queues it left) exp
--   q 'L' dev x l: a lock whose text changed without an event (lock_fact)
-- dl:bwait:<B>  SET the waiters whose requester is on broker B: a broker
--               that reaps B's sessions drops them too (session.lua), so
--               the copies learn that B's waiters are gone.
local function queue_fact(fields)
    local args = {'XADD', 'dl:events'}
    -- a script that was not given the stream's retention (session.lua's
    -- reap) leaves trimming to the next event's XADD
    if S.maxlen then stream_trim(args, S.maxlen, now_us()) end
    args[#args + 1] = '*'
    for _, v in ipairs(fields) do args[#args + 1] = v end
    args[#args + 1] = 'exp'
    args[#args + 1] = earliest()
    S.last_id = rcall(unpack(args))
end

-- A lock's hash changed in what lock_json shows without an event (a
-- graceful-preemption window closed, a booking's mark dropped): the copies
-- get the lock again, as an internal entry: q 'L' dev x l (the lock object).
local function lock_fact(h)
    local exp = tonumber(h.exp)
    queue_fact({'q', 'L', 'dev', h.device_name, 'x', exp > 0 and int(exp) or '', 'l', lock_json(h)})
end

local function waiter_fact(wid, w, score)
    queue_fact({'q', '+', 'id', wid, 'd', w.devices, 's', score, 'u', w.user_id or '',
        't', w.lock_type or '', 'p', w.prio or '0', 'at', w.queued or '0', 'dl', w.deadline or '0',
        'pl', w.plan_uid or '', 'b', w.broker or '', 'r', w.rid or '', 'ss', w.session or ''})
end

-- Queues waiter wid on its devices at rank score (text); w: its hash
-- fields (strings), kept ttl_ms.
local function waiter_add(wid, w, score, ttl_ms)
    local f = {}
    for k, v in pairs(w) do
        f[#f + 1] = k
        f[#f + 1] = v
    end
    rcall('HSET', 'dl:waiter:' .. wid, unpack(f))
    rcall('PEXPIRE', 'dl:waiter:' .. wid, ttl_ms)
    for _, d in ipairs(split(w.devices)) do rcall('ZADD', waitq_key(d), score, wid) end
    S.queued = true -- the walk's empty queues may not be empty now (serve)
    if w.broker ~= '' then
        rcall('SADD', 'dl:bwait:' .. w.broker, wid)
        rcall('SADD', 'dl:sessbrokers', w.broker)
    end
    waiter_fact(wid, w, score)
end

local function waiter_score(wid, w)
    local d = split(w.devices)[1]
    return d and rcall('ZSCORE', waitq_key(d), wid)
end

-- A retry on broker `broker` takes waiter wid over (owner: its token).
local function waiter_move(wid, w, broker, owner)
    rcall('HSET', 'dl:waiter:' .. wid, 'owner', owner, 'broker', broker)
    if w.broker == broker then return end
    if w.broker and w.broker ~= '' then rcall('SREM', 'dl:bwait:' .. w.broker, wid) end
    w.broker = broker
    if broker ~= '' then
        rcall('SADD', 'dl:bwait:' .. broker, wid)
        rcall('SADD', 'dl:sessbrokers', broker)
    end
    local score = waiter_score(wid, w)
    if score then waiter_fact(wid, w, score) end
end

-- Waiter wid's hash changed (w: as it is now): the copies follow.
local function waiter_refresh(wid, w)
    local score = waiter_score(wid, w)
    if score then waiter_fact(wid, w, score) end
end

-- Removes a waiter from its queues (from dev's at least, when its hash is
-- already gone) and deletes it.
local function drop_waiter(wid, w, dev)
    local left = {}
    if w then
        for _, d in ipairs(split(w.devices)) do
            if rcall('ZREM', waitq_key(d), wid) == 1 then left[#left + 1] = d end
        end
        if w.broker and w.broker ~= '' then rcall('SREM', 'dl:bwait:' .. w.broker, wid) end
    end
    if dev and rcall('ZREM', waitq_key(dev), wid) == 1 then left[#left + 1] = dev end
    rcall('DEL', 'dl:waiter:' .. wid)
    if #left > 0 then queue_fact({'q', '-', 'id', wid, 'd', table.concat(left, ',')}) end
end

local window_blocks, rsv_granted

-- Hands D to its waiters: the best-ranked live waiter gets it when every
-- device it asked for is free, out of lock-delay, and has it as the
-- best-ranked waiter too. Ranks are global (priority, then arrival), so
-- overlapping groups always agree on who goes first: no deadlock.
-- Returns what it found when it stopped without granting, if that was D
-- itself: 'delay' (D free but in lock-delay) or 'idle' (D free, out of
-- lock-delay, nobody waiting), so a caller need not ask Redis again.
-- gone: the caller knows D has no lock (it has just ended or looked), which
-- saves asking; delayed (true or false, nil = ask): it knows whether D is in
-- lock-delay. D's lock and lock-delay are asked once: dropping dead
-- waiters (the only thing the loop does before it returns) changes neither.
serve = function(dev, now, maxlen, gone, delayed)
    if not gone and rcall('EXISTS', lock_key(dev)) == 1 then return end
    if delayed == nil then delayed = in_delay(dev) end
    if delayed then return 'delay' end
    -- the keys walk found D's queue empty, and no waiter joined a queue
    -- since (waiter_add is the only writer of one): nobody to ask for
    if S.qempty[dev] and not S.queued then return 'idle' end
    for _ = 1, 64 do
        local top = rcall('ZRANGE', waitq_key(dev), '0', '0')
        if #top == 0 then return 'idle' end
        local wid = top[1]
        local w = hload('dl:waiter:' .. wid)
        if not w or not waiter_alive(w, now) then
            -- past its deadline, its broker dead, or its hash expired
            drop_waiter(wid, w, dev)
        else
            local devs = split(w.devices)
            for _, d in ipairs(devs) do
                if d ~= dev then
                    if rcall('EXISTS', lock_key(d)) == 1 or in_delay(d) then return end
                    local t = rcall('ZRANGE', waitq_key(d), '0', '0')
                    if t[1] ~= wid then return end
                end
                -- inside another user's booking of equal or higher priority:
                -- served after the window
                if window_blocks(d, w.prio, w.user_id, nz(w.rsv), now) then return end
            end
            local group = false
            if #devs > 1 then group = cjson.encode(devs) end
            local locks = {}
            drop_waiter(wid, w)
            if nz(w.rsv) then
                -- a booking's turn: its lock, with the lease to the window's end
                w.rsv_end = w.deadline
                w.lease = int(math.max(1, math.ceil((tonumber(w.deadline) - now) / 1000)))
                for i, d in ipairs(devs) do locks[i] = grant(d, w, now, maxlen, group, nil) end
                rsv_granted(w.rsv, locks, now, maxlen)
                return
            end
            for i, d in ipairs(devs) do locks[i] = grant(d, w, now, maxlen, group, wid) end
            local body = granted_body(locks, {})
            rcall('SET', 'dl:wres:' .. wid, body, 'PX', '120000')
            if w.rid and w.rid ~= '' then
                rcall('SET', w.rid, body, 'PX', math.max(tonumber(w.lease), 300000))
            end
            return
        end
    end
end

-- Optional string arguments arrive as '' (absent) or '=' .. value.
local function opt(v)
    if v == nil or v == '' then return nil end
    return string.sub(v, 2)
end

-- ---- bookings (docs/reservations.md) -----------------------------------------
--   dl:rsv:<id>   HASH id devices lock_type prio user_id lock_key start end
--                      reason plan_uid state cause bumped_by created updated
--                      seq waiter keep held (keep: ms kept after the end once
--                      finished; held: '1' once it has had its devices)
--   dl:{D}:rsv    ZSET D's live bookings (booked, waiting, active), score =
--                 start; they never overlap
--   dl:rsv:byend  ZSET every kept booking, score = end
-- A booking's deadlines in dl:expiry: '@<id>' its start, '%<id>' its end.

local RANK = 1099511627776 -- 2^40: a waiter's rank = priority * RANK + arrival
local LIVE = {booked = true, waiting = true, active = true}

local function rsv_key(id) return 'dl:rsv:' .. id end
local function rsv_dev_key(dev) return 'dl:{' .. dev .. '}:rsv' end

-- The booking object (user_id before lock_key: frames are redacted by it).
local function rsv_json(b)
    local names = {}
    for i, d in ipairs(split(b.devices)) do names[i] = jstr(d) end
    return '{"id":' .. jstr(b.id) .. ',"device_names":[' .. table.concat(names, ',') .. ']' ..
        ',"lock_type":' .. jstr(b.lock_type) .. ',"priority":' .. b.prio ..
        ',"user_id":' .. jstr(b.user_id) .. ',"lock_key":' .. jstr(b.lock_key) ..
        ',"start":"' .. iso(tonumber(b.start)) .. '","end":"' .. iso(tonumber(b['end'])) .. '"' ..
        ',"reason":' .. jstr(nz(b.reason)) .. ',"plan_uid":' .. jstr(nz(b.plan_uid)) ..
        ',"state":"' .. b.state .. '","cause":' .. jstr(nz(b.cause)) ..
        ',"bumped_by":' .. jstr(nz(b.bumped_by)) ..
        ',"created_at":"' .. iso(tonumber(b.created)) .. '","updated_at":"' .. iso(tonumber(b.updated)) .. '"' ..
        ',"sequence":' .. (nz(b.seq) or '0') .. '}'
end

-- One event per device of the booking; locks: the booking's lock per device
-- (reservation_started), else "lock" is null.
local function rsv_emit(action, b, now, maxlen, cause, extra, locks)
    local rj = rsv_json(b)
    for _, d in ipairs(split(b.devices)) do
        local lj = 'null'
        if locks and locks[d] then lj = locks[d].json or lock_json(locks[d]) end
        emit_members(action, d, nz(b.plan_uid), lj, '"reservation":' .. rj, now, cause, maxlen, nil,
            extra, b.user_id)
    end
end

local function rsv_save(b, now, ...)
    b.updated = int(now)
    local f = {'updated', b.updated}
    for _, k in ipairs({...}) do
        f[#f + 1] = k
        f[#f + 1] = b[k] or ''
    end
    rcall('HSET', rsv_key(b.id), unpack(f))
end

-- The live booking in force on D at now, if any.
local function window_in_force(dev, now)
    local top = rcall('ZREVRANGEBYSCORE', rsv_dev_key(dev), int(now), '-inf', 'LIMIT', '0', '1')
    if #top == 0 then return nil end
    local b = hload(rsv_key(top[1]))
    if not b or not LIVE[b.state] or tonumber(b['end']) <= now then return nil end
    return b
end

-- The booking whose window makes D refuse a request of priority prio by
-- user (rsv: the request's own booking, never refused by itself).
window_blocks = function(dev, prio, user, rsv, now)
    local b = window_in_force(dev, now)
    if b and b.id ~= rsv and b.user_id ~= user and tonumber(b.prio) <= tonumber(prio) then return b end
    return nil
end

local function window_message(dev, b)
    return 'Device ' .. dev .. ' is reserved by booking ' .. b.id .. ' (' .. b.user_id .. ', ' ..
        b.lock_type .. ') until ' .. iso(tonumber(b['end']))
end

-- Takes a booking off its devices and deadlines for good (ended, cancelled,
-- bumped): kept for its history time after its end, then dropped. Waiters
-- its window held back are served.
local function rsv_finish(b, state, cause, now, maxlen, extra)
    for _, d in ipairs(split(b.devices)) do rcall('ZREM', rsv_dev_key(d), b.id) end
    rcall('ZREM', 'dl:expiry', '@' .. b.id, '%' .. b.id)
    if nz(b.waiter) then drop_waiter(b.waiter, hload('dl:waiter:' .. b.waiter)) end
    b.state, b.cause, b.waiter = state, cause, ''
    if state ~= 'ended' then b.seq = int(tonumber(nz(b.seq) or 0) + 1) end
    rsv_save(b, now, 'state', 'cause', 'waiter', 'seq', 'bumped_by')
    local keep = tonumber(nz(b.keep) or 0)
    local until_ms = floor(math.max(tonumber(b['end']), now) / 1000) + keep
    rcall('PEXPIREAT', rsv_key(b.id), int(until_ms))
    rsv_emit('reservation_' .. state, b, now, maxlen, cause, extra)
    for _, d in ipairs(split(b.devices)) do serve(d, now, maxlen) end
end

-- Puts a booking whose window has started at the head of its devices'
-- queues (ahead of every waiter of its priority), waiting until its end.
local function rsv_enqueue(b, now)
    local wid = 'b' .. b.id
    waiter_add(wid, {devices = b.devices, lock_type = b.lock_type,
        prio = b.prio, user_id = b.user_id, lock_key = b.lock_key, owner = b.lock_key, lease = '0',
        deadline = b['end'], broker = '', rid = '', queued = int(now),
        reason = b.reason or '', plan_uid = b.plan_uid or '', client = '', session = '', rsv = b.id},
        int(tonumber(b.prio) * RANK), floor((tonumber(b['end']) - now) / 1000) + 60000)
    b.state, b.waiter = 'waiting', wid
    rsv_save(b, now, 'state', 'waiter')
end

-- serve() granted a booking its devices.
rsv_granted = function(id, locks, now, maxlen)
    local b = hload(rsv_key(id))
    if not b then return end
    b.state, b.waiter, b.cause, b.held = 'active', '', '', '1'
    rsv_save(b, now, 'state', 'waiter', 'cause', 'held')
    local by = {}
    for _, h in ipairs(locks) do by[h.device_name] = h end
    rsv_emit('reservation_started', b, now, maxlen, nil, nil, by)
end

-- A booking's lock ended (end_lock, force_release). Preempted during its
-- window: it waits for its devices again; ended by its window (the caller
-- finishes it) or by its cancel: nothing here; any other end (released,
-- expired, admin, session lost) ends the booking.
rsv_after_end = function(h, action, cause, now, maxlen)
    local b = hload(rsv_key(h.rsv))
    if not b or b.state ~= 'active' or b.lock_key ~= h.lock_key then return end
    if cause == 'reservation_cancelled' or S.rsv_ending == b.id then return end
    if cause == 'preempted' and tonumber(b['end']) > now then
        rsv_enqueue(b, now)
        rsv_emit('reservation_waiting', b, now, maxlen, 'preempted')
        return
    end
    if cause == 'admin' then cause = 'force_released' end
    rsv_finish(b, 'ended', cause or action, now, maxlen)
end

-- Warns a holder that a request of higher priority waits for its device
-- (graceful preemption): the window ends at now + grace ms, when
-- expire.lua preempts it if the request still waits. A window already open
-- stays as the holder was told.
local function ask_preempt(h, grace, requester, now, maxlen)
    if rcall('ZSCORE', 'dl:expiry', '!' .. h.device_name) then return end
    add_deadline(now + grace * 1000, '!' .. h.device_name)
    -- the lock carries its window (lock_json "preempt") until it ends or the
    -- window closes, so renew and validate answers tell the holder too
    h.preempt_until, h.preempt_grace, h.preempt_by = int(now + grace * 1000), grace, requester
    rcall('HSET', lock_key(h.device_name), 'preempt_until', h.preempt_until,
        'preempt_grace', grace, 'preempt_by', requester)
    emit('preempt_requested', h.device_name, h.plan_uid, lock_json(h), now, nil, maxlen, nil,
        '"grace_s":' .. (grace / 1000) .. ',"requested_by":' .. requester)
end

-- A booking's window starts: it queues at the head of its devices' queues;
-- holders of lower priority are preempted (or warned first, with a grace),
-- as an acquire would; the devices that are free are granted at once.
local function rsv_start(b, now, maxlen, grace_default)
    if b.state ~= 'booked' then return end
    if tonumber(b['end']) <= now then
        rsv_finish(b, 'ended', 'missed', now, maxlen)
        return
    end
    rsv_enqueue(b, now)
    local prio = tonumber(b.prio)
    local requester = '{"user_id":' .. jstr(b.user_id) .. ',"lock_type":' .. jstr(b.lock_type) ..
        ',"priority":' .. b.prio .. ',"reservation":' .. jstr(b.id) .. '}'
    local taking, preempt = {}, {}
    for _, d in ipairs(split(b.devices)) do
        taking[d] = true
        local h = live_lock(d, now, maxlen)
        if h and prio < tonumber(h.prio) then preempt[#preempt + 1] = h end
    end
    for _, h in ipairs(preempt) do
        local grace = 0
        if prio > 0 then grace = conf(h.device_name, 'grace_ms', grace_default) end
        if grace > 0 then
            ask_preempt(h, grace, requester, now, maxlen)
        elseif rcall('EXISTS', lock_key(h.device_name)) == 1 then
            end_lock(h, 'force_released', 'preempted', now, maxlen, true)
            end_group_rest(h, taking, 'preempted', now, maxlen)
        end
    end
    for _, d in ipairs(split(b.devices)) do serve(d, now, maxlen) end
    b = hload(rsv_key(b.id))
    if b and b.state == 'waiting' then rsv_emit('reservation_waiting', b, now, maxlen, nil) end
end

-- ---- keys declared (docs/design.md "Keys declared") ---------------------------
-- Every key a script touches is one of its KEYS, as Redis Cluster requires.
-- The broker sends the keys it can name from the call (store/keys.c): the
-- global ones, the request's devices', its own. The others follow from the
-- data (a queue's waiters and their devices, a holder's session and group,
-- a booking's devices), so before its first write every script walks them
-- here from what Redis holds now, reading only keys it was given, and when
-- one is missing it writes nothing and answers
--   {{ok = 'NEEDKEYS'}, key...}
-- with the names it lacks: the broker resends the call with them (a few
-- rounds at most: each round reaches one step further). Nothing was
-- written, so a resend cannot do anything twice.
--
-- The walk is a superset of what the transition touches:
--   full(D)    D's lock may end here and D be handed on (serve): D's keys,
--              its holder's session, group (full) and booking (full), the
--              broker a hand-over waits for, and D's queue from its head to
--              its first live waiter (serve stops there), each waiter with
--              its devices (light)
--   maybe(D)   as full, but D's queue only if D has no lock or its lease
--              has run out (a renewal, a wait that ends: D is served only
--              then)
--   asked(D)   as maybe, and D's booking in force: a device an acquire names
--   (full and maybe read no booking in force: serve reads it only of the
--   devices of a waiter it may grant, and those are visited light)
--   light(D)   D is looked at or granted with another device: D's keys and
--              its booking in force
--   waiter(W)  its hash and reply, its request's idempotency key, its
--              session, its broker's keys, its booking; its devices light
--              (or maybe, when the caller ends the wait and serves them)
--   booking(B) its hash and queue entry, its devices (full: its end or
--              start hands them on), and its waiter
-- Strict keys (a test mode) fail any command on a key outside KEYS, so the
-- suites find a walk that misses one.
-- the global keys every call may touch (keys.c's core_keys); the others
-- (dl:brokerlost, dl:rsv:byend, dl:rsv:seq) only the scripts that name them
local GLOBAL_KEYS = {'dl:held', 'dl:expiry', 'dl:events', 'dl:seq', 'dl:stats', 'dl:sessbrokers'}
local DEVICE_KEYS = {'lock', 'fence', 'waitq', 'delay', 'conf', 'rsv'}

-- The walk's functions are made once (at FUNCTION LOAD); a call's walk
-- state is WK, set by keys_walk: now, the keys asked for (asked), those
-- missing from KEYS, and the devices, waiters and bookings still to visit.
local W, WK = {}, nil

-- k is needed: true if it was given (so it may be read)
local function need(k)
    if S.keys[k] then return true end -- nearly always: no note of it is needed
    if not WK.asked[k] then
        WK.asked[k] = true
        WK.missing[#WK.missing + 1] = k
    end
    return false
end
W.need = need

local function push(kind, name)
    local id = kind .. '\0' .. name
    if WK.done[id] then return end
    WK.done[id] = true
    WK.todo[#WK.todo + 1] = {kind, name}
end
function W.full(d) push('full', d) end
function W.maybe(d) push('maybe', d) end
function W.asked(d) push('asked', d) end
function W.light(d) push('light', d) end
function W.waiter(w) push('waiter', w) end
function W.waiter_full(w) push('waiterfull', w) end
function W.booking(b) push('booking', b) end
-- the devices of a stored grant (a reply body), full or light
function W.grant(body, full)
    local names = grant_devices(body)
    for _, d in ipairs(names or {}) do push(full and 'full' or 'light', d) end
end

local function device_keys(d)
    local pre = 'dl:{' .. d .. '}:'
    for i = 1, #DEVICE_KEYS do need(pre .. DEVICE_KEYS[i]) end
end

local function in_force(d)
    local k = 'dl:{' .. d .. '}:rsv'
    if not S.keys[k] then return end
    local top = rcall('ZREVRANGEBYSCORE', k, int(WK.now), '-inf', 'LIMIT', '0', '1')
    if top[1] then need('dl:rsv:' .. top[1]) end
end

local function broker_keys(b)
    if b and b ~= '' then
        need('dl:bwait:' .. b)
        return need('dl:broker:' .. b)
    end
    return true
end

local visit = {}
function visit.light(d)
    device_keys(d)
    in_force(d)
end
-- ending: D's lock ends here (else only if its lease has run out); asked:
-- a request names D, so its booking in force is read too (window_blocks;
-- serve reads it only of a waiter's devices, which are visited light)
local function device(d, ending, asked)
    local now = WK.now
    device_keys(d)
    local lk, qk, rk = 'dl:{' .. d .. '}:lock', 'dl:{' .. d .. '}:waitq', 'dl:{' .. d .. '}:rsv'
    if asked then
        -- a device with no lock, queue, booking or lock-delay (most): one
        -- call says so, and the acquire need not ask again (W.idle)
        local dk = 'dl:{' .. d .. '}:delay'
        if S.keys[lk] and S.keys[qk] and S.keys[rk] and S.keys[dk] and rcall('EXISTS', lk, qk, rk, dk) == 0 then
            WK.idle[d] = true
            return
        end
        in_force(d)
    end
    local free = true
    if S.keys[lk] then
        -- the whole lock: the script's first read of it is this one (W.lock),
        -- unless the caller read it already (keys_of_lock's loaded)
        local h = WK.lock[d]
        if h == nil then
            h = hload(lk) or false
            WK.lock[d] = h
        end
        if h then
            if h.session then need('dl:sess:' .. h.session) end
            if h.group then
                for _, g in ipairs(cjson.decode(h.group)) do W.full(g) end
            end
            if h.rsv then W.booking(h.rsv) end
            if h.wbroker then broker_keys(h.wbroker) end
            free = tonumber(h.exp) > 0 and tonumber(h.exp) <= now
        end
    end
    if S.keys[qk] and (ending or free) then
        -- serve's own bound: it looks at 64 entries at most, and stops at
        -- the first live one (a waiter not read yet may be dead)
        local q = rcall('ZRANGE', qk, '0', '63')
        if #q == 0 then S.qempty[d] = true end -- serve need not ask again
        for _, wid in ipairs(q) do
            local wk = 'dl:waiter:' .. wid
            W.waiter(wid)
            -- a waiter this call takes off the queue first (W.leaving) is
            -- walked past, as a dead one is
            if S.keys[wk] and not WK.leaving[wid] then
                local w = rcall('HMGET', wk, 'deadline', 'broker')
                if w[1] and tonumber(w[1]) > now then
                    local b = w[2] or ''
                    if b == '' then break end
                    if broker_keys(b) and rcall('EXISTS', 'dl:broker:' .. b) == 1 then break end
                end
            end
        end
    end
end
function visit.full(d) device(d, true) end
function visit.maybe(d) device(d, false) end
function visit.asked(d) device(d, false, true) end
local function waiter(wid, devs_maybe)
    local wk = 'dl:waiter:' .. wid
    need('dl:wres:' .. wid)
    if not need(wk) then return end
    local w = rcall('HMGET', wk, 'devices', 'broker', 'rid', 'session', 'rsv')
    for _, d in ipairs(split(w[1])) do
        if devs_maybe then W.maybe(d) else W.light(d) end
    end
    broker_keys(w[2])
    if w[3] and w[3] ~= '' then need(w[3]) end
    if w[4] and w[4] ~= '' then need('dl:sess:' .. w[4]) end
    if w[5] and w[5] ~= '' then W.booking(w[5]) end
end
function visit.waiter(wid) waiter(wid, false) end
function visit.waiterfull(wid) waiter(wid, true) end
function visit.booking(id)
    local bk = 'dl:rsv:' .. id
    need('dl:waiter:b' .. id)
    need('dl:wres:b' .. id)
    if not need(bk) then return end
    local b = rcall('HMGET', bk, 'devices', 'waiter')
    -- ending or bumped, the booking leaves its queues first (rsv_finish)
    if b[2] and b[2] ~= '' then W.leaving(b[2]) end
    for _, d in ipairs(split(b[1])) do W.full(d) end
    if b[2] and b[2] ~= '' then W.waiter(b[2]) end
end

-- nil when every key the call may touch is in KEYS, else the NEEDKEYS
-- answer
function W.finish()
    if S.skip_walk then return nil end -- the self-test of strict keys
    for i = 1, #GLOBAL_KEYS do
        local k = GLOBAL_KEYS[i]
        if not S.keys[k] and not WK.asked[k] then WK.missing[#WK.missing + 1] = k end
    end
    local todo, i = WK.todo, 1
    while todo[i] do
        visit[todo[i][1]](todo[i][2])
        i = i + 1
    end
    if #WK.missing == 0 then return nil end
    local out = {{ok = 'NEEDKEYS'}}
    for j, k in ipairs(WK.missing) do out[j + 1] = k end
    return out
end

-- What the walk found, for the script's first reads (only while nothing
-- has been written since): D has no lock, queue, booking or lock-delay
-- (an asked device); D's lock as read (false: none; nil: not read).
-- The bookings of D an overlap check of the window [from, to) reads (a new
-- booking's, a moved one's): walking back from to, up to the first live one
-- that ends by from (D's bookings never overlap, so it ends the search).
-- bump: they may be bumped (visited as bookings), else only read; except:
-- a booking passed over (a moved one, itself).
function W.overlapping(d, from, to, bump, except)
    if not need('dl:{' .. d .. '}:rsv') then return end
    for _, id in ipairs(rcall('ZREVRANGEBYSCORE', 'dl:{' .. d .. '}:rsv', '(' .. int(to), '-inf')) do
        if bump then W.booking(id) end
        if not need('dl:rsv:' .. id) then break end
        local b = rcall('HMGET', 'dl:rsv:' .. id, 'state', 'end')
        if id ~= except and b[1] and LIVE[b[1]] and tonumber(b[2]) <= from then break end
    end
end

function W.idle(d) return WK.idle[d] == true end
-- waiter wid leaves its queues before this call serves them (unwait, a
-- booking's end): the queue walk does not stop at it
function W.leaving(wid) WK.leaving[wid] = true end
function W.lock(d) return WK.lock[d] end

-- A walk from Redis's state at now (us): W, to name its roots, then finish.
local function keys_walk(now)
    keyset()
    WK = {now = now, asked = {}, missing = {}, todo = {}, done = {}, idle = {}, lock = {}, leaving = {}}
    return W
end

-- The walk of a call on one held device (release, renew, force_release):
-- the NEEDKEYS answer, or nil and the lock as the walk read it (live_lock's
-- pre). ending: the lock ends here (full), else only if its lease has run
-- out (maybe). loaded: D's lock as the caller has just read it (false:
-- none), with nothing written since (a fast path that gave up), so the walk
-- need not read it again; nil: not read.
local function keys_of_lock(now, dev, ending, loaded)
    local W = keys_walk(now)
    if loaded ~= nil then WK.lock[dev] = loaded end
    if ending then W.full(dev) else W.maybe(dev) end
    local nk = W.finish()
    if nk then return nk end
    return nil, W.lock(dev)
end

-- ---- fast paths (docs/design.md "Fast paths") --------------------------------
-- The broker names a call on one device with its KEYS in keys.c's order:
-- the global keys (GLOBAL_KEYS), its own two (dl:broker:B, dl:bwait:B),
-- then D's (DEVICE_KEYS). acquire.lua, renew.lua and release.lua first try the
-- common case without the keys walk and its tables: one device whose keys are at
-- those places (compared here, not assumed), and a state the walk would
-- find nothing further in (each path checks its own). Anything else, or
-- flag 8, takes the general path, from the start: a fast path has read at
-- most, never written, when it gives up.
-- Returns D's lock, waitq, delay and rsv keys, or nil.
local function fast_keys(K, dev)
    if not S.fast then return nil end
    for i = 1, #GLOBAL_KEYS do
        if K[i] ~= GLOBAL_KEYS[i] then return nil end
    end
    local pre = 'dl:{' .. dev .. '}:'
    for i = 1, #DEVICE_KEYS do
        if K[8 + i] ~= pre .. DEVICE_KEYS[i] then return nil end
    end
    return K[9], K[11], K[12], K[14]
end

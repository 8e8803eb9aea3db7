-- prelude.lua: shared by every script (prepended at build time).
--
-- Data model, all keys of device D in one hash slot ({D}):
--   dl:{D}:lock   HASH  device_name lock_type user_id lock_key acq exp lease
--                       prio fence [reason] [plan_uid] [client]
--                       (acq/exp in microseconds of Redis TIME; exp 0 = none;
--                        lease in ms, 0 = none)
--   dl:{D}:fence  counter, INCR on every grant: fences never repeat.
-- Global keys (per shard once sharded):
--   dl:held       ZSET score 0, member D: every held device, in name order
--   dl:expiry     ZSET score exp (us), member D: leases that end
--   dl:events     STREAM of events, fields dev plan exp j (j = event JSON)
-- Every transition changes the state and XADDs its event in the same script,
-- so an event exists if and only if the change does.

local function now_us()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Redis turns Lua numbers into arguments with 14 significant digits: pass
-- microsecond times through int() to keep them exact.
local function int(n) return string.format('%d', n) end

local function lock_key(dev) return 'dl:{' .. dev .. '}:lock' end

local floor = math.floor
local function iso(us)
    local s = floor(us / 1000000)
    local frac = us - s * 1000000
    local days = floor(s / 86400)
    local rem = s - days * 86400
    local z = days + 719468
    local era = floor(z / 146097)
    local doe = z - era * 146097
    local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
    local y = yoe + era * 400
    local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
    local mp = floor((5 * doy + 2) / 153)
    local d = doy - floor((153 * mp + 2) / 5) + 1
    local m = mp < 10 and mp + 3 or mp - 9
    if m <= 2 then y = y + 1 end
    return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', y, m, d,
        floor(rem / 3600), floor((rem % 3600) / 60), rem % 60, frac)
end

local function jstr(v)
    if v == nil or v == false then return 'null' end
    return cjson.encode(v)
end

local function hload(key)
    local a = redis.call('HGETALL', key)
    if #a == 0 then return nil end
    local h = {}
    for i = 1, #a, 2 do h[a[i]] = a[i + 1] end
    return h
end

local function lock_json(h)
    local exp = tonumber(h.exp)
    local s = '{"device_name":' .. jstr(h.device_name) ..
        ',"lock_type":' .. jstr(h.lock_type) ..
        ',"user_id":' .. jstr(h.user_id) ..
        ',"lock_key":' .. jstr(h.lock_key) ..
        ',"acquired_at":"' .. iso(tonumber(h.acq)) .. '"' ..
        ',"expires_at":' .. (exp > 0 and ('"' .. iso(exp) .. '"') or 'null') ..
        ',"reason":' .. jstr(h.reason) ..
        ',"plan_uid":' .. jstr(h.plan_uid) ..
        ',"priority":' .. h.prio ..
        ',"fence":' .. h.fence
    if h.client then s = s .. ',"client":' .. h.client end
    return s .. '}'
end

-- Appends an event; returns its stream id.
local function emit(action, h, lj, now, cause, maxlen, exp)
    local j = '{"action":"' .. action .. '","device_name":' .. jstr(h.device_name) ..
        ',"lock":' .. lj .. ',"timestamp":"' .. iso(now) .. '"'
    if cause then j = j .. ',"cause":"' .. cause .. '"' end
    j = j .. '}'
    return redis.call('XADD', 'dl:events', 'MAXLEN', '~', maxlen, '*',
        'dev', h.device_name, 'plan', h.plan_uid or '', 'exp', exp or '0', 'j', j)
end

-- Ends a held lock (release, preemption, expiry): state and event together.
local function end_lock(h, action, cause, now, maxlen)
    redis.call('DEL', lock_key(h.device_name))
    redis.call('ZREM', 'dl:held', h.device_name)
    redis.call('ZREM', 'dl:expiry', h.device_name)
    return emit(action, h, lock_json(h), now, cause, maxlen, '0')
end

local function expired(h, now)
    local exp = tonumber(h.exp)
    return exp > 0 and exp <= now
end

-- Loads D's lock, ending it first if its lease has run out (so a request
-- never sees a lock the expiry timer has not reached yet).
local function live_lock(dev, now, maxlen)
    local h = hload(lock_key(dev))
    if h and expired(h, now) then
        end_lock(h, 'force_released', 'expired', now, maxlen)
        return nil
    end
    return h
end

-- Optional string arguments arrive as '' (absent) or '=' .. value.
local function opt(v)
    if v == nil or v == '' then return nil end
    return string.sub(v, 2)
end

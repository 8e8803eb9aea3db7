-- reserve: books devices for [start, end) (docs/reservations.md). Refused
-- when it overlaps a live booking of equal or higher priority on any of its
-- devices; live bookings of lower priority it overlaps are bumped (on all of
-- their devices). Conflict check, bumps and the booking in one script.
-- ARGV: 1 devices (comma-separated), 2 lock_type, 3 priority, 4 user_id,
--       5 lock_key, 6 start us, 7 end us, 8 reason (opt), 9 plan_uid (opt),
--       10 idempotency key ('' = none), 11 stream maxlen, 12 history ms
-- Returns {'created'|'replay', body} | {'conflict', detail, booking JSON}
--       | {'invalid', detail}, each with the last event id after them
--       | {NEEDKEYS, key...} (prelude "keys declared")
local maxlen = ARGV[11]
S.maxlen = maxlen
local now = now_us()
local rid = ARGV[10]
do -- every key this call may touch is in KEYS (prelude "keys declared")
    local W = keys_walk(now)
    if rid ~= '' then W.need(rid) end
    W.need('dl:rsv:byend')
    -- the booking this call would create (its id is the next of dl:rsv:seq)
    if W.need('dl:rsv:seq') then W.need('dl:rsv:r' .. ((tonumber(rcall('GET', 'dl:rsv:seq')) or 0) + 1)) end
    local from, to = math.max(tonumber(ARGV[6]), now), tonumber(ARGV[7])
    for _, d in ipairs(split(ARGV[1])) do
        W.light(d)
        W.overlapping(d, from, to, true) -- the overlap check below, which may bump
    end
    local nk = W.finish()
    if nk then return nk end
end
-- a retry (same request_id) gets the first answer again, a refusal too
if rid ~= '' then
    local prev = rcall('GET', rid)
    if prev then
        local a = cjson.decode(prev)
        if a[1] == 'created' then a[1] = 'replay' end
        a[#a + 1] = S.last_id
        return a
    end
end
local function refuse(a)
    if rid ~= '' then rcall('SET', rid, cjson.encode(a), 'PX', 300000) end
    a[#a + 1] = S.last_id
    return a
end
local devs = split(ARGV[1])
local prio = tonumber(ARGV[3])
local start, stop = tonumber(ARGV[6]), tonumber(ARGV[7])
if stop <= now then return refuse({'invalid', 'the window must end in the future'}) end
if start < now then start = now end
if stop <= start then return refuse({'invalid', 'end must be after start'}) end

-- overlapping live bookings: refused by an equal or higher one, else bumped
local bump, seen = {}, {}
for _, d in ipairs(devs) do
    if rcall('ZCARD', rsv_dev_key(d)) >= 10000 then
        return refuse({'invalid', d .. ' has 10000 bookings to come already'})
    end
    -- the device's bookings never overlap: walking back from the new end,
    -- the first one that ends at or before the new start ends the search
    local ids = rcall('ZREVRANGEBYSCORE', rsv_dev_key(d), '(' .. int(stop), '-inf')
    for _, id in ipairs(ids) do
        local b = hload(rsv_key(id))
        if b and LIVE[b.state] then
            if tonumber(b['end']) <= start then break end
            if tonumber(b.prio) <= prio then
                return refuse({'conflict', d .. ' is booked by ' .. b.id .. ' (' .. b.user_id .. ', ' .. b.lock_type ..
                    ') from ' .. iso(tonumber(b.start)) .. ' to ' .. iso(tonumber(b['end'])), rsv_json(b)})
            end
            if not seen[id] then
                seen[id] = true
                bump[#bump + 1] = b
            end
        end
    end
end

local id = 'r' .. rcall('INCR', 'dl:rsv:seq')
local bumped = {}
for i, b in ipairs(bump) do
    b.bumped_by = id
    rsv_finish(b, 'bumped', nil, now, maxlen, '"bumped_by":' .. jstr(id))
    bumped[i] = jstr(b.id)
end

local keep = tonumber(ARGV[12])
local b = {id = id, devices = ARGV[1], lock_type = ARGV[2], prio = ARGV[3], user_id = ARGV[4],
    lock_key = ARGV[5], start = int(start), ['end'] = int(stop), reason = opt(ARGV[8]) or '',
    plan_uid = opt(ARGV[9]) or '', state = 'booked', cause = '', bumped_by = '', created = int(now),
    updated = int(now), seq = '0', waiter = '', keep = int(keep)}
local f = {}
for k, v in pairs(b) do
    f[#f + 1] = k
    f[#f + 1] = v
end
rcall('HSET', rsv_key(id), unpack(f))
for _, d in ipairs(devs) do rcall('ZADD', rsv_dev_key(d), int(start), id) end
rcall('ZADD', 'dl:rsv:byend', int(stop), id)
-- finished bookings past their history time are gone (their hashes expired)
rcall('ZREMRANGEBYSCORE', 'dl:rsv:byend', '-inf', '(' .. int(now - keep * 1000))
add_deadline(start, '@' .. id)
add_deadline(stop, '%' .. id)
rsv_emit('reservation_created', b, now, maxlen, nil)
local body = '{"success":true,"reservation":' .. rsv_json(b) .. ',"bumped":[' .. table.concat(bumped, ',') .. ']}'
if rid ~= '' then rcall('SET', rid, cjson.encode({'created', body}), 'PX', 300000) end
return {'created', body, S.last_id}

-- reservation: changes one booking: cancel, or patch (move or extend into
-- free time) (docs/reservations.md).
-- ARGV: 1 mode ('cancel' | 'patch'), 2 id, 3 caller's user_id ('' = anyone),
--       4 admin ('1' | '0'), 5 stream maxlen, 6 start us ('' = unchanged),
--       7 end us ('' = unchanged), 8 reason (opt), 9 plan_uid (opt),
--       10 default lock-delay ms
-- Returns {'ok', body} | {'not_found'} | {'forbidden'} | {'finished', body}
--       | {'conflict', detail, booking JSON} | {'invalid', detail},
--       each with the last event id after them
--       | {NEEDKEYS, key...} (prelude "keys declared")
local mode, id, maxlen = ARGV[1], ARGV[2], ARGV[5]
S.maxlen, S.delay_ms = maxlen, tonumber(ARGV[10])
local now = now_us()
do -- every key this call may touch is in KEYS (prelude "keys declared")
    local W = keys_walk(now)
    W.booking(id)
    W.need('dl:rsv:byend')
    if W.need(rsv_key(id)) and mode == 'patch' then
        -- the bookings the overlap check below reads
        local b = rcall('HMGET', rsv_key(id), 'devices', 'start', 'end')
        if b[1] then
            local from = ARGV[6] ~= '' and tonumber(ARGV[6]) or tonumber(b[2])
            local to = ARGV[7] ~= '' and tonumber(ARGV[7]) or tonumber(b[3])
            -- (a booked window's start may be moved up to now)
            for _, d in ipairs(split(b[1])) do W.overlapping(d, math.min(from, now), to, false, id) end
        end
    end
    local nk = W.finish()
    if nk then return nk end
end
local b = hload(rsv_key(id))
if not b then return {'not_found', S.last_id} end
if ARGV[3] ~= '' and ARGV[4] ~= '1' and b.user_id ~= ARGV[3] then return {'forbidden', S.last_id} end

local function answer()
    return '{"success":true,"reservation":' .. rsv_json(b) .. '}'
end

-- the booking's locks, by device
local function its_locks()
    local out = {}
    for _, d in ipairs(split(b.devices)) do
        local h = hload(lock_key(d))
        if h and h.rsv == b.id and h.lock_key == b.lock_key then out[#out + 1] = h end
    end
    return out
end

if mode == 'cancel' then
    if b.state == 'cancelled' then return {'ok', answer(), S.last_id} end
    if not LIVE[b.state] then return {'finished', rsv_json(b), S.last_id} end
    if b.state == 'active' then
        for _, h in ipairs(its_locks()) do end_lock(h, 'released', 'reservation_cancelled', now, maxlen, true) end
    end
    rsv_finish(b, 'cancelled', nil, now, maxlen)
    return {'ok', answer(), S.last_id}
end

-- patch
if not LIVE[b.state] then return {'finished', rsv_json(b), S.last_id} end
local start, stop = tonumber(b.start), tonumber(b['end'])
local old_stop = stop
if ARGV[6] ~= '' then
    local s = tonumber(ARGV[6])
    if b.state ~= 'booked' and s ~= start then
        return {'invalid', 'the window has started: only its end can change', S.last_id}
    end
    start = s
end
if ARGV[7] ~= '' then stop = tonumber(ARGV[7]) end
if b.state == 'booked' and start < now then start = now end
if stop <= now then return {'invalid', 'the window must end in the future', S.last_id} end
if stop <= start then return {'invalid', 'end must be after start', S.last_id} end
if stop - start > 366 * 86400 * 1000000 then return {'invalid', 'a window lasts at most 366 days', S.last_id} end
if start > now + 10 * 365 * 86400 * 1000000 then return {'invalid', 'a window starts within 10 years', S.last_id} end

-- only into free time: no other live booking of any priority may overlap
for _, d in ipairs(split(b.devices)) do
    local ids = rcall('ZREVRANGEBYSCORE', rsv_dev_key(d), '(' .. int(stop), '-inf')
    for _, o in ipairs(ids) do
        if o ~= id then
            local x = hload(rsv_key(o))
            if x and LIVE[x.state] then
                if tonumber(x['end']) <= start then break end
                return {'conflict', d .. ' is booked by ' .. x.id .. ' (' .. x.user_id .. ', ' .. x.lock_type ..
                    ') from ' .. iso(tonumber(x.start)) .. ' to ' .. iso(tonumber(x['end'])), rsv_json(x), S.last_id}
            end
        end
    end
end

b.start, b['end'] = int(start), int(stop)
b.reason = opt(ARGV[8]) or b.reason
b.plan_uid = opt(ARGV[9]) or b.plan_uid
b.seq = int(tonumber(nz(b.seq) or 0) + 1)
rsv_save(b, now, 'start', 'end', 'reason', 'plan_uid', 'seq')
for _, d in ipairs(split(b.devices)) do rcall('ZADD', rsv_dev_key(d), b.start, id) end
rcall('ZADD', 'dl:rsv:byend', b['end'], id)
if b.state == 'booked' then add_deadline(start, '@' .. id) end
add_deadline(stop, '%' .. id)
if b.state == 'waiting' and nz(b.waiter) then
    rcall('HSET', 'dl:waiter:' .. b.waiter, 'deadline', b['end'])
    rcall('PEXPIRE', 'dl:waiter:' .. b.waiter, floor((stop - now) / 1000) + 60000)
    local w = hload('dl:waiter:' .. b.waiter)
    if w then waiter_refresh(b.waiter, w) end
end
if b.state == 'active' and stop ~= old_stop then
    -- the lock's lease follows the window, unless renewed past the old end
    for _, h in ipairs(its_locks()) do
        if tonumber(h.exp) > 0 and tonumber(h.exp) <= old_stop then
            h.exp, h.rsv_end = b['end'], b['end']
            h.lease = int(math.max(1, math.ceil((stop - tonumber(h.acq)) / 1000)))
            rcall('HSET', lock_key(h.device_name), 'exp', h.exp, 'rsv_end', h.rsv_end, 'lease', h.lease)
            rcall('ZREM', 'dl:expiry', '?' .. h.device_name)
            add_deadline(stop, h.device_name)
            if now + floor((stop - now) * 0.8) < stop then
                add_deadline(now + floor((stop - now) * 0.8), '?' .. h.device_name)
            end
            emit('renewed', h.device_name, h.plan_uid, lock_json(h), now, nil, maxlen)
        end
    end
end
rsv_emit('reservation_updated', b, now, maxlen, nil)
return {'ok', answer(), S.last_id}

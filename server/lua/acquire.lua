-- acquire: grant, preempt, queue or deny one device or a group, all or none.
-- ARGV: 1 devices (comma-separated), 2 lock_type, 3 priority, 4 user_id,
--       5 lock_key (also this call's owner token), 6 lease_ms (0 = none), 7 reason (opt), 8 plan_uid (opt),
--       9 client JSON (opt), 10 stream maxlen, 11 wait_ms (0 = no wait),
--       12 idempotency key ('' = none), 13 broker id, 14 session (opt),
--       15 default preempt grace ms, 16 default lock-delay ms
-- Returns {'granted', body, preempted_count} | {'denied'|'replay', body} |
--         {'queued', waiter_id, deadline_us}, each with the last stream id appended
--         | {NEEDKEYS, key...} (prelude "keys declared")

-- The common request first (prelude "fast paths"): one device, free (no
-- lock, queue, booking or lock-delay: what the walk's first EXISTS asks),
-- no request_id, no session. Granted as the general path below grants a
-- free device, by grant() and granted_body(), with the same reply.
do
    local lk, qk, dk, rk
    if ARGV[12] == '' and ARGV[14] == '' and not string.find(ARGV[1], ',', 1, true) then
        lk, qk, dk, rk = fast_keys(KEYS, ARGV[1])
    end
    if lk and rcall('EXISTS', rk, lk, dk, qk) == 0 then
        S.maxlen, S.delay_ms = ARGV[10], tonumber(ARGV[16])
        local h = grant(ARGV[1], {lock_type = ARGV[2], prio = ARGV[3], user_id = ARGV[4], lock_key = ARGV[5],
            owner = ARGV[5], lease = ARGV[6], reason = opt(ARGV[7]), plan_uid = opt(ARGV[8]),
            client = opt(ARGV[9])}, now_us(), ARGV[10], false, nil)
        return {'granted', granted_body({h}, {}), 0, S.last_id}
    end
end

local devs = split(ARGV[1])
local maxlen = ARGV[10]
S.maxlen, S.delay_ms = maxlen, tonumber(ARGV[16])
local now = now_us()
local rid = ARGV[12]
local wait_ms = tonumber(ARGV[11])
-- the waiter this call would queue: named by its token, so the broker can
-- name its keys before the call (server/keys.c)
local new_wid = 'w' .. string.sub(redis.sha1hex(ARGV[5]), 1, 24)

-- the walk found the first device idle (no lock, queue, booking or
-- lock-delay): true until something is written before the device loop
local first_idle
do -- every key this call may touch is in KEYS (prelude "keys declared")
    local W = keys_walk(now)
    for _, d in ipairs(devs) do W.asked(d) end
    W.need('dl:waiter:' .. new_wid)
    W.need('dl:wres:' .. new_wid)
    W.need('dl:broker:' .. ARGV[13])
    W.need('dl:bwait:' .. ARGV[13])
    if opt(ARGV[14]) then W.need('dl:sess:' .. opt(ARGV[14])) end
    if rid ~= '' and W.need(rid) then
        local prev = rcall('GET', rid)
        if prev and string.sub(prev, 1, 2) == 'W:' then
            local wid = string.sub(prev, 3)
            W.waiter(wid)
            if W.need('dl:wres:' .. wid) then
                local res = rcall('GET', 'dl:wres:' .. wid)
                if res then W.grant(res, true) end
            end
        elseif prev then
            W.grant(prev, true)
        end
    end
    local nk = W.finish()
    if nk then return nk end
    first_idle = W.idle(devs[1])
end

local function timed_out_body()
    return denied_body(devs[1], nil, 'Timed out waiting for ' .. table.concat(devs, ', '))
end

-- The devices of a stored grant if its lock is still held with its key on
-- every one of them, else nil.
local function still_held(body)
    first_idle = false -- live_lock may end a lock and serve its waiters
    local names, key = grant_devices(body)
    if not names then return nil end
    for _, d in ipairs(names) do
        local h = live_lock(d, now, maxlen)
        if not h or h.lock_key ~= key then return nil end
    end
    return names, key
end

-- A retry (same request_id): replay a denial or a timeout; replay a grant
-- only while its lock is held (this call then owns it: a broker giving the
-- grant back because the first call's requester left must not release it);
-- join a queued request that is still live (taking it over). Anything else
-- (the grant released, expired or taken; the waiter's broker dead) makes
-- the retry a new request.
if rid ~= '' then
    local prev = rcall('GET', rid)
    if prev and string.sub(prev, 1, 2) == 'W:' then
        local wid = string.sub(prev, 3)
        local w = hload('dl:waiter:' .. wid)
        local res = rcall('GET', 'dl:wres:' .. wid)
        if res then
            prev = res
        elseif w and waiter_alive(w, now) then
            waiter_move(wid, w, ARGV[13], ARGV[5])
            return {'queued', wid, w.deadline, S.last_id}
        elseif w and tonumber(w.deadline) <= now then
            return {'replay', timed_out_body(), S.last_id}
        else
            drop_waiter(wid, w)
            prev = nil
        end
    end
    if prev then
        if string.sub(prev, 1, 15) ~= '{"success":true' then return {'replay', prev, S.last_id} end
        local names, key = still_held(prev)
        if names then
            for _, d in ipairs(names) do rcall('HSET', lock_key(d), 'owner', ARGV[5]) end
            picked_up(names, key)
            return {'replay', prev, S.last_id}
        end
    end
    rcall('DEL', rid)
end

local r = {lock_type = ARGV[2], prio = ARGV[3], user_id = ARGV[4], lock_key = ARGV[5], owner = ARGV[5],
    lease = ARGV[6], reason = opt(ARGV[7]), plan_uid = opt(ARGV[8]), client = opt(ARGV[9]),
    session = opt(ARGV[14])}
local prio = tonumber(r.prio)

local preempt, graceful, blocker, blocker_json, booking_json = {}, 0, nil, nil, nil
for i, dev in ipairs(devs) do
    -- seen: what serve() found D to be when it granted nothing ('idle' or
    -- 'delay'): D's lock, lock-delay and queue then need no asking again
    -- (saves an HGETALL, an EXISTS and a ZRANGE per free device). A device
    -- with none of its booking, lock, lock-delay and queue keys (one EXISTS
    -- over the four answers 0) is idle at once: nothing else is asked.
    local seen
    if (i == 1 and first_idle) or rcall('EXISTS', rsv_dev_key(dev), lock_key(dev), delay_key(dev), waitq_key(dev)) == 0 then
        seen = 'idle'
    end
    local win = not seen and window_blocks(dev, prio, r.user_id, nil, now)
    local h = not seen and not win and live_lock(dev, now, maxlen)
    if win then
        -- inside another user's booking of equal or higher priority
        if not blocker then
            blocker = window_message(dev, win)
            booking_json = rsv_json(win)
        end
    elseif not h and not seen then
        -- a free device: serve() drops queue entries of dead waiters (past
        -- their deadline, broker dead, hash gone) and hands it to a live
        -- waiter ranked first that can have it now
        seen = serve(dev, now, maxlen, true)
        if not seen then h = hload(lock_key(dev)) end
    end
    if win then
        -- refused above
    elseif h then
        if prio < tonumber(h.prio) then
            local grace = 0
            if prio > 0 then grace = conf(dev, 'grace_ms', ARGV[15]) end
            if grace > graceful then graceful = grace end
            preempt[#preempt + 1] = h
        elseif not blocker then
            blocker = 'Device ' .. dev .. ' is locked by ' .. h.user_id .. ' (' .. h.lock_type .. ')'
            blocker_json = lock_json(h)
        end
    elseif seen == 'delay' or (not seen and in_delay(dev)) then
        blocker = blocker or ('Device ' .. dev .. ' is in lock-delay after an abnormal release')
    elseif seen ~= 'idle' then
        local top = rcall('ZRANGE', waitq_key(dev), '0', '0', 'WITHSCORES')
        if #top > 0 and floor(tonumber(top[2]) / RANK) <= prio then
            blocker = blocker or ('Device ' .. dev .. ' is reserved for a waiting request of equal or higher priority')
        end
    end
end

local function enqueue(deadline)
    local seq = rcall('INCR', 'dl:seq')
    local wid = new_wid
    waiter_add(wid, {devices = ARGV[1], lock_type = r.lock_type,
        prio = r.prio, user_id = r.user_id, lock_key = r.lock_key, owner = r.owner, lease = r.lease,
        deadline = int(deadline), broker = ARGV[13], rid = rid, queued = int(now),
        reason = r.reason or '', plan_uid = r.plan_uid or '', client = r.client or '',
        session = r.session or ''}, int(prio * RANK + seq), floor((deadline - now) / 1000) + 60000)
    if rid ~= '' then
        rcall('SET', rid, 'W:' .. wid, 'PX', floor((deadline - now) / 1000) + 300000)
    end
    return wid
end

if blocker then
    if wait_ms > 0 then
        local deadline = now + wait_ms * 1000
        return {'queued', enqueue(deadline), int(deadline), S.last_id}
    end
    local body = denied_body(devs[1], blocker_json, blocker)
    if booking_json then body = string.sub(body, 1, -2) .. ',"reservation":' .. booking_json .. '}' end
    if rid ~= '' then rcall('SET', rid, body, 'PX', '300000') end
    return {'denied', body, S.last_id}
end

if graceful > 0 then
    -- Graceful preemption: warn the holders, wait for them to release or for
    -- the window to end (expire.lua then preempts), as a top-ranked waiter.
    local deadline = now + math.max(wait_ms, graceful + 5000) * 1000
    local wid = enqueue(deadline)
    local requester = '{"user_id":' .. jstr(r.user_id) .. ',"lock_type":' .. jstr(r.lock_type) ..
        ',"priority":' .. r.prio .. '}'
    -- a window already open stays as the holder was told: a second
    -- preemptor neither extends nor moves it
    for _, h in ipairs(preempt) do ask_preempt(h, graceful, requester, now, maxlen) end
    return {'queued', wid, int(deadline), S.last_id}
end

local preempted = {}
local taking = {}
for _, dev in ipairs(devs) do taking[dev] = true end
for _, h in ipairs(preempt) do
    preempted[#preempted + 1] = lock_json(h)
    end_lock(h, 'force_released', 'preempted', now, maxlen, true)
end
local group = false
if #devs > 1 then group = cjson.encode(devs) end
local locks = {}
for i, dev in ipairs(devs) do locks[i] = grant(dev, r, now, maxlen, group, nil) end
-- Only now the rest of each preempted group ends and is served: before
-- the grants above, the devices this call takes were free, and a waiter
-- served one of them (a group waiting for the rest and ours) would have
-- been granted it and then overwritten by our grant: two holders.
for _, h in ipairs(preempt) do end_group_rest(h, taking, 'preempted', now, maxlen) end
local body = granted_body(locks, preempted)
if rid ~= '' then
    rcall('SET', rid, body, 'PX', math.max(tonumber(r.lease), 300000))
end
return {'granted', body, #preempted, S.last_id}

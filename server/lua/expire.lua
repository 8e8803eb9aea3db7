-- expire: carries out every deadline that is due (lease ends, expiry
-- warnings, ends of graceful-preemption windows, of lock-delays and of
-- session grace periods, checks that hand-overs were picked up). Run by each broker's timer at the earliest
-- deadline; with several brokers the first run does the work and the others
-- find nothing, so every expiry has exactly one event.
-- ARGV: stream maxlen, batch size, default lock-delay ms, default preempt
--       grace ms (a booking's start preempts as an acquire would)
-- Returns {done, next_deadline_us (-1 = none), now_us} | {NEEDKEYS, key...}
local maxlen = ARGV[1]
S.maxlen, S.delay_ms = maxlen, tonumber(ARGV[3])
local now = now_us()
local due = rcall('ZRANGEBYSCORE', 'dl:expiry', '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
do -- every key this call may touch is in KEYS (prelude "keys declared")
    local W = keys_walk(now)
    for _, m in ipairs(due) do
        local kind, name = string.sub(m, 1, 1), string.sub(m, 2)
        if kind == '?' then
            W.light(name)
        elseif kind == '$' then
            if W.need('dl:sess:' .. name) then
                for _, d in ipairs(rcall('SMEMBERS', 'dl:sess:' .. name)) do W.full(d) end
            end
        elseif kind == '@' or kind == '%' then
            W.booking(name)
        elseif kind == '~' or kind == '!' or kind == '^' then
            W.full(name)
        else
            W.full(m)
        end
    end
    local nk = W.finish()
    if nk then return nk end
end
local done = 0
for _, m in ipairs(due) do
    rcall('ZREM', 'dl:expiry', m)
    local kind, name = string.sub(m, 1, 1), string.sub(m, 2)
    if kind == '?' then
        local h = hload(lock_key(name))
        if h and not expired(h, now) and tonumber(h.exp) > 0 then
            emit('expiring', name, h.plan_uid, lock_json(h), now, nil, maxlen, nil,
                '"expires_in_ms":' .. floor((tonumber(h.exp) - now) / 1000))
        end
    elseif kind == '~' then
        rcall('DEL', delay_key(name))
        serve(name, now, maxlen)
    elseif kind == '!' then
        local h = live_lock(name, now, maxlen)
        local top = rcall('ZRANGE', waitq_key(name), '0', '0')
        local w = top[1] and hload('dl:waiter:' .. top[1])
        if h and w and waiter_alive(w, now) and tonumber(w.prio) < tonumber(h.prio) then
            end_lock(h, 'force_released', 'preempted', now, maxlen)
            local taking = {}
            for _, d in ipairs(split(w.devices)) do taking[d] = true end
            end_group_rest(h, taking, 'preempted', now, maxlen)
        else
            -- nobody to preempt for any more: the lock stays, its window closes
            if h then
                rcall('HDEL', lock_key(name), 'preempt_until', 'preempt_grace', 'preempt_by')
                h.preempt_until, h.preempt_grace, h.preempt_by = nil, nil, nil
                lock_fact(h)
            end
            serve(name, now, maxlen)
        end
    elseif kind == '^' then
        local h = hload(lock_key(name))
        if h and h.pending and h.wbroker then
            if rcall('EXISTS', 'dl:broker:' .. h.wbroker) == 0 then
                -- handed to a waiter whose broker died before picking it
                -- up: nobody has its key, so it ends (the whole group)
                local devs = {name}
                if h.group then devs = cjson.decode(h.group) end
                for _, d in ipairs(devs) do
                    local x = hload(lock_key(d))
                    if x and x.lock_key == h.lock_key then end_lock(x, 'released', nil, now, maxlen) end
                end
            else
                add_deadline(now + 2000000, '^' .. name)
            end
        end
    elseif kind == '$' then
        for _, d in ipairs(rcall('SMEMBERS', 'dl:sess:' .. name)) do
            local h = hload(lock_key(d))
            if h and h.session == name then end_lock(h, 'force_released', 'session_lost', now, maxlen) end
        end
        rcall('DEL', 'dl:sess:' .. name)
    elseif kind == '@' then
        local b = hload(rsv_key(name))
        if b then rsv_start(b, now, maxlen, ARGV[4]) end
    elseif kind == '%' then
        -- a booking's window ends: its lock is released unless renewed past
        -- the end (then it runs on as an ordinary lock)
        local b = hload(rsv_key(name))
        if b and LIVE[b.state] then
            S.rsv_ending = b.id -- its locks end first, then the booking
            for _, d in ipairs(split(b.devices)) do
                local h = hload(lock_key(d))
                if h and h.rsv == b.id and h.lock_key == b.lock_key then
                    if tonumber(h.exp) > 0 and tonumber(h.exp) <= tonumber(b['end']) then
                        end_lock(h, 'released', 'reservation_end', now, maxlen)
                    else
                        rcall('HDEL', lock_key(d), 'rsv', 'rsv_end')
                        h.rsv, h.rsv_end = nil, nil
                        lock_fact(h)
                    end
                end
            end
            S.rsv_ending = nil
            b = hload(rsv_key(name))
            if b and LIVE[b.state] then
                rsv_finish(b, 'ended', b.held == '1' and 'reservation_end' or 'missed', now, maxlen)
            end
        end
    else
        local h = hload(lock_key(m))
        if h and expired(h, now) then
            local action, cause = lease_end(h)
            end_lock(h, action, cause, now, maxlen)
        end
    end
    done = done + 1
end
local nxt = rcall('ZRANGE', 'dl:expiry', '0', '0', 'WITHSCORES')
local deadline = -1
if #nxt > 0 then deadline = tonumber(nxt[2]) end
return {done, deadline, now}

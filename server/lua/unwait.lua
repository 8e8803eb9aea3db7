-- unwait: the outcome of a queued request, or its removal from the queue.
-- ARGV: waiter id, mode, stream maxlen, default lock-delay ms, owner token
--   mode 'check': the outcome, if any; 'cancel': the wait timed out (the
--   retry of its request_id replays the timeout); 'abandon': the requester
--   left (its request_id is forgotten, so a retry is a new request), unless
--   a retry has taken the waiter over (its owner is another call's token)
-- Returns {'granted', body} | {'waiting'} | {'removed', body} | {'gone'}
--       | {'detached'} (abandon: another call owns the waiter now)
local wid, mode, maxlen = ARGV[1], ARGV[2], ARGV[3]
S.maxlen, S.delay_ms = maxlen, tonumber(ARGV[4])
local now = now_us()
do -- every key this call may touch is in KEYS (prelude "keys declared")
    local W = keys_walk(now)
    -- a check reads the outcome only; ending the wait serves its devices
    if mode == 'check' then
        W.need('dl:waiter:' .. wid)
    else
        W.leaving(wid)
        W.waiter_full(wid)
    end
    if W.need('dl:wres:' .. wid) then
        local res = rcall('GET', 'dl:wres:' .. wid)
        if res then W.grant(res, false) end
    end
    local nk = W.finish()
    if nk then return nk end
end
local res = rcall('GET', 'dl:wres:' .. wid)
-- granted: a grant the caller did not deliver is released by the caller
-- with its owner token, so a retry that took it over keeps it
if res then
    local names, key = grant_devices(res)
    if names then picked_up(names, key) end
    return {'granted', res, S.last_id}
end
local w = hload('dl:waiter:' .. wid)
if mode == 'check' then
    if w then return {'waiting'} end
    return {'gone'}
end
if not w then return {'gone'} end
if mode == 'abandon' and (w.owner or w.lock_key) ~= ARGV[5] then return {'detached'} end
drop_waiter(wid, w)
local devs = split(w.devices)
local body = denied_body(devs[1], nil, 'Timed out waiting for ' .. table.concat(devs, ', '))
if w.rid and w.rid ~= '' then
    if mode == 'cancel' then
        rcall('SET', w.rid, body, 'PX', 300000)
    elseif rcall('GET', w.rid) == 'W:' .. wid then
        rcall('DEL', w.rid)
    end
end
-- the next in line may be servable now (e.g. it waited behind this group)
for _, d in ipairs(devs) do serve(d, now, maxlen) end
return {'removed', body, S.last_id}

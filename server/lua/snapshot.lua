-- snapshot: held locks (in device-name order) after a cursor, and the id of
-- the stream's last event. Leases past their end are left out (the expiry
-- timer is about to end them). Its cost is the number of locks it reads:
-- large tables are read in pages (limit), never whole, by the broker.
-- ARGV: start ('-' or '(' .. cursor), limit (-1 = all), [mode]
--   mode 'page': the reply also names where the next page starts, so a
--   caller can page on even when a page's locks are all past their end.
-- Returns {now_us, last_event_id, total, lock_json...}
--   mode 'page': {now_us, last_event_id, total, next_cursor, lock_json...}
--   (next_cursor: the last device read, '' when no more remain), then, when
--   more remain, an array of the next page's devices, whose keys the
--   broker declares with the next page's call (so it needs no NEEDKEYS)
--   mode 'queues': the waiters instead, start a SCAN cursor ('0' first) over
--   the device queues, limit the keys a page examines:
--   {now_us, last_event_id, 0, next_cursor ('' at the end),
--    then per queue entry: device, waiter, rank, and its hash's devices
--    user_id lock_type prio queued deadline plan_uid broker rid session ('' each, deadline
--    '0', when the hash has expired: no read shows it)}
--   | {NEEDKEYS, key...}: the keys of the locks or queues the page reads
--   (prelude "keys declared"; a page's keys follow from the data, so a
--   page takes two calls)
-- Paged, the pages together are not one atomic read: the broker reads the
-- stream from the first page's last_event_id on and applies those events
-- on top (see events.c).
local now = now_us()
local W = keys_walk(now)
if ARGV[3] == 'queues' then
    local r = rcall('SCAN', ARGV[1], 'MATCH', 'dl:{*}:waitq', 'COUNT', ARGV[2], 'TYPE', 'zset')
    local qs = {}
    for _, key in ipairs(r[2]) do
        if W.need(key) then
            local q = rcall('ZRANGE', key, '0', '-1', 'WITHSCORES')
            qs[#qs + 1] = {key, q}
            for i = 1, #q, 2 do W.need('dl:waiter:' .. q[i]) end
        end
    end
    local nk = W.finish()
    if nk then return nk end
    local last = rcall('XREVRANGE', 'dl:events', '+', '-', 'COUNT', 1)
    local out = {now, #last > 0 and last[1][1] or '0-0', 0, r[1] == '0' and '' or r[1]}
    local F = {'devices', 'user_id', 'lock_type', 'prio', 'queued', 'deadline', 'plan_uid', 'broker', 'rid', 'session'}
    for _, e in ipairs(qs) do
        local key, q = e[1], e[2]
        local dev = string.sub(key, 5, -8) -- dl:{D}:waitq
        for i = 1, #q, 2 do
            local w = rcall('HMGET', 'dl:waiter:' .. q[i], unpack(F))
            out[#out + 1] = dev
            out[#out + 1] = q[i]
            out[#out + 1] = q[i + 1]
            for k = 1, #F do out[#out + 1] = w[k] or (F[k] == 'deadline' and '0' or '') end
        end
    end
    return out
end
local total = rcall('ZCARD', 'dl:held')
local limit = tonumber(ARGV[2])
local devs
if limit < 0 then
    devs = rcall('ZRANGEBYLEX', 'dl:held', ARGV[1], '+')
else
    devs = rcall('ZRANGEBYLEX', 'dl:held', ARGV[1], '+', 'LIMIT', 0, limit)
end
for _, dev in ipairs(devs) do W.need(lock_key(dev)) end
local nk = W.finish()
if nk then return nk end
local last = rcall('XREVRANGE', 'dl:events', '+', '-', 'COUNT', 1)
local out = {now, #last > 0 and last[1][1] or '0-0', total}
if ARGV[3] == 'page' then
    out[4] = ''
    if limit >= 0 and #devs == limit and #devs > 0 then out[4] = devs[#devs] end
end
for _, dev in ipairs(devs) do
    local h = hload(lock_key(dev))
    if h and not expired(h, now) then out[#out + 1] = lock_json(h) end
end
if ARGV[3] == 'page' and out[4] ~= '' then
    out[#out + 1] = rcall('ZRANGEBYLEX', 'dl:held', '(' .. out[4], '+', 'LIMIT', 0, limit)
end
return out

-- snapshot: held locks (in device-name order) after a cursor, and the id of
-- the stream's last event. Leases past their end are left out (the expiry
-- timer is about to end them). Its cost is the number of locks it reads:
-- large tables are read in pages (limit), never whole, by the broker.
-- ARGV: start ('-' or '(' .. cursor), limit (-1 = all), [mode]
--   mode 'page': the reply also names where the next page starts, so a
--   caller can page on even when a page's locks are all past their end.
-- Returns {now_us, last_event_id, total, lock_json...}
--   mode 'page': {now_us, last_event_id, total, next_cursor, lock_json...}
--   (next_cursor: the last device read, '' when no more remain)
-- Paged, the pages together are not one atomic read: the broker reads the
-- stream from the first page's last_event_id on and applies those events
-- on top (see events.c).
local now = now_us()
local last = redis.call('XREVRANGE', 'dl:events', '+', '-', 'COUNT', 1)
local last_id = '0-0'
if #last > 0 then last_id = last[1][1] end
local total = redis.call('ZCARD', 'dl:held')
local limit = tonumber(ARGV[2])
local devs
if limit < 0 then
    devs = redis.call('ZRANGEBYLEX', 'dl:held', ARGV[1], '+')
else
    devs = redis.call('ZRANGEBYLEX', 'dl:held', ARGV[1], '+', 'LIMIT', 0, limit)
end
local out = {now, last_id, total}
if ARGV[3] == 'page' then
    out[4] = ''
    if limit >= 0 and #devs == limit and #devs > 0 then out[4] = devs[#devs] end
end
for _, dev in ipairs(devs) do
    local h = hload(lock_key(dev))
    if h and not expired(h, now) then out[#out + 1] = lock_json(h) end
end
return out

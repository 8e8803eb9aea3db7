-- snapshot: the held locks (in device-name order) and the id of the last
-- event they include, read atomically. Leases past their end are left out
-- (the expiry timer is about to end them).
-- ARGV: start ('-' or '(' .. cursor), limit (-1 = all)
-- Returns {now_us, last_event_id, total, lock_json...}
local now = now_us()
local last = redis.call('XREVRANGE', 'dl:events', '+', '-', 'COUNT', 1)
local last_id = '0-0'
if #last > 0 then last_id = last[1][1] end
local total = redis.call('ZCARD', 'dl:held')
local devs
if tonumber(ARGV[2]) < 0 then
    devs = redis.call('ZRANGEBYLEX', 'dl:held', ARGV[1], '+')
else
    devs = redis.call('ZRANGEBYLEX', 'dl:held', ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
end
local out = {now, last_id, total}
for _, dev in ipairs(devs) do
    local h = hload(lock_key(dev))
    if h and not expired(h, now) then out[#out + 1] = lock_json(h) end
end
return out

-- expire: ends every lease that is due. Run by each broker's timer at the
-- earliest deadline; with several brokers the first run ends a lock and the
-- others find nothing, so every expiry has exactly one event.
-- ARGV: stream maxlen, batch size
-- Returns {ended, next_deadline_us (-1 = none), now_us}
local now = now_us()
local due = redis.call('ZRANGEBYSCORE', 'dl:expiry', '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local ended = 0
for _, dev in ipairs(due) do
    local h = hload(lock_key(dev))
    if h and expired(h, now) then
        end_lock(h, 'force_released', 'expired', now, ARGV[1])
        ended = ended + 1
    else
        redis.call('ZREM', 'dl:expiry', dev)
    end
end
local nxt = redis.call('ZRANGE', 'dl:expiry', 0, 0, 'WITHSCORES')
local deadline = -1
if #nxt > 0 then deadline = tonumber(nxt[2]) end
return {ended, deadline, now}

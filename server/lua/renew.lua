-- renew: the holder extends its lease to now + lease.
-- KEYS[1] dl:{D}:lock
-- ARGV: D, lock_key, user_id, lease_ms ('' = the lock's own lease), stream maxlen
-- Returns {1, lock_json, fence, event_id, expires_at|false} | {-1} | {-2} | {-3} as release
local now = now_us()
local h = live_lock(ARGV[1], now, ARGV[5])
if not h then return {-1} end
if h.lock_key ~= ARGV[2] then return {-2} end
if h.user_id ~= ARGV[3] then return {-3} end
local lease = tonumber(h.lease)
if ARGV[4] ~= '' then lease = tonumber(ARGV[4]) end
local exp = 0
if lease > 0 then exp = now + lease * 1000 end
redis.call('HSET', KEYS[1], 'exp', int(exp), 'lease', lease)
if exp > 0 then
    redis.call('ZADD', 'dl:expiry', int(exp), h.device_name)
else
    redis.call('ZREM', 'dl:expiry', h.device_name)
end
h.exp = int(exp)
local lj = lock_json(h)
local id = emit('renewed', h, lj, now, nil, ARGV[5], h.exp)
return {1, lj, tonumber(h.fence), id, exp > 0 and iso(exp) or false}

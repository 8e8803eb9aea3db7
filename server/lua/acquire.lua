-- acquire: grant, preempt or deny one device.
-- KEYS[1] dl:{D}:lock  KEYS[2] dl:{D}:fence
-- ARGV: D, lock_type, priority, user_id, lock_key, lease_ms (0 = none),
--       reason (opt), plan_uid (opt), client JSON (opt), stream maxlen
-- Returns {1, lock_json, fence, event_id, preempted_json|false, expires_at|false}
--      or {0, holder_json}
local dev, maxlen = ARGV[1], ARGV[10]
local now = now_us()
local h = live_lock(dev, now, maxlen)
local preempted = false
if h then
    if tonumber(ARGV[3]) < tonumber(h.prio) then
        preempted = lock_json(h)
        end_lock(h, 'force_released', 'preempted', now, maxlen)
    else
        return {0, lock_json(h)}
    end
end
local fence = redis.call('INCR', KEYS[2])
local lease = tonumber(ARGV[6])
local exp = 0
if lease > 0 then exp = now + lease * 1000 end
local n = {device_name = dev, lock_type = ARGV[2], user_id = ARGV[4], lock_key = ARGV[5],
    acq = int(now), exp = int(exp), lease = lease, prio = ARGV[3], fence = fence,
    reason = opt(ARGV[7]), plan_uid = opt(ARGV[8]), client = opt(ARGV[9])}
local fields = {}
for k, v in pairs(n) do
    fields[#fields + 1] = k
    fields[#fields + 1] = v
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', 'dl:held', 0, dev)
if exp > 0 then redis.call('ZADD', 'dl:expiry', int(exp), dev) end
local lj = lock_json(n)
local id = emit('acquired', n, lj, now, nil, maxlen, n.exp)
return {1, lj, fence, id, preempted, exp > 0 and iso(exp) or false}

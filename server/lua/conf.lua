-- conf: per-device settings from the catalogue (preempt grace, lock-delay).
-- ARGV: triples of D, grace_ms, delay_ms (-1 = use the broker default)
-- Returns the number of devices written.
for i = 1, #ARGV, 3 do
    local k = 'dl:{' .. ARGV[i] .. '}:conf'
    if tonumber(ARGV[i + 1]) >= 0 then
        redis.call('HSET', k, 'grace_ms', ARGV[i + 1])
    else
        redis.call('HDEL', k, 'grace_ms')
    end
    if tonumber(ARGV[i + 2]) >= 0 then
        redis.call('HSET', k, 'delay_ms', ARGV[i + 2])
    else
        redis.call('HDEL', k, 'delay_ms')
    end
end
return #ARGV / 3

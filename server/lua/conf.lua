-- conf: per-device settings from the catalogue (preempt grace, lock-delay).
-- ARGV: triples of D, grace_ms, delay_ms (-1 = use the broker default)
-- Returns the number of devices written | {NEEDKEYS, key...}
do -- every key this call may touch is in KEYS (prelude "keys declared")
    local W = keys_walk(0)
    for i = 1, #ARGV, 3 do W.need('dl:{' .. ARGV[i] .. '}:conf') end
    local nk = W.finish()
    if nk then return nk end
end
for i = 1, #ARGV, 3 do
    local k = 'dl:{' .. ARGV[i] .. '}:conf'
    if tonumber(ARGV[i + 1]) >= 0 then
        rcall('HSET', k, 'grace_ms', ARGV[i + 1])
    else
        rcall('HDEL', k, 'grace_ms')
    end
    if tonumber(ARGV[i + 2]) >= 0 then
        rcall('HSET', k, 'delay_ms', ARGV[i + 2])
    else
        rcall('HDEL', k, 'delay_ms')
    end
end
return #ARGV / 3

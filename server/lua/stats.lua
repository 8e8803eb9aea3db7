-- stats: locks held by priority, and the stream's length (for /metrics).
-- Returns {held_p0, held_p1, held_p2, held_p3, stream_length}
local held = {0, 0, 0, 0}
for _, dev in ipairs(redis.call('ZRANGE', 'dl:held', 0, -1)) do
    local p = tonumber(redis.call('HGET', lock_key(dev), 'prio'))
    if p and held[p + 1] then held[p + 1] = held[p + 1] + 1 end
end
return {held[1], held[2], held[3], held[4], redis.call('XLEN', 'dl:events')}

-- stats: locks held by priority, and the stream's length (for /metrics).
-- O(1): the counters are kept by grant and end_lock (count_held).
-- ARGV: none; or a page size: one step of the one-time count of a database
--       written before the counters (the broker calls it at start until it
--       answers 1; each call reads at most that many locks).
-- Returns {held_p0, held_p1, held_p2, held_p3, stream_length}, or {done}
if ARGV[1] then
    local st = redis.call('HMGET', 'dl:stats', 'full', 'scan')
    if st[1] then return {1} end
    local scan = st[2]
    if not scan then
        if redis.call('ZCARD', 'dl:held') == 0 then
            redis.call('HSET', 'dl:stats', 'full', '1')
            return {1}
        end
        redis.call('DEL', 'dl:stats') -- counted from zero, in name order
        scan = ''
    end
    local page = tonumber(ARGV[1])
    local start = '-'
    if scan ~= '' then start = '(' .. scan end
    local devs = redis.call('ZRANGEBYLEX', 'dl:held', start, '+', 'LIMIT', 0, page)
    for _, dev in ipairs(devs) do
        local p = redis.call('HGET', lock_key(dev), 'prio')
        if p then redis.call('HINCRBY', 'dl:stats', 'p' .. p, 1) end
    end
    if #devs < page then
        redis.call('HSET', 'dl:stats', 'full', '1')
        redis.call('HDEL', 'dl:stats', 'scan')
        return {1}
    end
    redis.call('HSET', 'dl:stats', 'scan', devs[#devs])
    return {0}
end
local c = redis.call('HMGET', 'dl:stats', 'p0', 'p1', 'p2', 'p3')
local held = {}
for i = 1, 4 do held[i] = math.max(0, tonumber(c[i]) or 0) end
return {held[1], held[2], held[3], held[4], redis.call('XLEN', 'dl:events')}

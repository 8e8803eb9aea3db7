-- stats: locks held by priority, and the stream's length (for /metrics).
-- O(1): the counters are kept by grant and end_lock (count_held).
-- ARGV: none; or a page size: one step of the one-time count of a database
--       written before the counters (the broker calls it at start until it
--       answers 1; each call reads at most that many locks).
-- Returns {held_p0, held_p1, held_p2, held_p3, stream_length}, or {done}
--       | {NEEDKEYS, key...}: a page's locks (prelude "keys declared")
if ARGV[1] then
    local st = rcall('HMGET', 'dl:stats', 'full', 'scan')
    if st[1] then return {1} end
    local scan = st[2]
    local fresh = not scan -- counted from zero, in name order
    if fresh then
        if rcall('ZCARD', 'dl:held') == 0 then
            rcall('HSET', 'dl:stats', 'full', '1')
            return {1}
        end
        scan = ''
    end
    local page = tonumber(ARGV[1])
    local start = '-'
    if scan ~= '' then start = '(' .. scan end
    local devs = rcall('ZRANGEBYLEX', 'dl:held', start, '+', 'LIMIT', 0, page)
    local W = keys_walk(0)
    for _, dev in ipairs(devs) do W.need(lock_key(dev)) end
    local nk = W.finish()
    if nk then return nk end
    if fresh then rcall('DEL', 'dl:stats') end
    for _, dev in ipairs(devs) do
        local p = rcall('HGET', lock_key(dev), 'prio')
        if p then rcall('HINCRBY', 'dl:stats', 'p' .. p, 1) end
    end
    if #devs < page then
        rcall('HSET', 'dl:stats', 'full', '1')
        rcall('HDEL', 'dl:stats', 'scan')
        return {1}
    end
    rcall('HSET', 'dl:stats', 'scan', devs[#devs])
    return {0}
end
local c = rcall('HMGET', 'dl:stats', 'p0', 'p1', 'p2', 'p3')
local held = {}
for i = 1, 4 do held[i] = math.max(0, tonumber(c[i]) or 0) end
return {held[1], held[2], held[3], held[4], rcall('XLEN', 'dl:events')}

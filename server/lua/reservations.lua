-- reservations: reads bookings (no writes).
-- ARGV: 1 mode ('get' | 'list'), then
--   get:  2 id
--   list: 2 from us, 3 to us ('' = no limit), 4 device ('' = any),
--         5 user ('' = any), 6 states (comma-separated, '' = any),
--         7 limit, 8 cursor ('' = from the start, else '<start us>:<id>')
-- Returns get: {now, booking JSON | ''}; list: {now, next cursor | '',
--         booking JSON...} in order of start, then id
--         | {NEEDKEYS, key...} (prelude "keys declared")
local SCAN_CAP = 20000
local now = now_us()
if ARGV[1] == 'get' then
    local W = keys_walk(now)
    W.need(rsv_key(ARGV[2]))
    local nk = W.finish()
    if nk then return nk end
    local b = hload(rsv_key(ARGV[2]))
    return {int(now), b and rsv_json(b) or ''}
end
local from = tonumber(ARGV[2])
local to = ARGV[3] ~= '' and tonumber(ARGV[3]) or nil
local dev, user = ARGV[4], ARGV[5]
local states = nil
if ARGV[6] ~= '' then
    states = {}
    for _, s in ipairs(split(ARGV[6])) do states[s] = true end
end
local limit = tonumber(ARGV[7])
local cs, cid = nil, nil
if ARGV[8] ~= '' then
    local a, c = string.match(ARGV[8], '^(%d+):r(%d+)$')
    cs, cid = tonumber(a), tonumber(c)
end
local ids = rcall('ZRANGEBYSCORE', 'dl:rsv:byend', '(' .. int(from), '+inf', 'LIMIT', 0, SCAN_CAP)
do -- the bookings it reads are in KEYS (prelude "keys declared")
    local W = keys_walk(now)
    W.need('dl:rsv:byend')
    for _, i in ipairs(ids) do W.need(rsv_key(i)) end
    local nk = W.finish()
    if nk then return nk end
end
local found = {}
for _, id in ipairs(ids) do
    local b = hload(rsv_key(id))
    if b and (not to or tonumber(b.start) < to) and (user == '' or b.user_id == user)
        and (not states or states[b.state]) then
        local ok = dev == ''
        if not ok then
            for _, d in ipairs(split(b.devices)) do if d == dev then ok = true end end
        end
        local s, n = tonumber(b.start), tonumber(string.sub(b.id, 2))
        if ok and cs and (s < cs or (s == cs and n <= cid)) then ok = false end
        if ok then found[#found + 1] = {s, n, b} end
    end
end
table.sort(found, function(x, y)
    if x[1] ~= y[1] then return x[1] < y[1] end
    return x[2] < y[2]
end)
local out = {int(now), ''}
for i = 1, math.min(limit, #found) do out[#out + 1] = rsv_json(found[i][3]) end
if #found > limit then
    local last = found[limit]
    out[2] = int(last[1]) .. ':' .. last[3].id
end
return out

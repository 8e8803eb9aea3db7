-- events: history from the stream, oldest first, after a given id,
-- optionally filtered by device and plan_uid.
-- ARGV: start ('-' or '(' .. id), limit, device filter ('' = any),
--       plan filter ('' = any), scan cap (entries examined at most)
-- Returns {last_examined_id, id1, json1, id2, json2, ...}
local limit, cap = tonumber(ARGV[2]), tonumber(ARGV[5])
local start, out, examined, last = ARGV[1], {''}, 0, ''
while examined < cap do
    local batch = rcall('XRANGE', 'dl:events', start, '+', 'COUNT', math.min(500, cap - examined))
    if #batch == 0 then break end
    for _, e in ipairs(batch) do
        examined = examined + 1
        last = e[1]
        local f = {}
        for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
        -- entries without j are queue facts for the read copies, no events
        if f.j and (ARGV[3] == '' or f.dev == ARGV[3]) and (ARGV[4] == '' or f.plan == ARGV[4]) then
            out[#out + 1] = e[1]
            out[#out + 1] = f.j
            if (#out - 1) / 2 >= limit then
                out[1] = last
                return out
            end
        end
    end
    start = '(' .. last
end
out[1] = last
return out

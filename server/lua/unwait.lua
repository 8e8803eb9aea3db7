-- unwait: the outcome of a queued request, or its removal from the queue
-- (wait timed out, requester gone).
-- ARGV: waiter id, mode ('check' | 'cancel'), stream maxlen, default lock-delay ms
-- Returns {'granted', body} | {'waiting'} | {'removed', body} | {'gone'}
local wid, maxlen = ARGV[1], ARGV[3]
S.maxlen, S.delay_ms = maxlen, tonumber(ARGV[4])
local res = redis.call('GET', 'dl:wres:' .. wid)
if res then return {'granted', res, S.last_id} end
local w = hload('dl:waiter:' .. wid)
if ARGV[2] == 'check' then
    if w then return {'waiting'} end
    return {'gone'}
end
if not w then return {'gone'} end
local now = now_us()
drop_waiter(wid, w)
local devs = split(w.devices)
local body = denied_body(devs[1], nil, 'Timed out waiting for ' .. table.concat(devs, ', '))
if w.rid and w.rid ~= '' then redis.call('SET', w.rid, body, 'PX', 300000) end
-- the next in line may be servable now (e.g. it waited behind this group)
for _, d in ipairs(devs) do serve(d, now, maxlen) end
return {'removed', body, S.last_id}

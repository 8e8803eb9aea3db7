-- force_release: an admin ends a lock (and the rest of its group, so no plan
-- is left half-locked), cause admin.
-- ARGV: D, reason (opt), stream maxlen, default lock-delay ms
-- Returns {1, body} | {-1} no lock
local dev, maxlen = ARGV[1], ARGV[3]
S.maxlen, S.delay_ms = maxlen, tonumber(ARGV[4])
local now = now_us()
-- every key this call may touch is in KEYS (prelude "keys declared")
local nk, pre = keys_of_lock(now, dev, true)
if nk then return nk end
local h = live_lock(dev, now, maxlen, pre)
if not h then return {-1, '', S.last_id} end
local devs = {dev}
if h.group then devs = cjson.decode(h.group) end
local names = {}
for _, d in ipairs(devs) do
    local x = hload(lock_key(d))
    if x and x.lock_key == h.lock_key then
        local extra = nil
        if opt(ARGV[2]) then extra = '"admin_reason":' .. jstr(opt(ARGV[2])) end
        rcall('DEL', lock_key(d))
        held_remove(d, x.prio)
        rcall('ZREM', 'dl:expiry', d, '?' .. d, '!' .. d)
        if x.session then rcall('SREM', 'dl:sess:' .. x.session, d) end
        emit('force_released', d, x.plan_uid, lock_json(x), now, 'admin', maxlen, nil, extra)
        if x.rsv then rsv_after_end(x, 'force_released', 'admin', now, maxlen) end
        serve(d, now, maxlen)
        names[#names + 1] = d
    end
end
return {1, '{"success":true,"message":' .. jstr('Lock force-released for ' .. table.concat(names, ', ')) .. '}', S.last_id}

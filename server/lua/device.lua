-- device: one device's lock (if held and not past its lease) and waiters.
-- ARGV: D
-- Returns {now_us, lock_json|false, waiters_json} | {NEEDKEYS, key...}
local dev = ARGV[1]
local now = now_us()
do -- every key this call reads is in KEYS (prelude "keys declared")
    local W = keys_walk(now)
    W.need(lock_key(dev))
    if W.need(waitq_key(dev)) then
        for _, wid in ipairs(rcall('ZRANGE', waitq_key(dev), '0', '99')) do
            if W.need('dl:waiter:' .. wid) then
                local b = rcall('HGET', 'dl:waiter:' .. wid, 'broker')
                if b and b ~= '' then W.need('dl:broker:' .. b) end
            end
        end
    end
    local nk = W.finish()
    if nk then return nk end
end
local h = hload(lock_key(dev))
local lj = false
if h and not expired(h, now) then lj = lock_json(h) end
local ws = {}
local ids = rcall('ZRANGE', waitq_key(dev), '0', '99')
for _, wid in ipairs(ids) do
    local w = hload('dl:waiter:' .. wid)
    if w and waiter_alive(w, now) then
        local devs = split(w.devices)
        ws[#ws + 1] = '{"user_id":' .. jstr(w.user_id) .. ',"lock_type":' .. jstr(w.lock_type) ..
            ',"priority":' .. w.prio .. ',"queued_at":"' .. iso(tonumber(w.queued)) .. '"' ..
            ',"wait_until":"' .. iso(tonumber(w.deadline)) .. '"' ..
            ',"plan_uid":' .. jstr(w.plan_uid ~= '' and w.plan_uid or nil) ..
            (#devs > 1 and (',"group":' .. cjson.encode(devs)) or '') .. '}'
    end
end
return {now, lj, '[' .. table.concat(ws, ',') .. ']'}

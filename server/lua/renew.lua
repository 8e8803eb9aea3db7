-- renew: the holder extends its lease to now + lease (the whole group's).
-- ARGV: D, lock_key, user_id, lease_ms ('' = the lock's own lease), stream
--       maxlen, default lock-delay ms
-- Returns {1, body} | {-1} | {-2} | {-3} as release
local dev, key, maxlen = ARGV[1], ARGV[2], ARGV[5]
S.maxlen, S.delay_ms = maxlen, tonumber(ARGV[6])
local now = now_us()
-- every key this call may touch is in KEYS (prelude "keys declared"). The
-- common renewal first (prelude "fast paths"): D's keys at their places and
-- a live lock on D alone, whose renewal touches only its hash, dl:expiry
-- and dl:events; the walk would find nothing more to ask for (it reads D's
-- queue only of a lease that has run out, which live_lock would end).
local lk, pre = fast_keys(KEYS, dev), nil
local loaded = lk and (hload(lk) or false) -- nil: not read (no fast path)
if loaded and not loaded.group and not expired(loaded, now) then
    pre = loaded
else
    local nk
    nk, pre = keys_of_lock(now, dev, false, loaded)
    if nk then return nk end
end
local h = live_lock(dev, now, maxlen, pre)
if not h then return {-1, '', S.last_id} end
if h.lock_key ~= key then return {-2, '', S.last_id} end
if h.user_id ~= ARGV[3] then return {-3, '', S.last_id} end
local lease = tonumber(h.lease)
if ARGV[4] ~= '' then lease = tonumber(ARGV[4]) end
local devs = {dev}
if h.group then devs = cjson.decode(h.group) end
local mine, mine_json
for _, d in ipairs(devs) do
    -- D's lock is h, loaded above (the loop changes only the other
    -- devices' locks before D's): one HGETALL fewer
    local x
    if d == dev then x = h else x = hload(lock_key(d)) end
    if x and x.lock_key == key then
        local exp = 0
        if lease > 0 then exp = now + lease * 1000 end
        rcall('HSET', lock_key(d), 'exp', int(exp), 'lease', lease)
        set_deadlines(d, now, lease)
        x.exp, x.lease = int(exp), lease
        local lj = lock_json(x)
        emit('renewed', d, x.plan_uid, lj, now, nil, maxlen)
        if d == dev then mine, mine_json = x, lj end -- the reply shows it again
    end
end
local exp = tonumber(mine.exp)
return {1, '{"success":true,"message":' .. jstr('Lock renewed for ' .. dev) ..
    ',"expires_at":' .. (exp > 0 and ('"' .. iso(exp) .. '"') or 'null') ..
    ',"fence":' .. mine.fence .. ',"lock":' .. mine_json .. '}', S.last_id}

-- release: the holder ends its lock; a group's key ends the whole group.
-- ARGV: D, lock_key, user_id, stream maxlen, default lock-delay ms,
--       owner token ('' = the holder releases; else a broker gives back a
--       grant its requester never received, only if that call still owns it)
-- Returns {1, body} | {-1} no lock | {-2} wrong key | {-3} wrong user
--       | {-4} owned by another call (a retry took the grant over)
local dev, key, maxlen = ARGV[1], ARGV[2], ARGV[4]

-- The common release first (prelude "fast paths"): the holder's own lock,
-- not part of a group, booking or session, no hand-over pending, its lease
-- not run out, nobody queued: what the walk would find nothing more in.
-- Ended as below, by end_lock(), with the same reply.
local lk, qk = fast_keys(KEYS, dev)
local loaded = lk and (hload(lk) or false) -- nil: not read (no fast path)
do
    local h = loaded
    if h and h.lock_key == key and h.user_id == ARGV[3] and not (h.group or h.rsv or h.session or h.wbroker)
        and (not ARGV[6] or ARGV[6] == '' or (h.owner or h.lock_key) == ARGV[6]) then
        local now = now_us()
        if not expired(h, now) and not rcall('ZRANGE', qk, '0', '0')[1] then
            S.maxlen, S.delay_ms = maxlen, tonumber(ARGV[5])
            S.qempty[dev] = true -- serve: nobody to hand D to
            end_lock(h, 'released', nil, now, maxlen)
            return {1, '{"success":true,"message":' .. jstr('Lock released for ' .. dev) .. '}', S.last_id}
        end
    end
end

S.maxlen, S.delay_ms = maxlen, tonumber(ARGV[5])
local now = now_us()
-- every key this call may touch is in KEYS (prelude "keys declared")
local nk, pre = keys_of_lock(now, dev, true, loaded)
if nk then return nk end
local h = live_lock(dev, now, maxlen, pre)
if not h then return {-1, '', S.last_id} end
if h.lock_key ~= key then return {-2, '', S.last_id} end
if h.user_id ~= ARGV[3] then return {-3, '', S.last_id} end
if ARGV[6] and ARGV[6] ~= '' and (h.owner or h.lock_key) ~= ARGV[6] then return {-4, '', S.last_id} end
local devs = {dev}
if h.group then devs = cjson.decode(h.group) end
local names = {}
for _, d in ipairs(devs) do
    -- D's lock is h, loaded above and unchanged while no lock has ended yet:
    -- one HGETALL fewer
    local x
    if d == dev and #names == 0 then x = h else x = hload(lock_key(d)) end
    if x and x.lock_key == key then
        end_lock(x, 'released', nil, now, maxlen)
        names[#names + 1] = d
    end
end
return {1, '{"success":true,"message":' ..
    jstr((#names > 1 and 'Locks released for ' or 'Lock released for ') .. table.concat(names, ', ')) .. '}', S.last_id}

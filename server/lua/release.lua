-- release: the holder ends its lock.
-- KEYS[1] dl:{D}:lock
-- ARGV: D, lock_key, user_id, stream maxlen
-- Returns {1, lock_json, event_id} | {-1} no lock | {-2} wrong key | {-3} wrong user
local now = now_us()
local h = live_lock(ARGV[1], now, ARGV[4])
if not h then return {-1} end
if h.lock_key ~= ARGV[2] then return {-2} end
if h.user_id ~= ARGV[3] then return {-3} end
local id = end_lock(h, 'released', nil, now, ARGV[4])
return {1, lock_json(h), id}

-- device: one device's lock, if held and not past its lease.
-- KEYS[1] dl:{D}:lock
-- Returns {now_us, lock_json|false}
local now = now_us()
local h = hload(KEYS[1])
if h and not expired(h, now) then return {now, lock_json(h)} end
return {now, false}

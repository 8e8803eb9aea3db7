-- session: a WebSocket session's socket closed (detach: its locks end with
-- cause session_lost after the grace period unless it is resumed) or was
-- resumed (attach).
-- ARGV: mode ('detach' | 'attach'), session id, grace ms
-- Returns {locks held by the session, deadline_us (0 = none)}
local key = 'dl:sess:' .. ARGV[2]
local n = redis.call('SCARD', key)
if ARGV[1] == 'attach' then
    redis.call('ZREM', 'dl:expiry', '$' .. ARGV[2])
    return {n, 0}
end
if n == 0 then return {0, 0} end
local deadline = now_us() + tonumber(ARGV[3]) * 1000
add_deadline(deadline, '$' .. ARGV[2])
return {n, deadline}

-- webhook: the Redis side of webhook delivery (server/webhooks.c,
-- docs/webhooks.md).
--
-- Per webhook <n>:
--   consumer group wh:<n> on dl:events, created at '$' the first time a
--                  broker sees the webhook (a new webhook starts with new
--                  events); one consumer per broker, named by its id
--   dl:wh:<n>:owner  STRING the broker delivering <n> now (PX lease): one
--                  deliverer at a time keeps the order; a broker that takes
--                  over claims the group's pending entries first (XAUTOCLAIM,
--                  in id order), then reads new ones (XREADGROUP >)
--   dl:wh:<n>:state  HASH, shared by the brokers for the status endpoint:
--                  last_event_id last_status last_error last_success_us
--                  failures next_attempt_us delivered failed lost
--
-- ARGV[1] is the mode:
--   take    n broker lease_ms count
--           own (or renew) <n>; when owned, claim the pending entries and
--           read new ones, count at most.
--           -> {owned 0|1, owner, pel, lag (-1 unknown), lost, failures,
--               last_success_us, entries {{id, {field, value...}}...}}
--           (lost: entries trimmed from the stream before delivery: pending
--            ones (acknowledged here), and unread ones that XREADGROUP
--            skipped, counted from the group's entries-read; also added
--            to the state's lost)
--   renew   n broker lease_ms            -> 1 if still the owner, else 0
--   ack     n broker lease_ms delivered status id...
--           XACK the ids (delivered: the id that was POSTed, '' when all of
--           them were filtered out); records the success -> 1 owner, 0 not
--   fail    n broker lease_ms id status error failures next_attempt_us
--           records a failed attempt -> 1 owner, 0 not
--   release n broker                     -> gives up the owner key if ours
--   status  n...  -> per name {owner|'', pel (-1: no group), lag, last_delivered_id,
--                   {state field, value...}}
local mode = ARGV[1]
local STREAM = 'dl:events'

local function owner_key(n) return 'dl:wh:' .. n .. ':owner' end
local function state_key(n) return 'dl:wh:' .. n .. ':state' end
local function group(n) return 'wh:' .. n end

do -- every key this call may touch is in KEYS (prelude "keys declared"):
    -- the broker names them all from ARGV (server/keys.c)
    local W = keys_walk(0)
    for i = 2, mode == 'status' and #ARGV or 2 do
        W.need(owner_key(ARGV[i]))
        W.need(state_key(ARGV[i]))
    end
    local nk = W.finish()
    if nk then return nk end
end

-- 1 if broker b owns n (renewing the lease), or took it now; 0 if another
-- broker does; 2 if it was just taken.
local function own(n, b, lease, may_take)
    local cur = rcall('GET', owner_key(n))
    if cur == b then
        rcall('PEXPIRE', owner_key(n), lease)
        return 1
    end
    if cur or not may_take then return 0 end
    rcall('SET', owner_key(n), b, 'PX', lease)
    return 2
end

-- The group's XINFO GROUPS row as a table, or nil.
local function group_info(n)
    local ok, rows = pcall(rcall, 'XINFO', 'GROUPS', STREAM)
    if not ok then return nil end
    for _, row in ipairs(rows) do
        local t = {}
        for i = 1, #row, 2 do t[row[i]] = row[i + 1] end
        if t.name == group(n) then return t end
    end
    return nil
end

local function stream_info()
    local ok, r = pcall(rcall, 'XINFO', 'STREAM', STREAM)
    if not ok then return nil end
    local t = {}
    for i = 1, #r, 2 do t[r[i]] = r[i + 1] end
    return t
end

local function id_less(a, b)
    local am, as = string.match(a, '^(%d+)-(%d+)$')
    local bm, bs = string.match(b, '^(%d+)-(%d+)$')
    am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
    return am < bm or (am == bm and as < bs)
end

-- Where group g stands in stream s. The state's `consumed` is the number
-- of entries ever added up to the group's last-delivered-id (set when the
-- group is made at '$', advanced by each read); entries-added minus the
-- length is the number ever trimmed (devlock never XDELs, and trims from
-- the front). Returns unread (-1 unknown), the unread entries trimmed
-- (lost), and consumed brought up to date (nil unknown).
-- (XINFO's own lag and entries-read do not see entries trimmed unread.)
local function position(n, g, s)
    local consumed = tonumber(rcall('HGET', state_key(n), 'consumed') or '')
    if not g or not s then return -1, 0, nil end
    if not consumed then
        if type(g.lag) == 'number' then return g.lag, 0, nil end
        return -1, 0, nil
    end
    local added, len = s['entries-added'], s.length
    local first = s['first-entry'] and s['first-entry'][1]
    if not first or id_less(g['last-delivered-id'], first) then
        -- the group is behind the stream's start: all it missed is gone
        local trimmed = added - len
        local lost = trimmed > consumed and trimmed - consumed or 0
        return len, lost, consumed + lost
    end
    return added - consumed, 0, consumed
end

if mode == 'take' then
    local n, b, lease, count = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
    local o = own(n, b, lease, true)
    local st = rcall('HMGET', state_key(n), 'failures', 'last_success_us')
    local failures, last_ok = tonumber(st[1] or '0') or 0, st[2] or '0'
    local g = group_info(n)
    if o == 0 then
        return {0, rcall('GET', owner_key(n)) or '', g and g.pending or 0,
            (position(n, g, stream_info())), 0, failures, last_ok, {}}
    end
    if not g then
        rpcall('XGROUP', 'CREATE', STREAM, group(n), '$', 'MKSTREAM')
        local s = stream_info()
        rcall('HSET', state_key(n), 'consumed', s and s['entries-added'] or 0)
        g = group_info(n)
    end
    local out, lost = {}, 0
    -- pending entries first, oldest first: after a take-over they are the
    -- previous owner's unacknowledged ones (this broker's own ones after a
    -- dropped batch); they precede every entry XREADGROUP > can return
    local c = rcall('XAUTOCLAIM', STREAM, group(n), b, 0, '0-0', 'COUNT', count)
    for _, e in ipairs(c[2]) do
        if e[2] then out[#out + 1] = e else lost = lost + 1; rcall('XACK', STREAM, group(n), e[1]) end
    end
    if c[3] then lost = lost + #c[3] end -- deleted ids (Redis 7): removed from the PEL already
    local s = stream_info()
    local unread, skipped, consumed = position(n, g, s)
    if #out < count and c[1] == '0-0' then
        -- XREADGROUP skips the entries trimmed before the group read them
        lost = lost + skipped
        local claimed = #out
        local r = rcall('XREADGROUP', 'GROUP', group(n), b, 'COUNT', count - #out, 'STREAMS', STREAM, '>')
        if r then
            for _, e in ipairs(r[1][2]) do out[#out + 1] = e end
        end
        local read = #out - claimed
        if consumed then
            consumed = consumed + read
            unread = unread - read
        elseif s and s['last-generated-id'] == (group_info(n) or {})['last-delivered-id'] then
            consumed = s['entries-added'] -- caught up: the count is known again
            unread = 0
        end
        if consumed then rcall('HSET', state_key(n), 'consumed', consumed) end
    end
    if lost > 0 then rcall('HINCRBY', state_key(n), 'lost', lost) end
    if o == 2 then
        -- consumers of earlier owners that hold nothing any more
        for _, row in ipairs(rcall('XINFO', 'CONSUMERS', STREAM, group(n))) do
            local t = {}
            for i = 1, #row, 2 do t[row[i]] = row[i + 1] end
            if t.name ~= b and t.pending == 0 then
                rcall('XGROUP', 'DELCONSUMER', STREAM, group(n), t.name)
            end
        end
    end
    local p = rcall('XPENDING', STREAM, group(n))
    return {1, b, p[1], unread, lost, failures, last_ok, out}
end

if mode == 'renew' then
    return own(ARGV[2], ARGV[3], ARGV[4], false)
end

if mode == 'ack' then
    local n, b, lease, delivered, status = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
    local ids = {}
    for i = 7, #ARGV do ids[#ids + 1] = ARGV[i] end
    -- a delivered event is acknowledged even by a broker that lost the
    -- lease meanwhile: it was delivered (the new owner may deliver it again)
    if #ids > 0 then rcall('XACK', STREAM, group(n), unpack(ids)) end
    if delivered ~= '' then
        local t = rcall('TIME')
        rcall('HSET', state_key(n), 'last_event_id', delivered, 'last_status', status,
            'last_error', '', 'failures', 0, 'next_attempt_us', 0,
            'last_success_us', string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2])))
        rcall('HINCRBY', state_key(n), 'delivered', 1)
    end
    return own(n, b, lease, false)
end

if mode == 'fail' then
    local n, b, lease = ARGV[2], ARGV[3], ARGV[4]
    rcall('HSET', state_key(n), 'last_attempt_id', ARGV[5], 'last_status', ARGV[6],
        'last_error', ARGV[7], 'failures', ARGV[8], 'next_attempt_us', ARGV[9])
    rcall('HINCRBY', state_key(n), 'failed', 1)
    return own(n, b, lease, false)
end

if mode == 'release' then
    if rcall('GET', owner_key(ARGV[2])) == ARGV[3] then
        rcall('DEL', owner_key(ARGV[2]))
        return 1
    end
    return 0
end

if mode == 'status' then
    local out, s = {}, stream_info()
    for i = 2, #ARGV do
        local n = ARGV[i]
        local g = group_info(n)
        out[#out + 1] = {n, rcall('GET', owner_key(n)) or '', g and g.pending or -1,
            (position(n, g, s)), g and g['last-delivered-id'] or '', rcall('HGETALL', state_key(n))}
    end
    return out
end

return redis.error_reply('webhook.lua: unknown mode ' .. tostring(mode))

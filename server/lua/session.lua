-- session: who owns a WebSocket session, and what happens when that ends.
--
-- A session S is owned by one socket at a time: dl:sessown:S records its
-- broker, the socket's connection id and the session's user (who first
-- claimed it). Only the owner's detach starts the grace period, so a late
-- detach from a socket the session moved away from is ignored. Each broker
-- lists the sessions it owns in dl:bsess:<B> (its waiters in dl:bwait:<B>),
-- and dl:sessbrokers lists the brokers with any: when a broker's liveness
-- key (dl:broker:<B>) has been gone for a while, the others detach its
-- sessions and drop its waiters ('reap').
--
-- ARGV: mode, session, broker, conn, user, grace ms, admin ('1'/'0'),
--       own session (attach), lost window ms (reap)
-- mode 'claim'  the socket's own new session, before its first session lock
--               -> {'ok', n}
-- mode 'attach' the socket takes S over (attach_session, resume) ->
--               {'ok', n, old broker, old conn} | {'forbidden'} | {'busy'}
-- mode 'detach' the socket closed -> {n, deadline_us (0 = none)} |
--               {'stale', the session's grace deadline_us or 0}
-- mode 'reap'   detach the sessions of dead brokers -> {n, deadline_us,
--               earliest deadline of all (0 = none): a deadline armed only
--               by a broker that died is armed by the others this way}
-- any mode    | {NEEDKEYS, key...} (prelude "keys declared")
local mode, sid, broker, conn = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local grace_ms = tonumber(ARGV[6]) or 0
-- reap: one instant for the walk below and the reap itself
local reap_now = mode == 'reap' and now_us() or nil

do -- every key this call may touch is in KEYS (prelude "keys declared")
    local W = keys_walk(0)
    local function sess(s)
        W.need('dl:sessown:' .. s)
        W.need('dl:sess:' .. s)
    end
    local function owner_broker(s)
        if not W.need('dl:sessown:' .. s) then return end
        local b = rcall('HGET', 'dl:sessown:' .. s, 'broker')
        if b and b ~= '' then W.need('dl:bsess:' .. b) end
    end
    W.need('dl:bsess:' .. broker)
    W.need('dl:brokerlost')
    if mode == 'reap' then
        local now = reap_now
        local window = tonumber(ARGV[9]) or 2000
        for _, b in ipairs(rcall('SMEMBERS', 'dl:sessbrokers')) do
            if b ~= broker then
                W.need('dl:bsess:' .. b)
                W.need('dl:bwait:' .. b)
                if W.need('dl:broker:' .. b) and rcall('EXISTS', 'dl:broker:' .. b) == 0 then
                    -- reaped by this call: its sessions and waiters
                    local seen = tonumber(rcall('HGET', 'dl:brokerlost', b) or '')
                    if seen and now - seen >= window * 1000 then
                        if S.keys['dl:bsess:' .. b] then
                            for _, s in ipairs(rcall('SMEMBERS', 'dl:bsess:' .. b)) do sess(s) end
                        end
                        if S.keys['dl:bwait:' .. b] then
                            for _, wid in ipairs(rcall('SMEMBERS', 'dl:bwait:' .. b)) do W.waiter(wid) end
                        end
                    end
                end
            end
        end
    else
        sess(sid)
        owner_broker(sid)
        if mode == 'attach' and (ARGV[8] or '') ~= '' then
            sess(ARGV[8])
            owner_broker(ARGV[8])
        end
    end
    local nk = W.finish()
    if nk then return nk end
end

local function own_key(s) return 'dl:sessown:' .. s end

local function own(s)
    local rec = hload(own_key(s))
    if rec and rec.broker == '' then rec.broker = nil end
    return rec
end

local function take(s, user)
    rcall('HSET', own_key(s), 'broker', broker, 'conn', conn, 'user', user)
    rcall('PERSIST', own_key(s))
    rcall('SADD', 'dl:bsess:' .. broker, s)
    rcall('SADD', 'dl:sessbrokers', broker)
    rcall('ZREM', 'dl:expiry', '$' .. s)
end

-- Nobody owns s any more: its locks end after the grace period.
local function release(s, from, now)
    rcall('SREM', 'dl:bsess:' .. from, s)
    local n = rcall('SCARD', 'dl:sess:' .. s)
    if n == 0 then
        rcall('DEL', own_key(s))
        return 0, 0
    end
    rcall('HSET', own_key(s), 'broker', '', 'conn', '')
    -- the owner user is kept for attaches during the grace period
    rcall('PEXPIRE', own_key(s), grace_ms + 60000)
    local deadline = now + grace_ms * 1000
    add_deadline(deadline, '$' .. s)
    return n, deadline
end

if mode == 'claim' then
    take(sid, ARGV[5])
    return {'ok', rcall('SCARD', 'dl:sess:' .. sid)}
end

if mode == 'attach' then
    -- the socket's own session, unless it has moved to another socket since
    local mine = ARGV[8] or ''
    local m = mine ~= '' and mine ~= sid and own(mine)
    if m and (m.broker ~= broker or m.conn ~= conn) then mine = '' end
    if mine ~= '' and mine ~= sid and rcall('SCARD', 'dl:sess:' .. mine) > 0 then
        return {'busy'}
    end
    local rec = own(sid)
    local user = ARGV[5]
    if rec and rec.user and rec.user ~= '' then
        if rec.user ~= user and ARGV[7] ~= '1' then return {'forbidden'} end
        user = rec.user
    end
    if m and mine ~= '' then -- the socket's own session, empty: gone
        rcall('SREM', 'dl:bsess:' .. broker, mine)
        rcall('DEL', own_key(mine))
    end
    local old_broker, old_conn = '', ''
    if rec and rec.broker then
        old_broker, old_conn = rec.broker, rec.conn or ''
        if old_broker ~= broker then rcall('SREM', 'dl:bsess:' .. old_broker, sid) end
    end
    take(sid, user)
    return {'ok', rcall('SCARD', 'dl:sess:' .. sid), old_broker, old_conn}
end

if mode == 'detach' then
    local rec = own(sid)
    local now = now_us()
    if rec then
        if rec.broker ~= broker or rec.conn ~= conn then
            -- a retry whose first try ran after all: its deadline, to arm
            local at = rcall('ZSCORE', 'dl:expiry', '$' .. sid)
            return {'stale', tonumber(at) or 0}
        end
        local n, deadline = release(sid, broker, now)
        return {n, deadline}
    end
    -- no owner record (a session from before records): the old rule
    local n = rcall('SCARD', 'dl:sess:' .. sid)
    if n == 0 then return {0, 0} end
    local deadline = now + grace_ms * 1000
    add_deadline(deadline, '$' .. sid)
    return {n, deadline}
end

if mode == 'reap' then
    -- O(brokers with sessions + sessions of the dead ones)
    local now = reap_now
    local window = tonumber(ARGV[9]) or 2000
    local n, first = 0, 0
    for _, b in ipairs(rcall('SMEMBERS', 'dl:sessbrokers')) do
        if b ~= broker then
            if rcall('EXISTS', 'dl:broker:' .. b) == 1 then
                rcall('HDEL', 'dl:brokerlost', b)
                if rcall('SCARD', 'dl:bsess:' .. b) == 0 and rcall('SCARD', 'dl:bwait:' .. b) == 0 then
                    rcall('SREM', 'dl:sessbrokers', b)
                end
            else
                local seen = tonumber(rcall('HGET', 'dl:brokerlost', b) or '')
                if not seen then
                    rcall('HSET', 'dl:brokerlost', b, int(now))
                elseif now - seen >= window * 1000 then
                    for _, s in ipairs(rcall('SMEMBERS', 'dl:bsess:' .. b)) do
                        local rec = own(s)
                        if rec and rec.broker == b then
                            local k, deadline = release(s, b, now)
                            n = n + k
                            if deadline > 0 and (first == 0 or deadline < first) then first = deadline end
                        end
                    end
                    rcall('DEL', 'dl:bsess:' .. b)
                    -- its waiters, which no read shows any more (waiter_alive):
                    -- dropped, so the read copies learn it (queue facts)
                    for _, wid in ipairs(rcall('SMEMBERS', 'dl:bwait:' .. b)) do
                        local w = hload('dl:waiter:' .. wid)
                        if w and w.broker == b then drop_waiter(wid, w) end
                    end
                    rcall('DEL', 'dl:bwait:' .. b)
                    rcall('SREM', 'dl:sessbrokers', b)
                    rcall('HDEL', 'dl:brokerlost', b)
                end
            end
        end
    end
    local nxt = rcall('ZRANGE', 'dl:expiry', 0, 0, 'WITHSCORES')
    return {n, first, tonumber(nxt[2] or 0)}
end
return redis.error_reply('session: unknown mode')

-- resume: every event after `since`, or a gap when some were trimmed away
-- (or the stream no longer reaches that id, e.g. Redis restored older data).
-- ARGV: since, max events
-- Returns {'ok', id1, json1, ...} | {'gap'}
local function parse(id)
    local ms, seq = string.match(id, '^(%d+)-(%d+)$')
    if not ms then return nil end
    return tonumber(ms), tonumber(seq)
end
local function less(a1, a2, b1, b2) return a1 < b1 or (a1 == b1 and a2 < b2) end
local sms, sseq = parse(ARGV[1])
if not sms then return {'gap'} end
local ok, info = pcall(rcall, 'XINFO', 'STREAM', 'dl:events')
if not ok then
    if sms == 0 and sseq == 0 then return {'ok'} end
    return {'gap'}
end
local f = {}
for i = 1, #info, 2 do f[info[i]] = info[i + 1] end
local lms, lseq = parse(f['last-generated-id'])
if less(lms, lseq, sms, sseq) then return {'gap'} end
local dms, dseq = parse(f['max-deleted-entry-id'] or '0-0')
if less(sms, sseq, dms, dseq) then return {'gap'} end
-- trimmed (MAXLEN/MINID do not move max-deleted-entry-id in Redis 7.0):
-- an id before the first kept entry may have lost events after it
if tonumber(f['entries-added'] or 0) > tonumber(f['length']) and f['first-entry'] then
    local fms, fseq = parse(f['first-entry'][1])
    if less(sms, sseq, fms, fseq) then return {'gap'} end
end
-- Entries without j (queue facts for the read copies) are no events: they
-- are skipped and do not count towards max; the entries examined are
-- bounded (8 * (max + 1)) and more is answered as a gap.
local max = tonumber(ARGV[2])
local out, n, examined, start = {'ok'}, 0, 0, '(' .. ARGV[1]
while true do
    local batch = rcall('XRANGE', 'dl:events', start, '+', 'COUNT', max + 1)
    if #batch == 0 then break end
    for _, e in ipairs(batch) do
        examined = examined + 1
        start = '(' .. e[1]
        for i = 1, #e[2], 2 do
            if e[2][i] == 'j' then
                n = n + 1
                if n > max then return {'gap'} end
                out[#out + 1] = e[1]
                out[#out + 1] = e[2][i + 1]
            end
        end
    end
    if #batch < max + 1 then break end
    if examined >= 8 * (max + 1) then return {'gap'} end
end
return out

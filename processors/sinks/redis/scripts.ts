/**
 * The Redis sink's two Lua scripts: `claim` (a new generation, and the progress the hash
 * holds) and `write` (a batch of commands and the progress after them, in one script run,
 * which Redis runs atomically and replicates and logs to the AOF as one MULTI/EXEC). The
 * `#!lua` line makes Redis (>= 7) refuse a writing script as a whole, before it starts, on
 * a read-only replica or above `maxmemory`, instead of failing one command inside it.
 */

/**
 * KEYS[1]: the progress hash. Returns { generation, positions ('' when none), checkpoint,
 * epoch, deadLetters (JSON) }.
 */
export const CLAIM_SCRIPT = `#!lua
local generation = redis.call('HINCRBY', KEYS[1], 'generation', 1)
local p = redis.call('HMGET', KEYS[1], 'positions', 'checkpoint', 'epoch', 'deadLetters')
return { generation, p[1] or '', p[2] or '0', p[3] or '0', p[4] or '[]' }
`

/**
 * KEYS[1]: the progress hash; KEYS[2..]: the commands' keys.
 * ARGV: generation, from, to (encodePositions text), checkpoint, epoch, the dead letters to
 * keep (a JSON array), the number of records; then per record: topic, offset, its number of
 * commands, and per command: op, the index of its key in KEYS, its number of arguments, the
 * arguments.
 *
 * Nothing is written unless the hash has generation ARGV[1] (else { 'fenced', generation })
 * and positions `from` (positions `to`: { 'already-written', positions, checkpoint, epoch,
 * deadLetters }; others: { 'corrupted', positions }). Each command runs with redis.pcall, so
 * one Redis refuses (WRONGTYPE, a non-integer for INCRBY) refuses its record alone: the
 * record's earlier commands are undone from DUMPs taken before it (a record of one command
 * has nothing to undo), and its dead letter is kept in the progress. Returns
 * { 'written', index, dead letter JSON, index, dead letter JSON, ... } (indexes from 0).
 */
export const WRITE_SCRIPT = `#!lua
local progress = KEYS[1]
local generation = redis.call('HGET', progress, 'generation')
if generation ~= ARGV[1] then return { 'fenced', generation or '' } end
local positions = redis.call('HGET', progress, 'positions') or '{}'
if positions ~= ARGV[2] then
  if positions == ARGV[3] then
    local p = redis.call('HMGET', progress, 'checkpoint', 'epoch', 'deadLetters')
    return { 'already-written', positions, p[1] or '0', p[2] or '0', p[3] or '[]' }
  end
  return { 'corrupted', positions }
end

local function apply(op, key, args)
  if op == 'set' then
    if args[2] ~= '' then return redis.pcall('SET', key, args[1], 'PX', args[2]) end
    return redis.pcall('SET', key, args[1])
  elseif op == 'hset' then
    return redis.pcall('HSET', key, unpack(args))
  elseif op == 'xadd' then
    if args[1] ~= '' then return redis.pcall('XADD', key, 'MAXLEN', '=', args[1], '*', unpack(args, 2)) end
    return redis.pcall('XADD', key, '*', unpack(args, 2))
  elseif op == 'incrby' then
    return redis.pcall('INCRBY', key, args[1])
  elseif op == 'del' then
    return redis.pcall('DEL', key)
  end
  return { err = 'ERR unknown op ' .. tostring(op) }
end

local reply = { 'written' }
local dead = {}
local i = 8
for record = 0, tonumber(ARGV[7]) - 1 do
  local topic, offset, count = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  i = i + 3
  local commands = {}
  for c = 1, count do
    local n = tonumber(ARGV[i + 2])
    local args = {}
    for a = 1, n do args[a] = ARGV[i + 2 + a] end
    commands[c] = { ARGV[i], KEYS[tonumber(ARGV[i + 1])], args }
    i = i + 3 + n
  end
  local before
  if count > 1 then
    before = {}
    for c = 1, count do
      local key = commands[c][2]
      if before[key] == nil then before[key] = { redis.call('DUMP', key), redis.call('PTTL', key) } end
    end
  end
  for c = 1, count do
    local op, key = commands[c][1], commands[c][2]
    local r = apply(op, key, commands[c][3])
    if type(r) == 'table' and r.err then
      if before then
        for k, s in pairs(before) do
          redis.call('DEL', k)
          if s[1] then redis.call('RESTORE', k, s[2] > 0 and s[2] or 0, s[1]) end
        end
      end
      local letter = cjson.encode({
        topic = topic, offset = offset, code = 'WEIR_PROCESSING_FAILED',
        message = 'Redis refused ' .. string.upper(op) .. ' ' .. key .. ': ' .. r.err,
        detail = { redisError = r.err, op = op, key = key, command = c - 1 },
      })
      dead[#dead + 1] = letter
      reply[#reply + 1] = record
      reply[#reply + 1] = letter
      break
    end
  end
end

local letters = ARGV[6]
if #dead > 0 then
  if letters == '[]' then letters = '[' .. table.concat(dead, ',') .. ']'
  else letters = string.sub(letters, 1, -2) .. ',' .. table.concat(dead, ',') .. ']' end
end
redis.call('HSET', progress, 'positions', ARGV[3], 'checkpoint', ARGV[4], 'epoch', ARGV[5], 'deadLetters', letters)
return reply
`

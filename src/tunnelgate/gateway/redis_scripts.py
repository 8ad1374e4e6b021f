"""The Redis registry's keys and Lua scripts: each registry call is one script, run
atomically by Redis in one round trip (docs/cluster.md, "Registry").

Keys (a standalone Redis: the scripts derive some keys from what they read, which a Redis
Cluster would refuse):

    tunnelgate:lease:<name>        hash: o (1 online, 0 held), p principal, c client id
                                   ("" for none), a anonymous (1/0), n node, t token;
                                   PX = the node's liveness TTL (online) or the grace (held)
    tunnelgate:owned:<principal>   sorted set: the principal's online names, scored by
                                   when their lease runs out (ms, Redis's clock)
    tunnelgate:ports               sorted set: the `port:N` names that have a lease (online
                                   or held), scored by when it runs out (ms, Redis's clock):
                                   kept by the same scripts as the leases, so the port
                                   follower reads the claimed ports, not the whole range
    tunnelgate:token               the fencing counter (INCR); when missing (a fresh or
                                   restarted Redis) it starts from Redis's clock in
                                   microseconds, so new tokens are above every earlier one

Every change of owner is published on OWNERS_CHANNEL (the name, or `port:N`) from inside
the script that made it. Tokens cross Lua as strings: they are above 2^47, and Lua's
tostring keeps 14 digits.
"""

from __future__ import annotations

from typing import Final

LEASE_PREFIX: Final = "tunnelgate:lease:"
OWNED_PREFIX: Final = "tunnelgate:owned:"
TOKEN_KEY: Final = "tunnelgate:token"
PORTS_KEY: Final = "tunnelgate:ports"
PORT_PREFIX: Final = "port:"  # tcp.port_key's: the names the port index keeps
OWNERS_CHANNEL: Final = "tunnelgate:owners"

# Shared by the scripts that write a lease: the counter started from the clock if missing.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Shared by the scripts that write or drop a lease: a TCP port's name (`port:N`) is kept in
# the port index with its lease's expiry (ms, Redis's clock) as score, or dropped from it.
_PORT_INDEX = """
local function index_port(index, name, expires)
  if string.sub(name, 1, 5) == 'port:' then
    if expires then
      redis.call('ZADD', index, expires, name)
    else
      redis.call('ZREM', index, name)
    end
  end
end
"""

# KEYS: lease, owned set of the claimant, token counter, port index.
# ARGV: name, principal, client id, anonymous, node, ttl ms, owned prefix, channel.
# Returns {0} (taken) or {1, token, reclaimed}. The owner rules are MemoryRegistry's
# `_may_take`: a held name goes back to its owner; an online one only to the same client.
CLAIM: Final = (
    _NOW
    + _PORT_INDEX
    + """
local cur = redis.call('HMGET', KEYS[1], 'o', 'p', 'c', 'a')
local reclaimed = 0
if cur[1] then
  local same
  if cur[1] == '0' then
    same = cur[2] == ARGV[2] and (cur[4] == '0' or (ARGV[3] ~= '' and cur[3] == ARGV[3]))
  else
    same = cur[2] == ARGV[2] and ARGV[3] ~= '' and cur[3] == ARGV[3]
  end
  if not same then return {0} end
  if cur[1] == '1' then redis.call('ZREM', ARGV[7] .. cur[2], ARGV[1]) end
  reclaimed = 1
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], t[1] .. string.format('%06d', tonumber(t[2])))
end
local token = string.format('%d', redis.call('INCR', KEYS[3]))
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'o', '1', 'p', ARGV[2], 'c', ARGV[3], 'a', ARGV[4],
           'n', ARGV[5], 't', token)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), ARGV[1])
index_port(KEYS[4], ARGV[1], now + tonumber(ARGV[6]))
redis.call('PUBLISH', ARGV[8], ARGV[1])
return {1, token, reclaimed}
"""
)

# KEYS: lease, port index. ARGV: name, token, owned prefix, channel.
# Returns 1 if it was the lease.
RELEASE: Final = (
    _PORT_INDEX
    + """
local cur = redis.call('HMGET', KEYS[1], 't', 'o', 'p')
if cur[1] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
index_port(KEYS[2], ARGV[1], nil)
if cur[2] == '1' then redis.call('ZREM', ARGV[3] .. cur[3], ARGV[1]) end
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
"""
)

# KEYS: lease, port index. ARGV: name, token, grace ms (0: free at once), owned prefix,
# channel. Returns 1 if it was the lease, online.
HOLD: Final = (
    _NOW
    + _PORT_INDEX
    + """
local cur = redis.call('HMGET', KEYS[1], 't', 'o', 'p')
if cur[1] ~= ARGV[2] or cur[2] ~= '1' then return 0 end
redis.call('ZREM', ARGV[4] .. cur[3], ARGV[1])
if tonumber(ARGV[3]) <= 0 then
  redis.call('DEL', KEYS[1])
  index_port(KEYS[2], ARGV[1], nil)
else
  redis.call('HSET', KEYS[1], 'o', '0')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  index_port(KEYS[2], ARGV[1], now + tonumber(ARGV[3]))
end
redis.call('PUBLISH', ARGV[5], ARGV[1])
return 1
"""
)

# KEYS: lease. Returns nil, or {o, p, c, a, n, t, pttl ms}.
LOOKUP: Final = """
local v = redis.call('HMGET', KEYS[1], 'o', 'p', 'c', 'a', 'n', 't')
if not v[1] then return false end
v[7] = redis.call('PTTL', KEYS[1])
return v
"""

# KEYS: port index. ARGV: low, high (the range asked about). Drops the entries that ran
# out or whose lease is gone (cleaned as it reads), then returns, for each port in the
# range that has a lease, {port, o, p, c, a, n, t, pttl ms}: cost bounded by the ports
# claimed across the cluster, not by the range.
PORTS: Final = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local low, high = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local port = tonumber(string.sub(name, 6))
  if port and port >= low and port <= high then
    local lease = ARGV[3] .. name
    local v = redis.call('HMGET', lease, 'o', 'p', 'c', 'a', 'n', 't')
    if v[1] then
      table.insert(out, {port, v[1], v[2], v[3], v[4], v[5], v[6], redis.call('PTTL', lease)})
    else
      redis.call('ZREM', KEYS[1], name)
    end
  end
end
return out
"""
)

# KEYS: owned set. Drops what ran out (each entry once), then counts.
COUNT: Final = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""
)

# The keeper's batch. KEYS: token counter, port index, then one lease key per lease.
# ARGV: ttl ms, owned prefix, channel, then per lease: name, token, principal, client id,
# anonymous, node, held (0: an online lease; else a held one, the ms of grace it has left).
# Returns per lease 0 (kept: an online one's TTL and score refreshed, a held one left to
# run out), 1 (re-asserted: it was missing, e.g. after a Redis restart, and is written
# back with its token: online with the TTL, held with its grace left) or 2 (lost: another
# lease has the name now).
KEEP: Final = (
    _NOW
    + _PORT_INDEX
    + """
local ttl = tonumber(ARGV[1])
local out = {}
for i = 3, #KEYS do
  local b = 3 + (i - 3) * 7
  local name, token, p = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local held = tonumber(ARGV[b + 7])
  local cur = redis.call('HMGET', KEYS[i], 't', 'o')
  if cur[1] == token then
    if cur[2] == '1' and held == 0 then
      redis.call('PEXPIRE', KEYS[i], ttl)
      redis.call('ZADD', ARGV[2] .. p, now + ttl, name)
      index_port(KEYS[2], name, now + ttl)
    end
    out[i - 2] = 0
  elseif cur[1] then
    out[i - 2] = 2
  else
    redis.call('HSET', KEYS[i], 'o', held == 0 and '1' or '0', 'p', p, 'c', ARGV[b + 4],
               'a', ARGV[b + 5], 'n', ARGV[b + 6], 't', token)
    if held == 0 then
      redis.call('PEXPIRE', KEYS[i], ttl)
      redis.call('ZADD', ARGV[2] .. p, now + ttl, name)
      index_port(KEYS[2], name, now + ttl)
    else
      redis.call('PEXPIRE', KEYS[i], held)
      index_port(KEYS[2], name, now + held)
    end
    local have = redis.call('GET', KEYS[1])
    if not have or tonumber(have) < tonumber(token) then redis.call('SET', KEYS[1], token) end
    redis.call('PUBLISH', ARGV[3], name)
    out[i - 2] = 1
  end
end
return out
"""
)

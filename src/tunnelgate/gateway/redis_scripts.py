"""The Redis registry's keys and Lua scripts: each registry call is one script, run
atomically by Redis in one round trip (docs/cluster.md, "Registry").

Keys (a standalone Redis: the scripts derive some keys from what they read, which a Redis
Cluster would refuse):

    tunnelgate:lease:<name>        hash: o (1 online, 0 held), p principal, c client id
                                   ("" for none), a anonymous (1/0), n node, t token;
                                   PX = the node's liveness TTL (online) or the grace (held)
    tunnelgate:owned:<principal>   sorted set: the principal's online names, scored by
                                   when their lease runs out (ms, Redis's clock)
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
OWNERS_CHANNEL: Final = "tunnelgate:owners"

# Shared by the scripts that write a lease: the counter started from the clock if missing.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: lease, owned set of the claimant, token counter.
# ARGV: name, principal, client id, anonymous, node, ttl ms, owned prefix, channel.
# Returns {0} (taken) or {1, token, reclaimed}. The owner rules are MemoryRegistry's
# `_may_take`: a held name goes back to its owner; an online one only to the same client.
CLAIM: Final = (
    _NOW
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
redis.call('PUBLISH', ARGV[8], ARGV[1])
return {1, token, reclaimed}
"""
)

# KEYS: lease. ARGV: name, token, owned prefix, channel. Returns 1 if it was the lease.
RELEASE: Final = """
local cur = redis.call('HMGET', KEYS[1], 't', 'o', 'p')
if cur[1] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
if cur[2] == '1' then redis.call('ZREM', ARGV[3] .. cur[3], ARGV[1]) end
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
"""

# KEYS: lease. ARGV: name, token, grace ms (0: free at once), owned prefix, channel.
# Returns 1 if it was the lease, online.
HOLD: Final = """
local cur = redis.call('HMGET', KEYS[1], 't', 'o', 'p')
if cur[1] ~= ARGV[2] or cur[2] ~= '1' then return 0 end
redis.call('ZREM', ARGV[4] .. cur[3], ARGV[1])
if tonumber(ARGV[3]) <= 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'o', '0')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
redis.call('PUBLISH', ARGV[5], ARGV[1])
return 1
"""

# KEYS: lease. Returns nil, or {o, p, c, a, n, t, pttl ms}.
LOOKUP: Final = """
local v = redis.call('HMGET', KEYS[1], 'o', 'p', 'c', 'a', 'n', 't')
if not v[1] then return false end
v[7] = redis.call('PTTL', KEYS[1])
return v
"""

# KEYS: owned set. Drops what ran out (each entry once), then counts.
COUNT: Final = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""
)

# The keeper's batch. KEYS: token counter, then one lease key per lease.
# ARGV: ttl ms, owned prefix, channel, then per lease: name, token, principal, client id,
# anonymous, node. Returns per lease 0 (kept: TTL and score refreshed), 1 (re-asserted:
# it was missing, e.g. after a Redis restart, and is written back with its token) or
# 2 (lost: another lease has the name now).
KEEP: Final = (
    _NOW
    + """
local ttl = tonumber(ARGV[1])
local out = {}
for i = 2, #KEYS do
  local b = 3 + (i - 2) * 6
  local name, token, p = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local cur = redis.call('HMGET', KEYS[i], 't', 'o')
  if cur[1] == token then
    if cur[2] == '1' then
      redis.call('PEXPIRE', KEYS[i], ttl)
      redis.call('ZADD', ARGV[2] .. p, now + ttl, name)
    end
    out[i - 1] = 0
  elseif cur[1] then
    out[i - 1] = 2
  else
    redis.call('HSET', KEYS[i], 'o', '1', 'p', p, 'c', ARGV[b + 4], 'a', ARGV[b + 5],
               'n', ARGV[b + 6], 't', token)
    redis.call('PEXPIRE', KEYS[i], ttl)
    redis.call('ZADD', ARGV[2] .. p, now + ttl, name)
    local have = redis.call('GET', KEYS[1])
    if not have or tonumber(have) < tonumber(token) then redis.call('SET', KEYS[1], token) end
    redis.call('PUBLISH', ARGV[3], name)
    out[i - 1] = 1
  end
end
return out
"""
)

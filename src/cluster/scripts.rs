//! The Lua scripts that make each shared operation one atomic step in Redis: the token bucket,
//! the quota counter, and the issuance lock with its fencing token. Time comes from Redis
//! (`TIME`), so instances with skewed clocks still agree.

use std::sync::LazyLock;

use redis::Script;

/// KEYS[1] bucket; ARGV: tokens per millisecond, burst. Returns 0 when a token was taken, else
/// the milliseconds until one is there.
pub static TAKE_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 't', 'v')
local tokens = burst
if state[1] and state[2] then
  tokens = math.min(burst, tonumber(state[2]) + math.max(0, now - tonumber(state[1])) * rate)
end
if tokens >= 1 then
  tokens = tokens - 1
  redis.call('HSET', KEYS[1], 't', now, 'v', string.format('%.17g', tokens))
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
  return 0
end
return math.max(1, math.ceil((1 - tokens) / rate))
"#,
    )
});

/// KEYS[1] counter; ARGV: tokens to add, window in milliseconds. Starts the window on the first
/// count. Returns the new total.
pub static ADD_TOKENS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return total
"#,
    )
});

/// KEYS[1] counter. Returns {tokens used, milliseconds left in the window} ({0, 0} when none).
pub static READ_TOKENS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local left = redis.call('PTTL', KEYS[1])
if left < 0 then left = 0 end
return {used, left}
"#,
    )
});

/// KEYS[1] lock, KEYS[2] fence counter; ARGV: lock id, lifetime in ms. Returns the fencing token
/// (> 0) when the lock was free, else 0.
pub static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"#,
    )
});

/// KEYS[1] lock; ARGV: lock id, lifetime in ms. 1 when still held (and extended), else 0.
pub static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#,
    )
});

/// KEYS[1] lock; ARGV[1] lock id. Deletes the lock only if it is still this holder's.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});

/// KEYS[1] lock, KEYS[2] certificate hash; ARGV: lock id, fencing token, chain, key, meta,
/// holder name. 1 stored; 0 the lock is no longer this holder's; -1 a later holder already
/// stored (its fencing token is higher).
pub static STORE_CERT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local stored = tonumber(redis.call('HGET', KEYS[2], 'fence') or '0')
if stored > tonumber(ARGV[2]) then
  return -1
end
redis.call('HSET', KEYS[2], 'fence', ARGV[2], 'chain', ARGV[3], 'key', ARGV[4], 'meta', ARGV[5], 'by', ARGV[6])
return 1
"#,
    )
});

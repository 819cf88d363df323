"""The Redis counter backend: counters and reservations shared by every replica.

Each operation is one Lua script, run with ``EVALSHA`` (one round trip), so a
reservation across every applicable counter is checked and applied atomically
— Redis runs one script at a time. The scripts go over one pipelined connection
(`resp.Pipe`, about half the client-side cost of redis-py's pool); renewals and
the sweeper's reads use redis-py.

Data layout (``P`` is ``caps.redis_prefix``, "tokenomy:" by default):

    P c:<counter>   hash: bucket number -> integer (settled + held) in the counter's unit;
                    with more than one bucket per window, also p -> the window's sum
                    before its newest bucket (see `_WINDOW`)
    P r:<rid>       hash: s = "live" | "released", p = the holds as JSON (for the sweeper)
    P rx            sorted set: rid -> lease expiry (unix milliseconds)
    P seeded        the seed mark: a reservation made under another mark than the
                    replica's own (none: Redis lost its data) waits for the replica
                    to seed its counters from the ledger (`when_lost`)

Amounts travel as decimal strings and are added with ``HINCRBY`` (64-bit
integers); the scripts compare totals as Lua numbers (doubles), exact below
2**53 (`counters.MAX_UNITS`). A released reservation stays as a tombstone for
`counters.TOMBSTONE_TTL` seconds so that a late settle by its owner still counts.

When Redis cannot be reached (or answers slower than ``caps.redis_timeout``, 5 s),
every call raises `CountersUnavailable` and further calls fail fast for one
second; then one call at a time tries Redis again (the others still fail fast)
until one gets an answer.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .counters import TOMBSTONE_TTL, CountersUnavailable, Hold, Pending, Reserved, Settled, Window
from .resp import Pipe, ReplyError, Script

log = logging.getLogger("tokenomy.caps")

# Shared by the scripts: the total of a window, and the oldest bucket with something in it.
# A counter of more than one bucket keeps in its field 'p' the sum of the window before
# its newest bucket: "bucket span sum oldest" (oldest: the first bucket of that range with
# something in it, -1: none). A reader in that bucket adds the bucket itself to the sum
# (one HMGET) instead of reading every bucket; the first reader in a new bucket reads
# them all and writes 'p' again (a reader behind 'p', a replica whose clock is late or
# a settle asking for an old window's total, reads them all and leaves 'p' as it is:
# the third value `window` returns says whether 'p' is now the bucket read). Every
# write to a bucket in the summed range keeps 'p' true (`touched`); a write it cannot
# follow drops 'p', and the next reader recounts.
_WINDOW = """
-- 'p' read: its bucket, span, sum and oldest bucket, as numbers.
local function parse_p(p)
  local pb, ps, sum, old = string.match(p, '^(%S+) (%S+) (%S+) (%S+)$')
  return tonumber(pb), tonumber(ps), tonumber(sum), tonumber(old)
end

local function window(key, bucket, span)
  if span == 1 then
    local v = redis.call('HGET', key, bucket)
    if v and tonumber(v) ~= 0 then return tonumber(v), tonumber(bucket) end
    return 0, nil
  end
  local b = tonumber(bucket)
  local got = redis.call('HMGET', key, 'p', bucket)
  local cur = tonumber(got[2]) or 0
  local keep_p = false  -- 'p' belongs to a newer bucket (a reader behind): leave it
  if got[1] then
    local pb, ps, sum, old = parse_p(got[1])
    if pb == b and ps == span then
      if old < 0 then
        old = nil
        if cur ~= 0 then old = b end
      end
      return sum + cur, old, true
    end
    keep_p = pb > b and ps == span
  end
  local all = redis.call('HGETALL', key)
  if #all == 0 then return 0, nil, false end
  local first = b - span + 1
  local sum, old = 0, nil
  for i = 1, #all, 2 do
    local f = tonumber(all[i])
    if f and f >= first and f < b then
      local v = tonumber(all[i + 1])
      sum = sum + v
      if v ~= 0 and (old == nil or f < old) then old = f end
    end
  end
  if not keep_p then
    redis.call('HSET', key, 'p', string.format('%d %d %.0f %d', b, span, sum, old or -1))
  end
  if old == nil and cur ~= 0 then old = b end
  return sum + cur, old, not keep_p
end

-- After `delta` was added to bucket f of a counter of more than one bucket (it now
-- holds `value`): the same change to 'p' when f lies in its summed range.
local function touched(key, f, delta, value)
  local p = redis.call('HGET', key, 'p')
  if not p then return end
  local pb, ps, sum, old = parse_p(p)
  f = tonumber(f)
  if f >= pb or f < pb - ps + 1 then return end
  value = tonumber(value)
  if value == 0 and f == old then  -- its oldest bucket emptied: the next reader recounts
    redis.call('HDEL', key, 'p')
    return
  end
  if value ~= 0 and (old < 0 or f < old) then old = f end
  redis.call('HSET', key, 'p',
    string.format('%d %d %.0f %d', pb, ps, sum + tonumber(delta), old))
end
"""

# KEYS: rx, r:<rid>, then one counter per hold, then the seed mark.
# ARGV: rid, expiry ms, payload, then per hold one string (few arguments pack fast):
#       "bucket span keep ttl_ms amount limit", ttl -1: none, limit -1: none;
#       last, the seed mark this replica last saw.
# A seed mark that is not the one the replica saw (none: Redis restarted empty or
# was flushed) changes nothing and returns {-1, mark}: the replica seeds its
# counters from the ledger first (`RedisCounters.when_lost`).
RESERVE = (
    _WINDOW
    + """
local mark = redis.call('GET', KEYS[#KEYS])
if mark ~= ARGV[#ARGV] then return {-1, mark or ''} end
local n = #ARGV - 4
local totals, oldest, refused, holds = {}, {}, {}, {}
for i = 1, n do
  local bucket, span, keep, ttl, amount, limit =
    string.match(ARGV[3 + i], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
  local total, old, at = window(KEYS[2 + i], bucket, tonumber(span))
  holds[i] = {bucket, keep, ttl, amount, span ~= '1', at}
  totals[i] = total
  oldest[i] = old or -1
  local a, l = tonumber(amount), tonumber(limit)
  if l >= 0 then
    if (a > 0 and total + a > l) or (a == 0 and total >= l) then
      refused[#refused + 1] = i - 1
    end
  end
end
if #refused == 0 then
  -- Each write lands in the bucket just read: 'p' does not sum it when it is of that
  -- bucket, and is told otherwise. The buckets dropped are older than the window
  -- (keep >= span), and older still than the range of a newer 'p'.
  for i = 1, n do
    local key, h = KEYS[2 + i], holds[i]
    local bucket, keep, ttl, amount = h[1], tonumber(h[2]), h[3], h[4]
    if amount ~= '0' then
      local value = redis.call('HINCRBY', key, bucket, amount)
      if h[5] and not h[6] then touched(key, bucket, amount, value) end
    end
    local fields = keep
    if h[5] then fields = keep + 1 end  -- the buckets and 'p'
    if redis.call('HLEN', key) > fields then
      local floor = tonumber(bucket) - keep + 1
      for _, f in ipairs(redis.call('HKEYS', key)) do
        local fb = tonumber(f)
        if fb and fb < floor then redis.call('HDEL', key, f) end
      end
    end
    if ttl ~= '-1' then redis.call('PEXPIRE', key, ttl) end
  end
  redis.call('HSET', KEYS[2], 's', 'live', 'p', ARGV[3])
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
local out = {n, #refused}
for i = 1, n do out[#out + 1] = totals[i] end
for i = 1, n do out[#out + 1] = oldest[i] end
for _, r in ipairs(refused) do out[#out + 1] = r end
return out
"""
)

# KEYS: rx, r:<rid>, then one counter per hold.
# ARGV: rid, op ("settle" | "sweep" | "release"), now ms, tombstone ms,
#       then per hold one string: "bucket span delta actual ttl_ms want" (delta = actual -
#       held; want 1: report the window's total afterwards, 0: report -1).
# "settle" is the owner's: on a live reservation it applies the deltas; on a
# released one (swept while the owner still ran) it charges the actual amounts.
# "sweep" and "release" act only on a live reservation whose lease has run out.
FINISH = (
    _WINDOW
    + """
local state = redis.call('HGET', KEYS[2], 's')
if not state then return {0} end
local op = ARGV[2]
local charge_actual = false
if op == 'settle' then
  charge_actual = state ~= 'live'
else
  if state ~= 'live' then return {0} end
  local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if score and tonumber(score) > tonumber(ARGV[3]) then return {0} end
end
local n = #ARGV - 4
local holds = {}
for i = 1, n do
  local bucket, span, delta, actual, ttl, want =
    string.match(ARGV[4 + i], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
  holds[i] = {bucket, tonumber(span), want}
  local amount = delta
  if charge_actual then amount = actual end
  if amount ~= '0' then
    local key = KEYS[2 + i]
    local value = redis.call('HINCRBY', key, bucket, amount)
    if span ~= '1' then touched(key, bucket, amount, value) end
    if ttl ~= '-1' then redis.call('PEXPIRE', key, ttl) end
  end
end
if op == 'release' then
  redis.call('HSET', KEYS[2], 's', 'released')
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
else
  redis.call('DEL', KEYS[2])
end
redis.call('ZREM', KEYS[1], ARGV[1])
local out = {1}
for i = 1, n do
  local total = -1
  if holds[i][3] == '1' then total = window(KEYS[2 + i], holds[i][1], holds[i][2]) end
  out[#out + 1] = total
end
return out
"""
)

# KEYS: counters. ARGV: per window: bucket, span.
TOTALS = (
    _WINDOW
    + """
local out = {}
for i = 1, #KEYS do
  local total = window(KEYS[i], ARGV[2 * i - 1], tonumber(ARGV[2 * i]))
  out[i] = total
end
return out
"""
)

# KEYS: counter. ARGV: bucket, value, ttl ms (-1: none).
SEED = """
local set = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
if set == 1 then redis.call('HDEL', KEYS[1], 'p') end  -- recounted by the next reader
if ARGV[3] ~= '-1' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return set
"""

DOWN_FOR = 1.0  # seconds calls fail fast after Redis was found unreachable
CONNECT_TIMEOUT = 2.0  # seconds; a refused connection fails at once whatever this is
BACKGROUND_CONNECTIONS = 4  # redis-py's, for renewals and the sweeper's reads
SCRIPT_CONNECTIONS = 32  # redis-py's where it runs the scripts as well (TLS)
POOL_WAIT = 5.0  # seconds a call may wait for a free redis-py connection


def _ms(seconds: float | None) -> str:
    return "-1" if seconds is None else str(max(int(seconds * 1000), 1))


def _encode(holds: Sequence[Hold]) -> bytes:
    return orjson.dumps(
        [
            [
                h.window.key,
                h.window.bucket,
                h.window.span,
                h.window.keep,
                h.window.ttl,
                h.amount,
                h.limit,
                h.measure,
            ]
            for h in holds
        ]
    )


def _decode(payload: bytes | str) -> tuple[Hold, ...]:
    return tuple(
        Hold(Window(k, b, s, keep, ttl), amount, limit, measure)
        for k, b, s, keep, ttl, amount, limit, measure in orjson.loads(payload)
    )


class RedisCounters:
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tokenomy:",
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        pipe: bool = True,
    ) -> None:
        self.prefix = prefix
        self.clock = clock
        self.url = url
        # The request path's scripts go over one pipelined connection (`resp.Pipe`);
        # redis-py serves the background work (renewals, the sweeper's reads), and
        # the scripts too where `Pipe` cannot: over TLS (rediss://).
        connect_timeout = max(timeout, CONNECT_TIMEOUT)
        scripts_here = url.startswith("rediss://") or not pipe
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=SCRIPT_CONNECTIONS if scripts_here else BACKGROUND_CONNECTIONS,
            timeout=POOL_WAIT,
            socket_timeout=timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
            driver_info=None,  # no CLIENT SETINFO round trips on each new connection
        )
        self.r: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self.pipe = (
            None if scripts_here else Pipe(url, timeout=timeout, connect_timeout=connect_timeout)
        )
        self._reserve, self._finish, self._totals, self._seed = (
            _PyScript(self.r, source) if self.pipe is None else Script(self.pipe, source)
            for source in (RESERVE, FINISH, TOTALS, SEED)
        )
        self._open: dict[str, tuple[Hold, ...]] = {}
        self._down_until = 0.0
        self._probing = False  # a call is finding out whether Redis is back
        self.rx = prefix + "rx"
        self.mark = prefix + "seeded"
        self._seen = ""  # the seed mark under which this replica's counters are seeded
        self._lost: list[Callable[[], Awaitable[None]]] = []
        self._reseeding: asyncio.Lock | None = None

    def _c(self, key: str) -> str:
        return self.prefix + "c:" + key

    def _rkey(self, rid: str) -> str:
        return self.prefix + "r:" + rid

    async def _call(self, fn: Script | _PyScript, keys: list[str], args: list[Any]) -> Any:
        # After a failure, Redis is asked again after DOWN_FOR, by one call at a time
        # until it answers: the others fail at once instead of each waiting for the
        # timeout of a Redis that stalls.
        probe = False
        if self._down_until:
            if self._probing or time.monotonic() < self._down_until:
                raise CountersUnavailable("Redis was unreachable a moment ago")
            probe = self._probing = True
        try:
            result = await fn(keys, args)
        except (ReplyError, RedisError, OSError) as exc:
            self._down_until = time.monotonic() + DOWN_FOR
            raise CountersUnavailable(f"Redis: {exc}") from exc
        finally:
            if probe:
                self._probing = False
        self._down_until = 0.0
        return result

    def nudge(self) -> None:
        """A request arrived: wake Redis now if the connection has been idle (`Pipe.nudge`)."""
        if self.pipe is not None:
            self.pipe.nudge()

    async def warm(self) -> None:
        """Open the connection and load the scripts now, not under the first burst."""
        try:
            if self.pipe is None:  # redis-py runs the scripts: open its pool now
                await asyncio.gather(*(self.r.ping() for _ in range(SCRIPT_CONNECTIONS)))
            for script in (self._reserve, self._finish, self._totals, self._seed):
                await script.load()
        except (ReplyError, RedisError, OSError) as exc:
            raise CountersUnavailable(f"Redis: {exc}") from exc

    # -- the interface ----------------------------------------------------------------------

    def when_lost(self, seed: Callable[[], Awaitable[None]]) -> None:
        """Call ``seed`` when Redis turns out to have lost the counters (restarted
        empty, flushed), before anything more is reserved: it seeds every counter
        this replica knows from the ledger (`seed`), or raises."""
        self._lost.append(seed)

    async def reserve(self, rid: str, holds: Sequence[Hold], *, lease: float) -> Reserved:
        now = self.clock()
        keys = [self.rx, self._rkey(rid), *(self._c(h.window.key) for h in holds), self.mark]
        args: list[Any] = [rid, int((now + lease) * 1000), _encode(holds)]
        for h in holds:
            w = h.window
            limit = -1 if h.limit is None else h.limit
            args.append(f"{w.bucket} {w.span} {w.keep} {_ms(w.ttl)} {h.amount} {limit}")
        out = await self._call(self._reserve, keys, [*args, self._seen])
        if int(out[0]) < 0:
            await self._seed_again(_text(out[1]))
            out = await self._call(self._reserve, keys, [*args, self._seen])
            if int(out[0]) < 0:
                raise CountersUnavailable("Redis lost its counters again while they were seeded")
        n, nref = int(out[0]), int(out[1])
        totals = tuple(int(v) for v in out[2 : 2 + n])
        oldest = tuple(None if int(v) < 0 else int(v) for v in out[2 + n : 2 + 2 * n])
        refused = tuple(int(v) for v in out[2 + 2 * n : 2 + 2 * n + nref])
        if not refused:
            self._open[rid] = tuple(holds)
        return Reserved(totals, refused, oldest)

    async def _seed_again(self, mark: str) -> None:
        """The seed mark is not the one this replica seeded under: Redis lost the
        counters (restarted empty, flushed), or another replica found that out and
        seeded its own. Seed this replica's counters from the ledger (where they
        do not exist: `seed` never overwrites), then adopt the mark. Reservations
        wait meanwhile; ones made before the loss went with it (see docs/caps.md)."""
        seen = self._seen
        if self._reseeding is None:
            self._reseeding = asyncio.Lock()
        async with self._reseeding:
            if self._seen != seen:
                return  # another call of this replica has just done it
            if seen:  # (a replica's first reservation seeds once more what start-up did)
                log.warning("Redis has lost the caps counters (restarted empty or flushed): "
                            "seeding them again from the ledger")  # fmt: skip
            for seed in self._lost:
                try:
                    await seed()
                except CountersUnavailable:
                    raise
                except Exception as exc:  # the ledger is unreachable: so are the counters
                    raise CountersUnavailable(f"seeding the counters failed: {exc!r}") from exc
            if not mark:  # the first replica to finish names the new state; the others adopt it
                mark = await self._new_mark()
            self._seen = mark

    async def _new_mark(self) -> str:
        """Set a new seed mark unless another replica has just set one; the mark."""
        token = secrets.token_hex(8)
        try:
            if self.pipe is not None:
                await self.pipe.call("SET", self.mark, token, "NX")
                got = await self.pipe.call("GET", self.mark)
            else:
                await self.r.set(self.mark, token, nx=True)
                got = await self.r.get(self.mark)
        except (ReplyError, RedisError, OSError) as exc:
            self._down_until = time.monotonic() + DOWN_FOR
            raise CountersUnavailable(f"Redis: {exc}") from exc
        return "" if got is None else _text(got)

    async def _run_finish(
        self,
        op: str,
        rid: str,
        holds: Sequence[Hold],
        actual: Sequence[int],
        want: Sequence[bool] | None = None,
    ) -> Settled:
        keys = [self.rx, self._rkey(rid), *(self._c(h.window.key) for h in holds)]
        args: list[Any] = [rid, op, int(self.clock() * 1000), _ms(TOMBSTONE_TTL)]
        for i, (h, a) in enumerate(zip(holds, actual, strict=True)):
            w = h.window
            flag = 1 if want is None or want[i] else 0
            args.append(f"{w.bucket} {w.span} {a - h.amount} {a} {_ms(w.ttl)} {flag}")
        out = await self._call(self._finish, keys, args)
        if not int(out[0]):
            return Settled(False)
        return Settled(True, tuple(int(v) for v in out[1:]))

    async def settle(
        self, rid: str, actual: Sequence[int], *, want: Sequence[bool] | None = None
    ) -> Settled:
        holds = self._open.pop(rid, None)
        if holds is None:
            return Settled(False)
        # On CountersUnavailable the reservation is left to its lease: once that
        # runs out, a sweeper settles it from the ledger.
        return await self._run_finish("settle", rid, holds, actual, want)

    async def renew(self, rids: Sequence[str], *, lease: float) -> None:
        if not rids:
            return
        score = int((self.clock() + lease) * 1000)
        mapping = {rid: score for rid in rids}
        if self._down_until and time.monotonic() < self._down_until:
            raise CountersUnavailable("Redis was unreachable a moment ago")
        try:
            await self.r.zadd(self.rx, mapping, xx=True)
        except (RedisError, OSError) as exc:
            self._down_until = time.monotonic() + DOWN_FOR
            raise CountersUnavailable(f"Redis: {exc}") from exc

    async def expired(self, *, limit: int = 100) -> list[Pending]:
        now_ms = int(self.clock() * 1000)
        try:
            found = await self.r.zrangebyscore(self.rx, "-inf", now_ms, start=0, num=limit,
                                               withscores=True)  # fmt: skip
            if not found:
                return []
            async with self.r.pipeline(transaction=False) as pipe:
                for item in found:
                    pipe.hget(self._rkey(_text(item[0])), "p")
                payloads = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CountersUnavailable(f"Redis: {exc}") from exc
        out = []
        for item, payload in zip(found, payloads, strict=True):
            if payload is None:  # settled between the two reads
                continue
            out.append(Pending(_text(item[0]), _decode(payload), float(item[1]) / 1000))
        return out

    async def sweep(self, pending: Pending, actual: Sequence[int] | None) -> Settled:
        if actual is None:
            return await self._run_finish(
                "release", pending.rid, pending.holds, [0] * len(pending.holds)
            )
        return await self._run_finish("sweep", pending.rid, pending.holds, actual)

    async def totals(self, windows: Sequence[Window]) -> list[int]:
        if not windows:
            return []
        args: list[Any] = []
        for w in windows:
            args += [w.bucket, w.span]
        out = await self._call(self._totals, [self._c(w.key) for w in windows], args)
        return [int(v) for v in out]

    async def seed(self, window: Window, used: int) -> bool:
        out = await self._call(
            self._seed, [self._c(window.key)], [window.bucket, used, _ms(window.ttl)]
        )
        return bool(int(out))

    async def close(self) -> None:
        if self.pipe is not None:
            await self.pipe.close()
        await self.r.aclose(close_connection_pool=True)

    def open_count(self) -> int:
        return len(self._open)

    def forget(self, rid: str) -> None:
        self._open.pop(rid, None)


class _PyScript:
    """A script run through redis-py, with `resp.Script`'s interface."""

    def __init__(self, r: aioredis.Redis, source: str) -> None:
        self.r = r
        self.source = source
        self._script = r.register_script(source)

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        return await self._script(keys=keys, args=args)

    async def load(self) -> None:
        await self.r.script_load(self.source)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

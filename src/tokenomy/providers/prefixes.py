"""The prompt prefixes a deployment was sent lately (the prompt-cache lever's
memory, `tokenomy.pipeline.prompt_cache`): what the upstream is likely to hold."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

TTL_S = 300.0  # Anthropic's default cache lifetime, renewed by each read
TTL_1H_S = 3600.0  # the lifetime a breakpoint with ``ttl: 1h`` asks for
MAX_PREFIXES = 10_000


class SeenPrefixes:
    """Prefixes sent lately: a bounded map of digest -> last time seen."""

    def __init__(
        self,
        ttl: float = TTL_S,
        limit: int = MAX_PREFIXES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.limit = limit
        self.clock = clock
        self._last: OrderedDict[bytes, float] = OrderedDict()

    def seen(self, digest: bytes) -> bool:
        """Whether ``digest`` was seen within the lifetime; it is seen now either way."""
        now = self.clock()
        last = self._last.pop(digest, None)
        self._last[digest] = now
        while len(self._last) > self.limit:
            self._last.popitem(last=False)
        return last is not None and now - last <= self.ttl

    def __len__(self) -> int:
        return len(self._last)

"""The store interface: one ledger of usage records plus virtual keys.

Stores are synchronous and owned by one thread at a time; the gateway talks to
them through `tokenomy.ledger.writer.GroupCommitWriter` (records) and
``asyncio.to_thread`` (keys), so a slow disk or a network round trip to
PostgreSQL never blocks the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..records import UsageRecord


@dataclass(slots=True)
class KeyRecord:
    key_id: str  # public identifier, safe to log ("tk-" + 8 hex)
    key_hash: str  # sha256 hex of the secret key; the secret itself is never stored
    name: str | None = None
    org: str | None = None
    team: str | None = None
    user: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)  # empty: every model
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None


class Store(ABC):
    """A ledger backend. Implementations: SQLite (default) and PostgreSQL."""

    @abstractmethod
    def migrate(self) -> list[str]:
        """Apply pending migrations in order; return the names applied."""

    @abstractmethod
    def insert_records(self, records: Sequence[UsageRecord]) -> None:
        """Append records in one transaction (committed when this returns)."""

    @abstractmethod
    def get_record(self, request_id: str) -> UsageRecord | None: ...

    @abstractmethod
    def list_records(self, *, limit: int = 1000, since: float | None = None) -> list[UsageRecord]:
        """Newest first."""

    @abstractmethod
    def count_records(self) -> int: ...

    @abstractmethod
    def create_key(self, key: KeyRecord) -> None: ...

    @abstractmethod
    def get_key_by_hash(self, key_hash: str) -> KeyRecord | None: ...

    @abstractmethod
    def get_key(self, key_id: str) -> KeyRecord | None: ...

    @abstractmethod
    def list_keys(self) -> list[KeyRecord]: ...

    @abstractmethod
    def update_key(
        self, key_id: str, *, revoked_at: float | None = None, expires_at: float | None = None
    ) -> bool:
        """Set revoked_at and/or expires_at (None leaves a field unchanged)."""

    @abstractmethod
    def close(self) -> None: ...

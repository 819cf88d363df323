"""Stage 3, for OpenAI's Responses API: may this request continue the response it names?

OpenAI keeps each response (``store`` is true by default) under the upstream
account that made it, and every key of the gateway shares that account: a
request naming another tenant's response in ``previous_response_id`` would be
answered from that tenant's prompts and replies. So the gateway records which
response each request made (the ledger row's ``response_id``, committed with
the row before the reply is released), and lets a request continue only a
response its own tenant made (`tokenomy.tenancy`, under ``responses.chain_scope``:
``team`` by default). Any other id is refused before anything is sent upstream,
with the refusal OpenAI gives an id it does not know (a 400
``previous_response_not_found`` on ``previous_response_id``): the answer says
nothing of whether the id exists. Ids the gateway never relayed (made before it
recorded them, or at the upstream directly) are refused alike, unless
``responses.allow_unknown_ids`` lets them through (while clients move their
chains onto the gateway).

Items are kept upstream with their response, and a request may name one by its
id in ``input`` (an ``item_reference``, or a reasoning item with an ``id``:
`tokenomy.responses_api.referenced_items`), which the upstream reads from its
storage. So the ledger also records the ids of the output items each response
had (``response_items``, with the row), and the same rule applies to them: an
item another tenant's response had, or one the gateway never relayed, is
refused with what OpenAI answers for an item it does not know (a 404
``invalid_request_error`` on ``input``, "Item with id '...' not found."), after
one ledger lookup for all the ids a request names; a request naming none reads
nothing.

``conversation`` (an id of OpenAI's Conversations API, a string or an object
with an ``id``) is refused: the gateway does not serve ``/v1/conversations``, so
no tenant made a conversation through it, and whose one is cannot be known.

The ``responses:`` section of the config file::

    responses:
      chain_scope: team          # key | team | org | shared (no check between tenants)
      allow_unknown_ids: false   # true: ids the gateway never relayed are passed on
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import Settings, flag
from ..errors import ConfigError, InvalidRequest
from ..ledger.base import KeyRecord, Owner, Store
from ..responses_api import referenced_items
from ..tenancy import ANONYMOUS, SCOPES, tenant
from .context import Call

SHARED = "shared"
NOT_FOUND = "previous_response_not_found"


@dataclass(frozen=True, slots=True)
class ChainsConfig:
    chain_scope: str = "team"  # a tenancy scope, or SHARED
    allow_unknown_ids: bool = False


def chains_config(settings: Settings) -> ChainsConfig:
    """The ``responses:`` section, checked."""
    raw: Mapping[str, Any] = settings.responses
    unknown = set(raw) - set(ChainsConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"responses: unknown settings {sorted(map(str, unknown))}")
    scope = raw.get("chain_scope", "team")
    if scope not in (*SCOPES, SHARED):
        raise ConfigError(
            f"responses.chain_scope: expected key, team, org or shared, got {scope!r}"
        )
    allow = flag(raw.get("allow_unknown_ids", False), "responses.allow_unknown_ids")
    return ChainsConfig(chain_scope=scope, allow_unknown_ids=allow)


def unknown_response(response_id: str) -> InvalidRequest:
    """What OpenAI answers for a ``previous_response_id`` it does not know."""
    return InvalidRequest(
        f"Previous response with id '{response_id}' not found.",
        param="previous_response_id",
        code=NOT_FOUND,
    )


def unknown_item(item_id: str) -> InvalidRequest:
    """What OpenAI answers for an item id in ``input`` that it does not know."""
    return InvalidRequest(f"Item with id '{item_id}' not found.", status=404, param="input")


CONVERSATION_REFUSED = (
    "'conversation' is not served by this gateway: it does not serve OpenAI's "
    "Conversations API (/v1/conversations), so it cannot tell whose a conversation "
    "is. Chain responses with 'previous_response_id', or send the items in 'input'."
)


class Chains:
    name = "chains"

    def __init__(self, config: ChainsConfig, store: Store) -> None:
        self.config = config
        self.store = store

    async def __call__(self, call: Call) -> None:
        if call.op != "responses":
            return
        body = call.body
        if body.get("conversation") is not None:
            raise InvalidRequest(
                CONVERSATION_REFUSED, param="conversation", code="unsupported_parameter"
            )
        previous = body.get("previous_response_id")
        if isinstance(previous, str) and not await self.may_continue(call, previous):
            raise unknown_response(previous)
        refused = await self.foreign_item(call, referenced_items(body))
        if refused is not None:
            raise unknown_item(refused)

    async def may_continue(self, call: Call, response_id: str) -> bool:
        """Whether ``call``'s tenant may continue the response ``response_id``."""
        return await self.may_read(call.key, response_id)

    async def may_read(self, key: KeyRecord | None, response_id: str) -> bool:
        """Whether the tenant of ``key`` may continue, read or delete ``response_id``."""
        if self._unchecked:
            return True  # nothing to check: no ledger read
        owners = await asyncio.to_thread(self.store.response_owners, response_id)
        return self._owns(key, owners)

    async def foreign_item(self, call: Call, item_ids: list[str]) -> str | None:
        """The first of ``item_ids`` that ``call``'s tenant may not name; None if none."""
        if not item_ids or self._unchecked:
            return None
        owners = await asyncio.to_thread(self.store.item_owners, item_ids)
        return next((i for i in item_ids if not self._owns(call.key, owners.get(i, []))), None)

    @property
    def _unchecked(self) -> bool:
        return self.config.chain_scope == SHARED and self.config.allow_unknown_ids

    def _owns(self, key: KeyRecord | None, owners: Sequence[Owner]) -> bool:
        """Whether the tenant of ``key`` made what ``owners`` (its ledger rows) made."""
        cfg = self.config
        if not owners:
            return cfg.allow_unknown_ids
        if cfg.chain_scope == SHARED:
            return True
        scope = cfg.chain_scope
        mine = ANONYMOUS if key is None else tenant(scope, key.key_id, key.org, key.team)
        # Every row naming the id must be the caller's: an id two tenants' rows
        # share (an upstream that reused one) is no tenant's alone.
        return all(tenant(scope, *owner) == mine for owner in owners)

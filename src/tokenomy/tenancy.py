"""Tenants: which keys may see what another key's requests left behind.

Keys share an upstream account (the gateway's own key), so whatever the upstream
keeps between requests (OpenAI's stored responses) and whatever the gateway
keeps (cached answers) is shared by every key unless the gateway keeps them
apart. A scope says which keys are one tenant:

- ``team``: the keys of one team of one org. A team belongs to its org: teams of
  the same name in two orgs are two tenants (``org-team:ORG/TEAM``, both parts
  percent-encoded so no two (org, team) pairs meet); a key with a team and no
  org is ``team:TEAM``. A key without a team is a tenant of its own.
- ``org``: the keys of one org; a key without an org is a tenant of its own.
- ``key``: each key alone.

Requests without a key (only when ``require_key`` is off) are one tenant,
``anonymous``. `tenant` reads a key as the ledger records it (key id, org,
team), so the tenant of a past request is worked out from its row.
"""

from __future__ import annotations

from urllib.parse import quote

__all__ = ["ANONYMOUS", "SCOPES", "tenant"]

SCOPES = ("key", "team", "org")
ANONYMOUS = "anonymous"


def tenant(scope: str, key_id: str | None, org: str | None, team: str | None) -> str:
    """The tenant of a key (``key_id`` None: no key) under ``scope``."""
    if key_id is None:
        return ANONYMOUS
    if scope == "team" and team:
        if org:
            return f"org-team:{quote(org, safe='')}/{quote(team, safe='')}"
        return "team:" + team
    if scope == "org" and org:
        return "org:" + org
    return "key:" + key_id

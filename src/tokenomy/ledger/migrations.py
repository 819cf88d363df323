"""The ledger schema as one list of named, ordered migrations for both engines.

A migration is a function ``mNNN_what(dialect) -> list[str]`` registered with
``@migration``; its name is the function's name and its place in `MIGRATIONS` is
the order it was defined in. The SQL is written once, with the few column types
that differ between SQLite and PostgreSQL taken from the `Dialect`; a migration
that needs genuinely different SQL branches on ``dialect.name``.

Applied names are recorded in the ``migrations`` table. Never edit or reorder a
migration that has shipped: add the next one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .rollups import M010, backfill_statements, create_statements, split_charged_statements

log = logging.getLogger("tokenomy.ledger")


class Cursor(Protocol):
    """What the ledger needs from a DB-API cursor (sqlite3 and psycopg both fit)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, query: Any, params_seq: Any, /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str  # "sqlite" or "postgres"
    param: str  # the driver's placeholder
    json_param: str  # placeholder for a JSON text value
    row_id: str  # surrogate key column definition
    real: str
    boolean: str
    json: str
    money: str  # SQLite keeps the exact Decimal string; PostgreSQL an exact NUMERIC
    money_as_text: bool


SQLITE = Dialect(
    name="sqlite",
    param="?",
    json_param="?",
    row_id="INTEGER PRIMARY KEY AUTOINCREMENT",
    real="REAL",
    boolean="INTEGER",
    json="TEXT",
    money="TEXT",
    money_as_text=True,
)

POSTGRES = Dialect(
    name="postgres",
    param="%s",
    json_param="%s::jsonb",
    row_id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    real="DOUBLE PRECISION",
    boolean="BOOLEAN",
    json="JSONB",
    # Unconstrained NUMERIC stores any Decimal exactly, scale included.
    money="NUMERIC",
    money_as_text=False,
)


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    statements: Callable[[Dialect], list[str]]


MIGRATIONS: list[Migration] = []


def migration(fn: Callable[[Dialect], list[str]]) -> Callable[[Dialect], list[str]]:
    MIGRATIONS.append(Migration(fn.__name__, fn))
    return fn


@migration
def m001_initial(d: Dialect) -> list[str]:
    return [
        f"""CREATE TABLE requests (
            id {d.row_id},
            request_id TEXT NOT NULL UNIQUE,
            ts {d.real} NOT NULL,
            api TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            key_id TEXT,
            org TEXT,
            team TEXT,
            end_user TEXT,
            tags {d.json} NOT NULL,
            requested_model TEXT NOT NULL,
            served_model TEXT,
            provider TEXT,
            deployment TEXT,
            stream {d.boolean} NOT NULL,
            input_tokens BIGINT NOT NULL,
            output_tokens BIGINT NOT NULL,
            cache_read_tokens BIGINT NOT NULL,
            cache_write_tokens BIGINT NOT NULL,
            cache_write_1h_tokens BIGINT NOT NULL,
            reasoning_tokens BIGINT NOT NULL,
            estimated {d.boolean} NOT NULL,
            cost_usd {d.money},
            price_unknown {d.boolean} NOT NULL,
            latency_ms {d.real},
            ttft_ms {d.real},
            status INTEGER NOT NULL,
            error_type TEXT,
            decisions {d.json} NOT NULL
        )""",
        "CREATE INDEX requests_ts ON requests (ts)",
        "CREATE INDEX requests_team_ts ON requests (team, ts)",
        "CREATE INDEX requests_model_ts ON requests (served_model, ts)",
        "CREATE INDEX requests_key_ts ON requests (key_id, ts)",
        f"""CREATE TABLE api_keys (
            key_id TEXT PRIMARY KEY,
            key_hash TEXT NOT NULL UNIQUE,
            name TEXT,
            org TEXT,
            team TEXT,
            end_user TEXT,
            tags {d.json} NOT NULL,
            models {d.json} NOT NULL,
            created_at {d.real} NOT NULL,
            expires_at {d.real},
            revoked_at {d.real}
        )""",
    ]


def names() -> list[str]:
    return [m.name for m in MIGRATIONS]


def apply_pending(cur: Cursor, dialect: Dialect, *, upto: str | None = None) -> list[str]:
    """Apply, in order, every migration not yet recorded; return the names applied.

    The caller holds the engine's lock and the transaction: SQLite ``BEGIN
    IMMEDIATE``, PostgreSQL an advisory lock; both engines have transactional DDL,
    so a failed migration leaves nothing behind. ``upto`` stops after that
    migration (tests use it to build an older schema).
    """
    todo: Sequence[Migration] = MIGRATIONS
    if upto is not None:
        if upto not in names():
            raise ValueError(f"unknown migration {upto!r}")
        todo = MIGRATIONS[: names().index(upto) + 1]
    cur.execute(
        f"CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at {dialect.real} NOT NULL)"
    )
    cur.execute("SELECT name FROM migrations")
    done = {row[0] for row in cur.fetchall()}
    unknown = done - set(names())
    if unknown:
        log.warning("ledger has migrations this version does not know: %s", sorted(unknown))
    applied = []
    for m in todo:
        if m.name in done:
            continue
        for statement in m.statements(dialect):
            cur.execute(statement)
        cur.execute(
            f"INSERT INTO migrations (name, applied_at) VALUES ({dialect.param}, {dialect.param})",
            (m.name, time.time()),
        )
        applied.append(m.name)
    return applied


@migration
def m002_caps(d: Dialect) -> list[str]:
    """Budget and rate-limit definitions, their change counter, and fired alerts
    (see ``tokenomy.caps``). Counters and reservations live in memory or Redis."""
    return [
        f"""CREATE TABLE cap_budgets (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            scope {d.json} NOT NULL,
            period TEXT NOT NULL,
            limit_usd {d.money},
            limit_tokens BIGINT,
            on_exceed TEXT NOT NULL,
            fail_mode TEXT NOT NULL,
            alerts {d.json} NOT NULL,
            webhook_url TEXT,
            created_at {d.real} NOT NULL,
            updated_at {d.real} NOT NULL
        )""",
        f"""CREATE TABLE cap_limits (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            scope {d.json} NOT NULL,
            rpm BIGINT,
            tpm BIGINT,
            input_tpm BIGINT,
            output_tpm BIGINT,
            concurrent BIGINT,
            window_seconds INTEGER NOT NULL,
            fail_mode TEXT NOT NULL,
            created_at {d.real} NOT NULL,
            updated_at {d.real} NOT NULL
        )""",
        # One row; every change to a definition bumps it in the same transaction,
        # and gateways poll it to reload.
        "CREATE TABLE cap_version (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)",
        "INSERT INTO cap_version (id, version) VALUES (1, 0)",
        # A threshold fires once per (budget, counter, period): the primary key
        # decides which replica sends it.
        f"""CREATE TABLE cap_alerts (
            budget_id TEXT NOT NULL,
            entity TEXT NOT NULL,
            period TEXT NOT NULL,
            threshold TEXT NOT NULL,
            fired_at {d.real} NOT NULL,
            total TEXT NOT NULL,
            lim TEXT NOT NULL,
            PRIMARY KEY (budget_id, entity, period, threshold)
        )""",
    ]


@migration
def m003_credits(d: Dialect) -> list[str]:
    """Prepaid credits and plans: see ``tokenomy.billing.credits``."""
    # A CHECK keeps every balance at zero or above; SQLite holds money as text,
    # whose sign a REAL cast keeps exactly.
    non_negative = "balance >= 0" if d.name == "postgres" else "CAST(balance AS REAL) >= 0"
    statements = [
        f"""CREATE TABLE billing_plans (
            name TEXT PRIMARY KEY,
            markup_pct {d.money},
            input_per_mtok {d.money},
            output_per_mtok {d.money},
            cached_input_per_mtok {d.money},
            created_at {d.real} NOT NULL
        )""",
        f"""CREATE TABLE billing_customers (
            customer TEXT PRIMARY KEY,
            plan TEXT REFERENCES billing_plans (name),
            unit TEXT CHECK (unit IN ('usd', 'tokens')),
            balance {d.money} NOT NULL CHECK ({non_negative}),
            credited {d.money} NOT NULL,
            created_at {d.real} NOT NULL
        )""",
        f"""CREATE TABLE credit_ledger (
            id {d.row_id},
            customer TEXT NOT NULL,
            ts {d.real} NOT NULL,
            amount {d.money} NOT NULL,
            unit TEXT NOT NULL CHECK (unit IN ('usd', 'tokens')),
            kind TEXT NOT NULL CHECK (kind IN ('topup', 'debit', 'adjustment', 'refund')),
            request_id TEXT,
            note TEXT,
            UNIQUE (request_id, kind)
        )""",
        "CREATE INDEX credit_ledger_customer_ts ON credit_ledger (customer, ts)",
        # Statements read one customer's requests over a period.
        "CREATE INDEX requests_end_user_ts ON requests (end_user, ts)",
    ]
    if d.name == "postgres":
        return [
            *statements,
            """CREATE FUNCTION tk_credit_ledger_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'credit_ledger is append-only';
            END $$""",
            """CREATE TRIGGER credit_ledger_append_only
            BEFORE UPDATE OR DELETE ON credit_ledger
            FOR EACH ROW EXECUTE FUNCTION tk_credit_ledger_append_only()""",
            """CREATE TRIGGER credit_ledger_no_truncate
            BEFORE TRUNCATE ON credit_ledger
            FOR EACH STATEMENT EXECUTE FUNCTION tk_credit_ledger_append_only()""",
        ]
    return [
        *statements,
        *(
            f"""CREATE TRIGGER credit_ledger_no_{op.lower()} BEFORE {op} ON credit_ledger
            BEGIN SELECT RAISE(ABORT, 'credit_ledger is append-only'); END"""
            for op in ("UPDATE", "DELETE")
        ),
    ]


# m002 to m009 belong to the features built alongside this one (caps, credits, ...);
# each goes above this line so the list stays in name order.


@migration
def m010_rollups(d: Dialect) -> list[str]:
    """Daily rollups for reports (see ``rollups.py``), backfilled from the ledger,
    and an index for "the most expensive requests"."""
    cost_index = (
        "CREATE INDEX requests_cost ON requests (cost_usd)"
        if d.name == "postgres"
        else "CREATE INDEX requests_cost ON requests (CAST(cost_usd AS REAL))"
    )
    # The rollups as this migration always made them (`M010`): m018 added ``charged``.
    return [*create_statements(d, M010), *backfill_statements(d, M010), cost_index]


@migration
def m011_insight_alerts(d: Dialect) -> list[str]:
    """Spend alerts the gateway's watcher has sent (see ``tokenomy.insights.watch``):
    the primary key decides which replica sends each one."""
    return [
        f"""CREATE TABLE insight_alerts (
            alert_key TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            scope TEXT NOT NULL,
            fired_at {d.real} NOT NULL,
            text TEXT NOT NULL
        )""",
    ]


@migration
def m012_feedback(d: Dialect) -> list[str]:
    """Scores of answers (from clients or a judge model) and, when the operator
    opts in (``routing.collect_prompts``), the prompts of routed requests, so a
    router can be trained on the operator's own traffic."""
    return [
        f"""CREATE TABLE feedback (
            id {d.row_id},
            request_id TEXT NOT NULL,
            ts {d.real} NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('user', 'judge')),
            score {d.real} NOT NULL CHECK (score >= 0 AND score <= 1),
            comment TEXT,
            key_id TEXT,
            org TEXT,
            model TEXT
        )""",
        "CREATE INDEX feedback_request ON feedback (request_id)",
        "CREATE INDEX feedback_ts ON feedback (ts)",
        f"""CREATE TABLE route_prompts (
            request_id TEXT PRIMARY KEY,
            ts {d.real} NOT NULL,
            messages {d.json} NOT NULL
        )""",
    ]


@migration
def m013_usage_extras(d: Dialect) -> list[str]:
    """What a request used besides text tokens, priced at its own rates: audio
    tokens (subsets of the input and output counts) and server-side web searches.
    Rows written before are text-only: 0."""
    return [
        f"ALTER TABLE requests ADD COLUMN {column} BIGINT NOT NULL DEFAULT 0"
        for column in ("audio_input_tokens", "audio_output_tokens", "web_search_requests")
    ]


@migration
def m014_plan_changes(d: Dialect) -> list[str]:
    """When each customer's plan changed (see ``tokenomy.billing.plan_changes``), so
    a statement shows the plans of its period. Changes before this one were not
    recorded: a customer's plan now is taken as theirs since they were created,
    which is what statements showed until now."""
    return [
        f"""CREATE TABLE billing_plan_changes (
            id {d.row_id},
            customer TEXT NOT NULL REFERENCES billing_customers (customer),
            ts {d.real} NOT NULL,
            plan TEXT REFERENCES billing_plans (name)
        )""",
        "CREATE INDEX billing_plan_changes_customer_ts ON billing_plan_changes (customer, ts)",
        "INSERT INTO billing_plan_changes (customer, ts, plan) "
        "SELECT customer, created_at, plan FROM billing_customers WHERE plan IS NOT NULL",
    ]


@migration
def m015_page_indexes(d: Dialect) -> list[str]:
    """Indexes for the admin API's paged lists (``tokenomy.ledger.pages``): keys in
    the order they were made, and a budget's alerts in the order they fired. (The
    credit history pages on ``credit_ledger_customer_ts``; customers and plans on
    their primary keys.)"""
    return [
        "CREATE INDEX api_keys_created ON api_keys (created_at, key_id)",
        "CREATE INDEX cap_alerts_budget_fired ON cap_alerts (budget_id, fired_at)",
    ]


@migration
def m016_upstream_request_id(d: Dialect) -> list[str]:
    """The upstream's own id for its reply (what its support asks for, to look a
    request up). Rows written before have none."""
    return ["ALTER TABLE requests ADD COLUMN upstream_request_id TEXT"]


@migration
def m017_charged(d: Dialect) -> list[str]:
    """Whether a row counts against its request's budgets, limits and balance
    (`tokenomy.ledger.charges`). Rows written before: a side row (one naming a
    ``parent`` request) other than a cascade's draft was the gateway's own call
    (a judge's, a failed attempt's), never charged; every other row was."""
    if d.name == "postgres":
        yes, no = "TRUE", "FALSE"
        parent, reason = "decisions->'route'->>'parent'", "decisions->'route'->>'reason'"
    else:
        yes, no = "1", "0"
        parent = "json_extract(decisions, '$.route.parent')"
        reason = "json_extract(decisions, '$.route.reason')"
    return [
        f"ALTER TABLE requests ADD COLUMN charged {d.boolean} NOT NULL DEFAULT {yes}",
        f"UPDATE requests SET charged = {no} "
        f"WHERE {parent} IS NOT NULL AND COALESCE({reason}, '') <> 'cascade'",
    ]


@migration
def m018_rollups_charged(d: Dialect) -> list[str]:
    """The rollups keep the rows charged to requests apart from the gateway's own
    calls (``charged``, m017), so a budget's spend read from them is what the caps
    count: ``charged`` joins every rollup's key. The days with a row not charged
    are summed again from the ledger; the others are copied, all charged."""
    return split_charged_statements(d)


@migration
def m019_response_ids(d: Dialect) -> list[str]:
    """The id of the response a Responses API request made, so a request that
    continues one (``previous_response_id``) is let through only for the tenant
    that made it (`tokenomy.pipeline.chains`), on every replica. Rows written
    before have none: their responses are unknown to the gateway."""
    return [
        "ALTER TABLE requests ADD COLUMN response_id TEXT",
        "CREATE INDEX requests_response_id ON requests (response_id) WHERE response_id IS NOT NULL",
    ]


@migration
def m020_tiers_and_error_codes(d: Dialect) -> list[str]:
    """The tier a request was priced at (`Usage.price_context` as a JSON object,
    e.g. ``{"service_tier": "priority"}``; null for the standard price), so a
    replay of the ledger prices it as it was; and the upstream's own code for the
    refusal that failed it (``context_length_exceeded``). Rows written before
    have neither: replayed, they are priced at the standard rate."""
    return [
        f"ALTER TABLE requests ADD COLUMN price_context {d.json}",
        "ALTER TABLE requests ADD COLUMN upstream_error_code TEXT",
    ]


@migration
def m021_response_items(d: Dialect) -> list[str]:
    """The ids of the output items of the response a Responses API request made
    (``msg_...``, ``fc_...``, ``rs_...``), each with the request id of its row,
    so that a request naming one in its ``input`` (an ``item_reference``) is let
    through only for the tenant that made it (`tokenomy.pipeline.chains`). The
    key leads with the item id: one index lookup, then the row by its request
    id. Responses relayed before have no items here: they are unknown."""
    return [
        """CREATE TABLE response_items (
            item_id TEXT NOT NULL,
            request_id TEXT NOT NULL,
            PRIMARY KEY (item_id, request_id)
        )""",
    ]

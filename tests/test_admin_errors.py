"""The admin API's refusals: a method a path does not take (405), a body that is not
a JSON object, and a field that should be a string (400); each names what was wrong."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_fixtures import GW, MASTER_KEY

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


def _error(res: Any, status: int) -> dict[str, Any]:
    assert res.status_code == status, res.text
    error: dict[str, Any] = res.json()["error"]
    return error


@pytest.mark.parametrize(
    "path",
    [
        "/admin/keys",
        "/admin/keys/{key_id}",
        "/admin/keys/{key_id}/revoke",
        "/admin/budgets",
        "/admin/budgets/b1",
        "/admin/budgets/b1/alerts",
        "/admin/limits",
        "/admin/limits/l1",
        "/admin/customers",
        "/admin/customers/alice",
        "/admin/credits/alice",
        "/admin/credits/alice/topup",
        "/admin/plans",
        "/admin/plans/pro",
    ],
)
def test_a_method_a_path_does_not_take_is_405(fresh_gw: GW, path: str) -> None:
    path = path.format(key_id=fresh_gw.key_id)
    with fresh_gw.http() as c:
        budget = c.post("/admin/budgets", headers=ADMIN, json={"name": "b1", "limit_usd": "5"})
        limit = c.post("/admin/limits", headers=ADMIN, json={"name": "l1", "rpm": 5})
        assert budget.status_code == limit.status_code == 201
        error = _error(c.put(path, headers=ADMIN, json={}), 405)
    assert error["message"] == f"PUT not allowed on {path}"
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "path", ["/admin/keys", "/admin/budgets", "/admin/limits", "/admin/plans",
             "/admin/credits/alice/topup"],
)  # fmt: skip
def test_a_body_that_is_not_an_object_is_400(fresh_gw: GW, path: str) -> None:
    with fresh_gw.http() as c:
        error = _error(c.post(path, headers=ADMIN, json=[1]), 400)
    assert error["message"] == "expected a JSON object"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/admin/keys", {"team": 5}, "team"),
        ("/admin/plans", {"name": 5}, "name"),
        ("/admin/credits/alice/topup", {"amount": "5", "unit": 5}, "unit"),
        ("/admin/credits/alice/topup", {"amount": "5", "note": 5}, "note"),
    ],
)
def test_a_field_that_should_be_a_string_is_400(
    fresh_gw: GW, path: str, body: dict[str, Any], param: str
) -> None:
    with fresh_gw.http() as c:
        error = _error(c.post(path, headers=ADMIN, json=body), 400)
    assert (error["message"], error["param"]) == (f"'{param}' must be a string", param)


def test_topup_and_adjust_answer_the_entry_and_the_balance(fresh_gw: GW) -> None:
    with fresh_gw.http() as c:
        top = c.post("/admin/credits/alice/topup", headers=ADMIN, json={"amount": "5"})
        adj = c.post("/admin/credits/alice/adjust", headers=ADMIN,
                     json={"amount": "-1.5", "note": "x"})  # fmt: skip
    assert top.status_code == adj.status_code == 201
    assert (top.json()["customer"], top.json()["amount"], top.json()["balance"]) == (
        "alice",
        "5",
        "5",
    )
    assert (adj.json()["kind"], adj.json()["amount"], adj.json()["balance"]) == (
        "adjustment",
        "-1.5",
        "3.5",
    )


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/admin/credits/alice/topup", {"amount": "1e99999"}, "amount"),
        ("/admin/credits/alice/topup", {"amount": "12345678901234567890"}, "amount"),
        ("/admin/plans", {"name": "p", "markup_pct": "1e30"}, "markup_pct"),
        ("/admin/plans", {"name": "p", "input_per_mtok": "1e30", "output_per_mtok": "1"},
         "input_per_mtok"),
    ],
)  # fmt: skip
def test_an_amount_with_more_digits_than_a_decimal_holds_is_400(
    fresh_gw: GW, path: str, body: dict[str, Any], param: str
) -> None:
    with fresh_gw.http() as c:
        error = _error(c.post(path, headers=ADMIN, json=body), 400)
    assert (error["message"], error["param"]) == (f"'{param}' is too large: {body[param]!r}", param)


@pytest.mark.parametrize(
    "body",
    [{"expires_at": 1e300}, {"expires_at": -5}, {"expires_in": "inf"}, {"expires_in": "nan"},
     {"expires_in": True}, {"expires_at": "soon"}, {"models": [5]}, {"models": [""]}],
)  # fmt: skip
def test_a_key_that_no_calendar_or_model_list_can_show_is_400(fresh_gw: GW, body: Any) -> None:
    """An expiry past year 9999 (or not a number at all) was stored, and listing the
    keys then failed; a model name that is not a string was quietly turned into one."""
    with fresh_gw.http() as c:
        error = _error(c.post("/admin/keys", headers=ADMIN, json=body), 400)
        assert error["param"] in ("expires_at", "expires_in", "models")
        patch = {k: v for k, v in body.items() if k != "models"}
        if patch:
            path = f"/admin/keys/{fresh_gw.key_id}"
            _error(c.patch(path, headers=ADMIN, json=patch), 400)
        assert c.get("/admin/keys", headers=ADMIN).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        ("POST", "/admin/keys", {"team": "ml", "teams": "x"}, "teams"),
        ("PATCH", "/admin/keys/{key_id}", {"team": "ml", "expires_in": 60}, "team"),
        ("POST", "/admin/credits/alice/topup", {"amount": "5", "amout": "6"}, "amout"),
        ("POST", "/admin/credits/alice/adjust", {"amount": "-1", "reason": "x"}, "reason"),
        ("POST", "/admin/plans", {"name": "p", "markup_pct": "5", "markup": "9"}, "markup"),
        ("PATCH", "/admin/customers/alice", {"plan": None, "unit": "tokens"}, "unit"),
    ],
)
def test_an_unknown_field_is_400_naming_it(
    fresh_gw: GW, method: str, path: str, body: dict[str, Any], param: str
) -> None:
    """A misspelt or unsupported field was silently ignored: a PATCH of a key's team
    answered 200 with the team unchanged, a top-up went through without its note."""
    path = path.format(key_id=fresh_gw.key_id)
    with fresh_gw.http() as c:
        c.post("/admin/credits/alice/topup", headers=ADMIN, json={"amount": "5"})
        error = _error(c.request(method, path, headers=ADMIN, json=body), 400)
        assert (error["message"], error["param"]) == (f"unknown field(s) '{param}'", param)
        key = c.get(f"/admin/keys/{fresh_gw.key_id}", headers=ADMIN).json()
        balance = c.get("/admin/credits/alice", headers=ADMIN).json()["balance"]
    assert (key["team"], key["expires_at"], balance) == ("search", None, "5")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tags": {"env": 1}}, "tags"),
        ({"tags": {"env": None}}, "tags"),
        ({"tags": ["env=prod"]}, "tags"),
        ({"models": "gpt-4o"}, "models"),
        ({"expires_in": -60}, "expires_in"),
        ({"expires_in": 60, "expires_at": 2_000_000_000}, "expires_in"),
    ],
)
def test_a_key_body_the_cli_could_not_give_is_400(
    fresh_gw: GW, body: dict[str, Any], param: str
) -> None:
    """A tag value of 1 or null was stored as "1" or "None", a negative lifetime made a
    key that was born expired (the CLI refuses both), and of two expiries one was
    silently dropped."""
    with fresh_gw.http() as c:
        error = _error(c.post("/admin/keys", headers=ADMIN, json=body), 400)
        assert error["param"] == param
        assert len(c.get("/admin/keys", headers=ADMIN).json()["data"]) == 1

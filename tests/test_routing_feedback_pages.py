"""`tokenomy router export-feedback` reads the scored requests a page at a time: the
same lines whatever the page size, on both engines, and never every score at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from tokenomy.cli import cli
from tokenomy.ledger import SQLStore, Store
from tokenomy.routing import feedback as feedback_module
from tokenomy.routing.feedback import Feedback, FeedbackStore

T0 = 1_740_787_200.0


def fill(store: Store) -> FeedbackStore:
    """Six scored requests with a prompt (two models each, scores to average, a
    model unnamed or empty), one scored without a prompt, one prompt unscored."""
    fb = FeedbackStore(store)
    for i in range(6):
        rid = f"req-{i}"
        fb.save_prompt(rid, T0 + i, [{"role": "user", "content": f"question {i} é"}])
        models = [("gpt-4o", "gpt-4o-mini"), (None, "gpt-4o"), ("", "gpt-4o-mini")][i % 3]
        for j, model in enumerate(models):
            fb.add(Feedback(rid, 0.1 * (i + j), "judge" if j else "user", model=model,
                            ts=T0 + i))  # fmt: skip
        fb.add(Feedback(rid, 0.9, "user", model=models[1], ts=T0 + i + 0.5))
    fb.add(Feedback("no-prompt", 1.0, model="gpt-4o", ts=T0))
    fb.save_prompt("unscored", T0, [{"role": "user", "content": "hello"}])
    return fb


@pytest.mark.parametrize("since", [None, "2025-03-01T00:00:03+00:00"])
def test_the_export_is_the_same_for_every_page_size(
    store: Store, db_url: str, since: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(store)
    args = ["router", "export-feedback", "--db", db_url]
    if since:
        args += ["--since", since]
    whole = CliRunner().invoke(cli, args)
    assert whole.exit_code == 0, whole.output
    lines = [orjson.loads(x) for x in whole.stdout.splitlines()]
    assert [x["id"] for x in lines] == [f"req-{i}" for i in range(3 if since else 0, 6)]
    assert lines[-1]["models"]["gpt-4o-mini"] == {"score": round((0.6 + 0.9) / 2, 6)}
    for page in (1, 2, 3):
        monkeypatch.setattr(feedback_module, "PAGE", page)
        got = CliRunner().invoke(cli, args)
        assert got.exit_code == 0, got.output
        assert got.stdout == whole.stdout


class Counting:
    """A cursor that notes how many rows each fetch hands back."""

    def __init__(self, cur: Any, fetched: list[int]) -> None:
        self.cur, self.fetched = cur, fetched

    def execute(self, *args: Any) -> Counting:
        self.cur.execute(*args)
        return self

    def fetchall(self) -> list[Any]:
        rows = list(self.cur.fetchall())
        self.fetched.append(len(rows))
        return rows


def test_an_export_holds_a_page_of_requests_not_every_score(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    fb = fill(store)
    assert isinstance(store, SQLStore)
    fetched: list[int] = []
    read = store._read

    def counting(fn: Callable[[Any], Any]) -> Any:
        return read(lambda cur: fn(Counting(cur, fetched)))

    monkeypatch.setattr(store, "_read", counting)
    monkeypatch.setattr(feedback_module, "PAGE", 2)
    lines = list(fb.outcomes())
    assert len(lines) == 6 and sum(len(x["models"]) for x in lines) == 12
    # a page: two requests' ids (and one to tell more follow), then their scores
    assert max(fetched) <= 4, fetched

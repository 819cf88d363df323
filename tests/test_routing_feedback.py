"""POST /v1/feedback (auth, isolation, validation), the m011 migration, and the export
of collected prompts with their scores as outcome data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway_fixtures import GW, MASTER_KEY, Fake, add_key
from routing_helpers import chat, outcome_of, routed_gateway
from tokenomy.ledger import migrations, open_store
from tokenomy.ledger.base import SQLStore
from tokenomy.routing.feedback import Feedback, FeedbackStore

KEYS: dict[str, str] = {}


@pytest.fixture(scope="module")
def fgw(fake: Fake, fake_llamacpp: Fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GW]:
    path = tmp_path_factory.mktemp("feedback")
    db = str(path / "ledger.db")
    KEYS["colleague"], _ = add_key(db, org="acme", team="ads")
    KEYS["stranger"], _ = add_key(db, org="globex")
    routing = {"tiers": ["gpt-4o-mini", "gpt-4o"], "collect_prompts": True}
    yield from routed_gateway(path, fake, fake_llamacpp, routing)


def post(gw: GW, body: Any, key: str | None) -> Any:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    with gw.http() as client:
        return client.post("/v1/feedback", json=body, headers=headers)


def test_feedback_is_stored_for_the_callers_own_request(fgw: GW) -> None:
    a = chat(fgw, "gpt-4o-mini", "what is the capital of France")
    r = post(fgw, {"request_id": a.request_id, "score": 0.8, "comment": "fine"}, fgw.key)
    assert r.status_code == 200, r.text
    assert r.json() == {"object": "feedback", "request_id": a.request_id, "score": 0.8,
                        "source": "user"}  # fmt: skip
    [fb] = FeedbackStore(fgw.store).list(request_id=a.request_id)
    assert (fb.score, fb.source, fb.comment, fb.model) == (0.8, "user", "fine", "gpt-4o-mini")
    assert fb.org == "acme"


def test_same_org_may_score_and_other_orgs_get_404(fgw: GW) -> None:
    a = chat(fgw, "gpt-4o-mini", "hello")
    assert post(fgw, {"request_id": a.request_id, "score": 1}, KEYS["colleague"]).status_code == 200
    r = post(fgw, {"request_id": a.request_id, "score": 1}, KEYS["stranger"])
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "request_not_found"
    assert r.json()["error"]["type"] == "invalid_request_error"  # as OpenAI renders a 404
    # an id that does not exist looks the same as someone else's
    r = post(fgw, {"request_id": "req_nope", "score": 1}, fgw.key)
    assert r.status_code == 404
    assert post(fgw, {"request_id": a.request_id, "score": 0}, MASTER_KEY).status_code == 200


def test_feedback_needs_a_key(fgw: GW) -> None:
    r = post(fgw, {"request_id": "x", "score": 1}, None)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"
    assert post(fgw, {"request_id": "x", "score": 1}, "sk-wrong").status_code == 401


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"score": 1}, "request_id"),
        ({"request_id": 5, "score": 1}, "request_id"),
        ({"request_id": "r"}, "score"),
        ({"request_id": "r", "score": 1.5}, "score"),
        ({"request_id": "r", "score": True}, "score"),
        ({"request_id": "r", "score": "high"}, "score"),
        ({"request_id": "r", "score": 1, "comment": 3}, "comment"),
        ({"request_id": "r", "score": 1, "rating": 3}, "rating"),
        ([1, 2], "body"),
    ],
)
def test_validation_errors_in_openai_format(fgw: GW, body: Any, param: str) -> None:
    r = post(fgw, body, fgw.key)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert err["message"]


def test_collected_prompts_export_as_outcomes(fgw: GW) -> None:
    a = chat(fgw, "tokenomy/auto", "name a prime number")  # no router weights needed to serve
    assert a.status == 200
    assert post(fgw, {"request_id": a.request_id, "score": 0.5}, fgw.key).status_code == 200
    assert post(fgw, {"request_id": a.request_id, "score": 1.0}, fgw.key).status_code == 200
    out = outcome_of(fgw, a.request_id)
    assert out["messages"] == [{"role": "user", "content": "name a prime number"}]
    served = a.record.served_model if a.record else None
    assert out["models"] == {served: {"score": 0.75}}


def test_migrating_from_the_previous_schema(new_db_url: Callable[[], str]) -> None:
    names = migrations.names()
    before = names[names.index("m012_feedback") - 1]
    with open_store(new_db_url()) as s:
        s.migrate(upto=before)
        assert isinstance(s, SQLStore)
        assert "m012_feedback" in s.migrate()
        store = FeedbackStore(s)
        store.add(Feedback("req_1", 0.25, comment="meh", key_id="k", model="m"))
        store.save_prompt("req_1", 1.0, [{"role": "user", "content": "hi"}])
        store.save_prompt("req_1", 1.0, [{"role": "user", "content": "again"}])  # kept once
        assert [f.score for f in store.list()] == [0.25]
        assert list(store.outcomes()) == [
            {"id": "req_1", "messages": [{"role": "user", "content": "hi"}],
             "models": {"m": {"score": 0.25}}, "source": "user"}
        ]  # fmt: skip
        with pytest.raises(ValueError):
            store.add(Feedback("req_1", 0.5, source="robot"))


def test_export_feedback_cli_writes_trainable_outcomes(fgw: GW, tmp_path: Any) -> None:
    from click.testing import CliRunner

    from tokenomy.cli import cli
    from tokenomy.routing.learned.outcomes import read_all

    a = chat(fgw, "gpt-4o-mini", "what is 12 squared")
    assert post(fgw, {"request_id": a.request_id, "score": 1}, fgw.key).status_code == 200
    out = tmp_path / "mine.jsonl"
    result = CliRunner().invoke(
        cli, ["router", "export-feedback", "--db", fgw.db, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    outcomes = read_all([str(out)])
    mine = [o for o in outcomes if o.prompt == "what is 12 squared"]
    assert len(mine) == 1 and mine[0].scores == {"gpt-4o-mini": 1.0}


def test_judge_scores_a_sample_of_routed_answers(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Any
) -> None:
    import time

    from tokenomy.routing.judge import parse_rating

    assert parse_rating("8") == pytest.approx(7 / 9)
    assert parse_rating("Rating: 10.") == 1.0 and parse_rating("none") is None
    routing = {
        "rules": [{"name": "cheap", "when": {"model": "gpt-4o"}, "to": "gpt-4o-mini"}],
        "judge": {"sample_rate": 1.0, "model": "claude-sonnet-4-6"},
    }
    for gw in routed_gateway(tmp_path, fake, fake_llamacpp, routing):
        # The fake judge echoes its prompt, "Question: 7 Answer: Echo: 7 ...": it rates
        # 7 of 10, the score (7 - 1) / 9. A question of 10 rates 10, the score 1.
        a = chat(gw, "gpt-4o", "7")
        top = chat(gw, "gpt-4o", "10")
        plain = chat(gw, "o3", "7")  # not routed: never judged
        assert a.status == top.status == plain.status == 200
        deadline = time.monotonic() + 5
        store = FeedbackStore(gw.store)
        judge = gw.app.gateway.judge  # type: ignore[union-attr]
        while not (store.list(request_id=a.request_id) and store.list(request_id=top.request_id)):
            assert time.monotonic() < deadline, "no judgement"
            time.sleep(0.02)
        while judge._tasks:  # every judgement started has ended: its ledger row is written
            assert time.monotonic() < deadline, "judgements still running"
            time.sleep(0.02)
        [fb] = store.list(request_id=a.request_id)
        assert fb.source == "judge" and fb.model == "gpt-4o-mini"
        assert fb.score == pytest.approx(6 / 9)
        assert fb.comment == "judge claude-sonnet-4-6: Echo: Question: 7 Answer: Echo: 7 7 7 7"
        assert [f.score for f in store.list(request_id=top.request_id)] == [1.0]
        judged = gw.record(a.request_id + ".judge")
        assert judged.decisions["route"]["score"] == pytest.approx(6 / 9)
        assert judged.served_model == "claude-sonnet-4-6" and judged.provider == "anthropic"
        assert judged.cost_usd is not None and judged.cost_usd > 0
        assert judged.decisions["route"]["parent"] == a.request_id
        sent = [r.body["messages"][0]["content"] for r in gw.fake.app.requests
                if r.path == "/v1/messages"]  # fmt: skip
        # (the fake upstream is shared: other tests' requests are there too)
        assert any(str(p).startswith("Question:\n7\n\nAnswer:\nEcho: 7") for p in sent)
        assert FeedbackStore(gw.store).list(request_id=plain.request_id) == []


def test_a_reasoning_model_can_judge(fake: Fake, fake_llamacpp: Fake, tmp_path: Any) -> None:
    """o3 refuses ``max_tokens``: the judge asks it with ``max_completion_tokens``."""
    import time

    routing = {
        "rules": [{"name": "cheap", "when": {"model": "gpt-4o"}, "to": "gpt-4o-mini"}],
        "judge": {"sample_rate": 1.0, "model": "o3"},
    }
    for gw in routed_gateway(tmp_path, fake, fake_llamacpp, routing):
        a = chat(gw, "gpt-4o", "7")
        assert a.status == 200
        store = FeedbackStore(gw.store)
        deadline = time.monotonic() + 5
        while not store.list(request_id=a.request_id):
            assert time.monotonic() < deadline, "no judgement"
            time.sleep(0.02)
        [fb] = store.list(request_id=a.request_id)
        assert fb.source == "judge" and fb.score == pytest.approx(6 / 9)
        [asked] = [r.body for r in gw.fake.app.requests
                   if r.body.get("model") == "o3" and "Rating" in str(r.body)]  # fmt: skip
        assert asked["max_completion_tokens"] == 8 and "max_tokens" not in asked


def test_judge_comparison_scores_both_models_for_training(
    fake: Fake, fake_llamacpp: Fake, tmp_path: Any
) -> None:
    import time

    routing = {
        "rules": [{"name": "cheap", "when": {"model": "gpt-4o"}, "to": "gpt-4o-mini"}],
        "judge": {"sample_rate": 1.0, "model": "gpt-4o", "compare": True},
        "collect_prompts": True,
    }
    for gw in routed_gateway(tmp_path, fake, fake_llamacpp, routing):
        a = chat(gw, "gpt-4o", "3")
        assert a.status == 200
        store = FeedbackStore(gw.store)
        deadline = time.monotonic() + 5
        while len(store.list(request_id=a.request_id)) < 2:
            assert time.monotonic() < deadline, "no comparison"
            time.sleep(0.02)
        scores = {f.model: f.score for f in store.list(request_id=a.request_id)}
        # each answer is "Echo: 3 ...", and the echoing judge rates the question's 3 of 10
        assert scores == {"gpt-4o-mini": pytest.approx(2 / 9), "gpt-4o": pytest.approx(2 / 9)}
        ref = gw.record(a.request_id + ".judge-ref")
        assert ref.served_model == "gpt-4o" and ref.decisions["route"]["judge"] == "reference"
        for suffix in (".judge", ".judge2"):
            assert gw.record(a.request_id + suffix).decisions["route"]["judge"] == "judge"
        line = outcome_of(gw, a.request_id)
        assert set(line["models"]) == {"gpt-4o-mini", "gpt-4o"} and line["source"] == "judge"


def _served(i: int) -> Any:
    from tokenomy.pipeline.context import Call

    body = {"model": "m", "messages": [{"role": "user", "content": f"question {i}"}]}
    call = Call("openai", "chat", "/v1/chat/completions", body, {}, request_id=f"req_{i}")
    call.record.status = 200
    return call


async def test_prompts_are_written_in_batches_after_the_reply(tmp_path: Any) -> None:
    from tokenomy.routing.feedback import PromptCollector

    with open_store(str(tmp_path / "l.db")) as store:
        store.migrate()
        collector = PromptCollector(store, max_batch=2)
        writes: list[int] = []
        save = collector.feedback.save_prompts
        collector.feedback.save_prompts = lambda rows: (writes.append(len(rows)), save(rows))[1]  # type: ignore[method-assign]
        for i in range(5):
            collector.add(_served(i))
        assert writes == []  # nothing is written on the request's path
        await collector.flush()
        assert writes == [2, 2, 1]  # one transaction per batch
        kept = store._read(lambda c: c.execute("SELECT request_id FROM route_prompts").fetchall())
        assert sorted(r[0] for r in kept) == [f"req_{i}" for i in range(5)]


async def test_a_backlog_drops_prompts_and_a_failed_write_is_logged(
    tmp_path: Any, caplog: Any
) -> None:
    from tokenomy.routing.feedback import PromptCollector

    with open_store(str(tmp_path / "l.db")) as store:
        store.migrate()
        collector = PromptCollector(store, max_pending=2)

        def fail(rows: Any) -> None:
            raise OSError("disk full")

        collector.feedback.save_prompts = fail  # type: ignore[method-assign]
        for i in range(3):
            collector.add(_served(i))
        assert collector.dropped == 1
        await collector.flush()  # does not raise
        assert "could not keep 2 collected prompts" in caplog.text
        assert "1 dropped" in caplog.text


def test_the_judge_reads_the_question_as_the_router_does() -> None:
    from tokenomy.pipeline.context import OPENAI, Call
    from tokenomy.routing.judge import MAX_CHARS, _question

    blocks = [{"type": "text", "text": "What is in"}, {"type": "image_url", "image_url": {}},
              {"type": "text", "text": "this picture?"}]  # fmt: skip
    body = {"model": "gpt-4o", "messages": [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": blocks}]}  # fmt: skip
    call = Call(OPENAI, "chat", "/v1/chat/completions", body, {})
    assert _question(call) == "What is in\nthis picture?"  # no blank line for the image
    long = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * MAX_CHARS + "end"}]}
    assert _question(Call(OPENAI, "chat", "/v1/chat/completions", long, {})).endswith("xend")


async def test_a_slow_judge_holds_a_bounded_number_of_requests(tmp_path: Any) -> None:
    """While the judge model does not answer, judgements (each holding its request)
    do not pile up: past MAX_PENDING running, samples are skipped and counted."""
    import asyncio

    from tokenomy.config import Deployment
    from tokenomy.errors import UpstreamTimeout
    from tokenomy.pipeline.context import Call
    from tokenomy.routing.config import Judge as JudgeConfig
    from tokenomy.routing.judge import MAX_PENDING, Judge
    from tokenomy.routing.stage import Plan

    release = asyncio.Event()
    sent: list[str] = []

    class Stalled:  # a judge model that answers only when released
        api, name, max_tokens_field = "openai", "openai", "max_tokens"
        deployment = Deployment("judge", "openai")

        async def send(self, op: str, model: str, body: Any, headers: Any) -> Any:
            sent.append(model)
            await release.wait()
            raise UpstreamTimeout("the judge timed out")  # logged, never raised

    with open_store(str(tmp_path / "l.db")) as store:
        store.migrate()

        async def write(rec: Any) -> None:
            return None

        judge = Judge(JudgeConfig(1.0, "judge"), store, provider_for=lambda _: Stalled(),  # type: ignore[arg-type,return-value]
                      meter=lambda call, usage: None, write=write)  # fmt: skip
        for i in range(MAX_PENDING + 50):
            call = Call("openai", "chat", "/v1/chat/completions",
                        {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}, {})  # fmt: skip
            call.route = Plan("m", "rule:x", ["m"], None)
            judge.maybe(call, {"choices": [{"message": {"content": "a"}}]}, "openai")
        await asyncio.sleep(0)
        assert len(judge._tasks) == MAX_PENDING and judge.skipped == 50
        assert len(sent) == MAX_PENDING
        release.set()
        await judge.close()
        assert not judge._tasks

"""The semantic key: the last user question, partitioned by everything before it."""

from __future__ import annotations

from typing import Any

from tokenomy.cache.semantic import context_of


def _openai(*messages: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": list(messages), **params}


def test_same_question_after_a_different_history_is_another_partition() -> None:
    q = {"role": "user", "content": "And what about the second one?"}
    a = context_of(
        _openai(
            {"role": "user", "content": "Compare Paris and Rome."},
            {"role": "assistant", "content": "Paris is..."},
            q,
        )
    )
    b = context_of(
        _openai(
            {"role": "user", "content": "Compare Python and Go."},
            {"role": "assistant", "content": "Python is..."},
            q,
        )
    )
    assert a is not None and b is not None
    assert a.text == b.text == "And what about the second one?"
    assert a.partition != b.partition


def test_system_prompt_model_and_tools_are_part_of_the_context() -> None:
    q = {"role": "user", "content": "hi"}
    base = context_of(_openai(q))
    assert base is not None
    others = [
        context_of(_openai({"role": "system", "content": "Be terse."}, q)),
        context_of({"model": "gpt-4o", "messages": [q]}),
        context_of(_openai(q, tools=[{"type": "function", "function": {"name": "f"}}])),
        context_of(_openai(q, temperature=0.7)),
    ]
    assert all(o is not None and o.partition != base.partition for o in others)


def test_fields_that_do_not_change_the_answer_are_ignored() -> None:
    q = {"role": "user", "content": "hi"}
    base = context_of(_openai(q, temperature=0))
    same = context_of(_openai(q, user="u1", metadata={"a": 1}, stream=True, temperature=0))
    assert base is not None and same is not None
    assert base.partition == same.partition


def test_anthropic_body_with_content_blocks_equals_plain_strings() -> None:
    blocks = {
        "model": "claude-haiku-4-5",
        "system": [{"type": "text", "text": "Be terse."}],
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is RAM?"}]}],
    }
    plain = {
        "model": "claude-haiku-4-5",
        "system": "Be terse.",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "What is RAM?"}],
    }
    a, b = context_of(blocks), context_of(plain)
    assert a is not None and a == b
    assert a.text == "What is RAM?"


def test_requests_without_a_plain_text_last_user_turn_are_not_semantic() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert context_of(_openai({"role": "user", "content": [image]})) is None
    assert (
        context_of(
            _openai({"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hel"})
        )
        is None
    )
    assert context_of(_openai({"role": "user", "content": "   "})) is None
    assert context_of({"model": "m", "messages": []}) is None
    tool = {"role": "tool", "tool_call_id": "c1", "content": "42"}
    assert context_of(_openai({"role": "user", "content": "hi"}, tool)) is None


def test_the_context_is_canonical_like_the_exact_key() -> None:
    q = {"role": "user", "content": "hi"}
    tool = {"type": "function", "function": {"name": "f"}}
    base = context_of(_openai(q, temperature=0, tools=[tool]))
    same = [  # what the exact key also treats as the same request
        context_of(_openai(q, temperature=0.0, tools=[tool])),
        context_of(_openai(q, temperature=0, tools=[tool], prompt_cache_key="user-7")),
        context_of(_openai(q, temperature=0, tools=[{**tool, "cache_control": {"type": "x"}}])),
        context_of(_openai(q, temperature=0, tools=[tool]), {"x-other": "1"}),
    ]
    assert base is not None
    assert all(s is not None and s.partition == base.partition for s in same)
    # a beta header changes the answer, so it changes the context
    beta = context_of(_openai(q, temperature=0, tools=[tool]), {"anthropic-beta": "b1"})
    assert beta is not None and beta.partition != base.partition


def test_the_routed_models_are_part_of_the_context() -> None:
    body = _openai({"role": "user", "content": "hi"}, temperature=0)
    base, same = context_of(body), context_of(body, None, ["gpt-4o-mini"])
    other = context_of(body, None, ["gpt-4o"])
    assert base is not None and same is not None and other is not None
    assert same.partition == base.partition  # served by the model asked for
    assert other.partition != base.partition

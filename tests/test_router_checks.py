"""The arithmetic verifier of cascade drafts: false claims found, true ones and prose left alone."""

from __future__ import annotations

import pytest

from tokenomy.routing.learned.checks import arithmetic_defects, check_score, claims

CLEAN = """Tom buys 3 packs of 12 pens, so he has 3 * 12 = 36 pens.
He gives away 1/4 of them: 36 / 4 = 9 pens.
So he keeps 36 - 9 = 27 pens.
#### 27"""


def test_a_correct_worked_answer_has_no_defects() -> None:
    assert len(claims(CLEAN)) == 3
    assert arithmetic_defects(CLEAN) == 0
    assert check_score(CLEAN) == 1.0


def test_each_false_claim_is_a_defect_and_lowers_the_score() -> None:
    one = CLEAN.replace("36 - 9 = 27", "36 - 9 = 28")
    two = one.replace("3 * 12 = 36", "3 * 12 = 38")
    assert arithmetic_defects(one) == 1
    assert arithmetic_defects(two) == 2
    assert check_score(one) == 0.5
    assert check_score(two) == pytest.approx(1 / 3)


def test_calculator_notes_are_checked_and_a_claim_stated_twice_counts_once() -> None:
    assert arithmetic_defects("She pays 9 * $2 = $<<9*2=18>>18.") == 0
    assert arithmetic_defects("She pays 9 * $2 = $<<9*2=19>>19.") == 1
    assert arithmetic_defects("The total is <<7+5=13>>13 eggs.") == 1


@pytest.mark.parametrize(
    "text",
    [
        "Each share is 10 / 3 = 3.33 dollars.",  # rounded to the digits shown
        "Each share is 10 / 3 = 3.3 dollars.",
        "Each share is 20 / 3 = 6.6 dollars.",  # truncated
        "The rate is 0.2 * 100 = 20%.",  # a percentage read either way
        "The discount is 20% * 50 = 10 dollars.",
        "The sum is 1,200 + 300 = 1,500 dollars.",  # thousands separators
        "Then 10 - 4 = 6 - 1 = 5 apples are left.",  # a chain goes on from its result
        "The area is (3 + 2) * 4 = 20 square feet.",
        "He makes 2^3 = 8 copies, 8 \u00d7 3 = 24 pages, 24 \u00f7 6 = 4 folders.",
        "Half of it: 5 / 2 = 5/2 = 2.5 hours.",
    ],
)
def test_true_claims_in_their_usual_forms_hold(text: str) -> None:
    assert claims(text), text
    assert arithmetic_defects(text) == 0


@pytest.mark.parametrize(
    "text",
    [
        "Let x = 5 and y = 7.",  # nothing to check: no operation
        "3 apples + 2 apples = 5 apples in all.",  # words cut the left side
        "The answer is 4 + the number of cats = 9.",
        "Step 2. 4 = 4, as expected.",
        "He had 12 - = 3 left.",  # not an expression
        "Divide: 7 / 0 = 3.",  # undefined: not judged
        "A tiny power: 2^1000 = 1.",  # out of range: not judged
        "so - 3 + 4 = 2",  # starts with an operator: its left operand was cut off
        "",
    ],
)
def test_what_cannot_be_read_as_arithmetic_is_not_judged(text: str) -> None:
    assert arithmetic_defects(text) == 0


def test_a_count_that_must_be_whole_may_round_the_claimed_result() -> None:
    assert arithmetic_defects("He needs 7 / 2 = 4 boxes.") == 0
    assert arithmetic_defects("He needs 7 / 2 = 5 boxes.") == 1


def test_words_after_a_complete_result_do_not_hide_a_false_claim() -> None:
    assert arithmetic_defects("So 6 * 7 = 48 cookies were baked.") == 1
    assert arithmetic_defects("6 * 7 = 42, and 42 + 8 = 51; done.") == 1


def test_a_result_cut_by_words_mid_operation_is_skipped() -> None:
    # "= 4 * the price": the right side is not arithmetic, so no claim is made
    assert claims("The cost is 2 + 2 = 4 * the price of one.") == []


def test_a_number_glued_to_a_word_is_not_a_result() -> None:
    # algebra: "100 / 5 = 5A / 5" states no arithmetic result
    assert arithmetic_defects("So 100 / 5 = 5A / 5, or 20 = A.") == 0


def test_numbers_too_large_for_any_sum_are_not_judged_and_cost_nothing() -> None:
    # nested powers grow a number's length exponentially: each level is refused
    # before it is computed (this took seconds and gigabytes, level by level)
    assert arithmetic_defects("((((((9^64)^64)^64)^64)^64)^64) = 5") == 0
    assert arithmetic_defects(" * ".join(["99999999999999999999"] * 300) + " = 7") == 0
    assert arithmetic_defects("2^64 = 18446744073709551616 and 2^10 = 1000") == 1


@pytest.mark.parametrize(
    "text",
    [
        "(" * 3000 + "1" + ")" * 3000 + " + 1 = 3",  # nesting deeper than Python's stack
        "-" * 3000 + "1 + 1 = 3",  # a run of signs, each a level
        "2^" + "(" * 400 + "2" + ")" * 400 + " = 5",
    ],
)
def test_deep_nesting_is_not_judged_and_never_raises(text: str) -> None:
    # it raised RecursionError, which the cascade turned into a 500
    assert arithmetic_defects(text) == 0
    assert check_score(text) == 1.0


def test_an_expression_longer_than_any_everyday_sum_is_not_read() -> None:
    # one sum of 250,000 terms took 1.7 s of the event loop; past a few hundred
    # tokens an expression is not a worked step, and reading stops there
    assert arithmetic_defects("1+" * 1000 + "1 = 7") == 0
    assert arithmetic_defects("1+" * 20 + "1 = 7") == 1

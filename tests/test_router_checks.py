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


@pytest.mark.parametrize(
    "text",
    [
        # a number cut by the scan: the left side began inside it
        "Each costs 1,5 * 2 = 3 euros.",  # a decimal comma
        "It left at 8:15 - 6 = 2:15, six hours earlier.",  # a time
        "The trip is 8:15 - 6:30 = 1:45 hours.",
        "Light goes 3e8 * 2 = 600000000 metres in two seconds.",  # scientific notation
        "So 1'200 + 300 = 1'500 francs.",  # Swiss thousands
        "₹1,00,000 + ₹50,000 = ₹1,50,000 in all.",  # Indian grouping
        "Die Summe ist 1.200 + 300 = 1.500 Euro.",  # dots grouping thousands
        # ranges and dates are not subtractions or divisions
        "Pages 10-20 = 11 pages.",
        "Each batch takes 5-10 minutes, so three take 3 * 5-10 = 15-30.",
        "From 3/4/2024 - 3/4/1990 = 34 years.",
        "2024-03-04 - 2024-03-01 = 3 days.",
        # conventions read either way
        "So -2^2 = -4, and (-2)^2 = 4.",  # the sign after the power
        "With the tip, 50 + 10% = 55 and 200 + 15% = 230.",  # a calculator's percentage
        "After the discount, $50 - 20% = $40.",
        # a result shown to a double's every digit
        "In Python, 10 / 3 = 3.3333333333333335.",
        # x as the unknown, f(x) as a function, a label glued to a number
        "Toby has 2x-10, Rebecca (2x-10)-8 = 2x-18 hours.",
        "The new book has 2x - 230 = 450 pages.",
        "If f(x) = 3x, then f(4) = 3 * 4 = 12.",
        "D3 = 2 * 322 = 644 voters.",
        # a result in a unit of its own; a spaced en dash as the minus
        "So, Bea earned $2.50 - $2.24 = 26 cents more.",
        "The table is $2,430 \u2013 ($1,250 + $850) = $2,430 \u2013 $2,100 = $330.",
        "In LaTeX, \\( 1{,}200 + 300 = 1{,}500 \\).",
        "Time: 2:30 + 45 min = 3:15, born 5/12/1990 = 33 years ago.",
        "Wir rechnen 2,5 * 4 = 10 und 12,50 \u20ac \u00d7 2 = 25 \u20ac.",
    ],
)
def test_ordinary_correct_answers_raise_no_false_alarm(text: str) -> None:
    assert arithmetic_defects(text) == 0


@pytest.mark.parametrize(
    "text",
    [
        "So -2^2 = 5.",
        "With the tip, 50 + 10% = 60.",
        "Each costs 1.5 * 2 = 4 euros.",
        "Light goes 3e8 * 2 = 7e8 metres.",
        "So 1'200 + 300 = 1'600 francs.",
        "Die Summe ist 1.200 + 300 = 1.600 Euro.",
        "The difference is 20-5 = 13.",  # an unspaced subtraction, not a range
    ],
)
def test_those_conventions_still_catch_a_false_claim(text: str) -> None:
    assert arithmetic_defects(text) == 1


@pytest.mark.parametrize(
    "text",
    [
        # LaTeX, as models write their sums
        r"Multiply: \( 3 \times 12 = 38 \) pens.",
        r"\[ \frac{36}{4} = 8 \]",
        r"So $6 \cdot 7 = 48$ and that is all.",
        r"36 - 9 = \boxed{28}",
        r"x &= 3 \cdot 4 + 2 = 15",
        r"\( 2^{10} = 1000 \)",
        r"\(\frac{3}{4} + \frac{1}{8} = \frac{5}{8}\)",
        r"\( 15\% \times 200 = 35 \)",
        # Markdown: bold results, list items
        "- Total: 20 + 30 = **55** miles",
        "**6 * 7 = 48**",
        "* 6 * 7 = 48",
        "a) 6 * 7 = 48",
        "Total = 3 * 4 + 2\n      = 15",  # a chain going on on the next line
        "$$\n\\begin{aligned}\nx &= 3 \\cdot 4 + 2 \\\\\n  &= 12 + 2 \\\\\n  &= 15\n\\end{aligned}\n$$",
        # typography and currencies
        "6 \u00b7 7 = 48",
        "50 \u2212 8 = 40",
        "2\u00b3 = 9",
        "He pays 3 * \u20ac4 = \u20ac13.",
        "Prix : 12 \u20ac \u00d7 2 = 26 \u20ac",
        "$6 * $7 = $48",
        "6 * 7 = 48 (cookies)",
    ],
)
def test_a_false_claim_in_any_usual_notation_is_found(text: str) -> None:
    assert arithmetic_defects(text) == 1, claims(text)


@pytest.mark.parametrize(
    "text",
    [
        r"Multiply: \( 3 \times 12 = 36 \) pens, then \( 36 \div 4 = 9 \).",
        r"\[ \frac{36}{4} = 9 \] and \( 36 - 9 = \boxed{27} \)",
        r"1. **Cost:** \(5 \times \$2 = \$10\), and \(\$10 + \$4.50 = \$14.50\)",
        "$$\n\\begin{aligned}\nx &= 3 \\cdot 4 + 2 \\\\\n  &= 12 + 2 \\\\\n  &= 14\n\\end{aligned}\n$$",
        r"\(\frac{3}{4} + \frac{1}{8} = \frac{6}{8} + \frac{1}{8} = \frac{7}{8}\)",
        r"\( 2^{10} = 1024 \), \( 1\,200 + 300 = 1\,500 \), \( 6.02 \times 10^{23} \times 2 = 1.204 \times 10^{24} \)",
        "- Tuesday: 20 \u00d7 1.5 = 30 miles\n- Total: 20 + 30 = **50 miles**",
        "2\u00b3 = 8 and 5\u00b2 \u2212 3\u00b2 = 16",
    ],
)
def test_the_same_notations_stated_truly_hold(text: str) -> None:
    assert claims(text), text
    assert arithmetic_defects(text) == 0, claims(text)

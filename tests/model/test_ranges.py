"""Unit tests of sweep value ranges (model/ranges.py).

Each test names the bug it guards against: an end point dropped by rounding (``0:1:0.1`` must
end at 1.0), integers turned into floats (``1:10:3`` must stay ints, which scenario keys such as
``selection.n`` require), float noise in the values (0.30000000000000004), a log range that
overshoots, and typos that expand to millions of values or accept non-numbers.
"""

from __future__ import annotations

import pytest

from mesaopt.model.ranges import (
    MAX_VALUES,
    expand_range,
    expand_values,
    is_range,
    parse_cli_values,
)


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("1:10:3", [1, 4, 7, 10]),
        ("1:9:3", [1, 4, 7]),
        ("0:1:0.25", [0.0, 0.25, 0.5, 0.75, 1.0]),
        ("1:1024:log2", [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]),
        ("0.001:1:log10", [0.001, 0.01, 0.1, 1.0]),
        ("1:1000:log", [1, 10, 100, 1000]),  # the base defaults to 10
        ("5:5:1", [5]),
    ],
)
def test_documented_expansions(text, values):
    got = expand_range(text)
    assert got == values
    assert [type(v) for v in got] == [type(v) for v in values]  # ints stay ints


def test_end_points_survive_rounding_and_values_are_clean():
    """0:1:0.1 accumulates float error; the stop must still be included and values rounded."""
    values = expand_range("0:1:0.1")
    assert len(values) == 11 and values[-1] == 1.0
    assert values[3] == 0.3  # not 0.30000000000000004
    assert expand_range("0.1:0.7:0.2") == [0.1, 0.3, 0.5, 0.7]
    assert expand_range("1:1000:log10")[-1] == 1000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1:2", "start:stop:step"),
        ("a:2:1", "start must be a finite number"),
        ("1:inf:1", "stop must be a finite number"),
        ("1:2:true", "step must be a finite number"),
        ("2:1:1", "start <= stop"),
        ("0:1:0", "step > 0"),
        ("0:8:log2", "0 < start"),
        ("1:8:log1", "log base must be > 1"),
        (f"0:{MAX_VALUES}:1", "values (at most"),
        # counts too large for a float overflow rather than exceed the cap (fuzzing, issue 15)
        ("0:1e308:1e-300", "too many values"),
        ("-1e308:1e308:1e305", "too many values"),
        ("5e-324:1e308:log2", "too many values"),
        (f"0:{10**400}:1", "stop must fit a 64-bit integer"),
    ],
)
def test_malformed_or_huge_ranges_are_refused(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        expand_range(text)


def test_expand_values_and_is_range():
    assert is_range("1:2:1") and not is_range("1:2") and not is_range(3)
    assert expand_values("1:3:1") == [1, 2, 3]
    assert expand_values([0.1, "optimal"]) == [0.1, "optimal"]
    assert expand_values(7) == [7]
    with pytest.raises(ValueError, match="at least one"):
        expand_values([])


def test_cli_values_are_toml_literals_or_bare_words():
    """Guards against numbers parsed as strings (a grid of "64" would be refused by n)."""
    assert parse_cli_values("1:4:log2") == [1, 2, 4]
    assert parse_cli_values('0.1, 3, "optimal", participation, true') == [
        0.1,
        3,
        "optimal",
        "participation",
        True,
    ]
    with pytest.raises(ValueError, match="empty value"):
        parse_cli_values("1,,2")


def test_a_huge_count_is_shown_by_its_size_not_its_digits():
    """A step of 1e-300 once printed a count of 301 digits (fuzzing pass)."""
    with pytest.raises(ValueError) as info:
        expand_range("0:1:1e-300")
    assert "about 1.0e+300 values (at most 100,000)" in str(info.value)
    assert len(str(info.value)) < 120
    with pytest.raises(ValueError, match="has 10,000,001 values"):
        expand_range("0:1:1e-7")


@pytest.mark.parametrize("text", ["0:1000000000000", "1:2:3:4", " 0.5 : 2 ", "5,0:1000000000000"])
def test_numbers_joined_by_one_or_three_colons_are_a_mistyped_range(text):
    """``0:1000000000000`` (no step) was taken as one string value, and a key that accepts a
    string, or the seed, which the sweep overwrites, ran it without a word (fuzzing pass)."""
    with pytest.raises(ValueError, match="a range looks like start:stop:step"):
        parse_cli_values(text)


def test_commas_inside_brackets_braces_or_quotes_do_not_split_values():
    """``[1,2],[3,4]`` was split into '[1', '2]', '[3', '4]' (fuzzing pass)."""
    assert parse_cli_values("[1,2],[3,4]") == [[1, 2], [3, 4]]
    assert parse_cli_values('{ dist = "laplace", scale = 0.5 },"a,b", c') == [
        {"dist": "laplace", "scale": 0.5},
        "a,b",
        "c",
    ]
    assert parse_cli_values("data/a:b.txt") == ["data/a:b.txt"]  # a word, not numbers
    # (review) an apostrophe inside a bare word is a letter, not a quote; a literal string
    # ('...') has no escapes, a basic one ("...") has
    assert parse_cli_values("don't,b") == ["don't", "b"]
    assert parse_cli_values("'C:\\',x") == ["C:\\", "x"]
    assert parse_cli_values('"a\\",b",c') == ['a",b', "c"]

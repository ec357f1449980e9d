"""The two matching rules (verifier/counterfund_verify.py, which the app imports), on
cases worked out by hand and on properties that hold for any input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.counterfund_verify import capped_matches, quadratic_matches, quadratic_raw

SCALE = 10**12  # quadratic_raw works in 10⁻¹² of a minor unit


def backers(*amounts: int) -> list[tuple[str, int]]:
    return [(f"b{i}", amount) for i, amount in enumerate(amounts)]


# ---- quadratic -------------------------------------------------------------------


def test_raw_match_is_the_square_of_the_roots_minus_the_sum():
    # (√100 + √400)² - 500 = (10 + 20)² - 500 = 400
    assert quadratic_raw([100, 400]) == 400 * SCALE
    # four backers of 100: (4 x 10)² - 400 = 1200
    assert quadratic_raw([100, 100, 100, 100]) == 1200 * SCALE


def test_one_backer_brings_no_match_however_large():
    assert quadratic_raw([1_000_000]) == 0
    assert quadratic_matches({"a": backers(1_000_000), "b": backers(50)}, 1000) == {
        "a": 0,
        "b": 0,
    }


def test_pool_is_shared_in_proportion_to_raw_matches():
    # a: 1200, b: (20 + 10)² - 500 = 400 → 3:1 of 1000
    result = quadratic_matches({"a": backers(100, 100, 100, 100), "b": backers(400, 100)}, 1000)
    assert result == {"a": 750, "b": 250}


def test_a_backers_pledges_to_one_campaign_count_as_one_backer():
    # x gives 100 + 300 = 400 and y 100: (20 + 10)² - 500 = 400; alone x would bring 0
    rows = [("x", 100), ("x", 300), ("y", 100)]
    assert quadratic_raw([400, 100]) == 400 * SCALE
    assert quadratic_matches({"a": rows, "b": backers(100, 100)}, 600) == {"a": 400, "b": 200}
    assert quadratic_matches({"a": rows[:2], "b": backers(100, 100)}, 600) == {"a": 0, "b": 600}


def test_a_capped_campaign_overflows_to_the_others_until_none_is_over():
    # raw a = 5 x 4 x 100 = 2000, b = (40 + 20)² - 2000 = 1600, c = (10 + 20)² - 500 = 400
    contributions = {
        "a": backers(100, 100, 100, 100, 100),
        "b": backers(1600, 400),
        "c": backers(100, 400),
    }
    # Uncapped: 500, 400, 100. Capped at 40 % (400): a is over, gets 400; the other 600
    # go 4:1 to b and c: b 480, over again, gets 400; c gets the remaining 200.
    assert quadratic_matches(contributions, 1000) == {"a": 500, "b": 400, "c": 100}
    assert quadratic_matches(contributions, 1000, max_share_bp=4000) == {
        "a": 400,
        "b": 400,
        "c": 200,
    }


def test_when_every_campaign_is_capped_the_rest_stays_in_the_pool():
    contributions = {"a": backers(100, 100), "b": backers(100, 100)}
    assert quadratic_matches(contributions, 1000, max_share_bp=3000) == {"a": 300, "b": 300}


def test_ties_split_the_odd_unit_by_campaign_name():
    contributions = {"b": backers(100, 100), "a": backers(100, 100)}
    assert quadratic_matches(contributions, 1001) == {"a": 501, "b": 500}


def test_many_tiny_pledges_beat_one_large_and_a_minimum_can_discount_them():
    tiny = backers(*([1] * 1000))  # raw 1000 x 999 x 1
    assert quadratic_raw([1] * 1000) == 999_000 * SCALE
    contributions = {"tiny": tiny, "large": backers(1_000_000)}
    assert quadratic_matches(contributions, 5000) == {"tiny": 5000, "large": 0}
    assert quadratic_matches(contributions, 5000, min_contribution=2) == {"tiny": 0, "large": 0}


def test_a_pledge_below_the_minimum_does_not_count_but_the_backers_others_do():
    rows = [("x", 1), ("x", 400), ("y", 100)]
    assert quadratic_matches({"a": rows, "b": backers(100, 100)}, 600, min_contribution=50) == {
        "a": 400,
        "b": 200,
    }


# ---- capped match ----------------------------------------------------------------


def test_capped_match_follows_each_cap_in_charge_order():
    pledges = [
        ("A", "x", 500),  # 300: the cap per pledge
        ("A", "x", 200),  # 100: x's cap on A is 400
        ("A", "y", 300),  # 200: A's cap is 600
        ("B", "z", 1000),  # 300: per pledge
        ("B", "w", 50),  # 50
        ("B", "v", 300),  # 50: all that is left of the pool
        ("A", "q", 100),  # 0: A is full (and so is the pool)
    ]
    result = capped_matches(pledges, 1000, per_pledge=300, per_backer=400, per_campaign=600)
    assert result == {"A": 600, "B": 400}


def test_the_cap_per_backer_binds_on_its_own():
    pledges = [("A", "x", 300), ("A", "x", 300), ("A", "y", 300), ("B", "x", 300)]
    # x reaches 400 on A (300 + 100); y has their own 400; on B, x starts afresh.
    assert capped_matches(pledges, 10_000, per_backer=400) == {"A": 700, "B": 300}


def test_the_cap_per_backer_adds_up_every_pledge_and_binds_on_the_first():
    assert capped_matches([("A", "x", 100)] * 3, 10_000, per_backer=250) == {"A": 250}
    assert capped_matches([("A", "x", 100)], 10_000, per_backer=50) == {"A": 50}


def test_the_cap_per_campaign_binds_on_the_first_pledge_and_the_default_ratio_is_one():
    assert capped_matches([("A", "x", 100)], 10_000, per_campaign=50) == {"A": 50}
    assert capped_matches([("A", "x", 10_000)], 10**6) == {"A": 10_000}


def test_the_odd_unit_goes_to_the_largest_remainder_not_the_first_name():
    # raw a = 2 x 1 x 100 = 200, b = (10 + 20)^2 - 500 = 400: 10 shared 3.33 / 6.67.
    contributions = {"a": backers(100, 100), "b": backers(100, 400)}
    assert quadratic_matches(contributions, 10) == {"a": 3, "b": 7}


def test_capped_match_ratio_rounds_down():
    assert capped_matches([("A", "x", 333)], 10_000, ratio_bp=15_000) == {"A": 499}
    assert capped_matches([("A", "x", 333)], 10_000, ratio_bp=5_000) == {"A": 166}


def test_first_charged_first_matched():
    pledges = [("A", "x", 700), ("B", "y", 700)]
    assert capped_matches(pledges, 1000) == {"A": 700, "B": 300}
    assert capped_matches(pledges[::-1], 1000) == {"B": 700, "A": 300}


# ---- properties ------------------------------------------------------------------

amounts = st.integers(min_value=1, max_value=10**9)
tags = st.sampled_from([f"t{i}" for i in range(12)])
campaign_rows = st.lists(st.tuples(tags, amounts), max_size=15)
rounds = st.dictionaries(st.sampled_from("abcdefgh"), campaign_rows, max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    rounds,
    st.integers(min_value=0, max_value=10**10),
    st.none() | st.integers(min_value=1, max_value=10_000),
    st.integers(min_value=0, max_value=1000),
)
def test_quadratic_matches_are_never_negative_never_above_the_pool_or_the_cap(
    contributions, pool, max_share_bp, minimum
):
    result = quadratic_matches(
        contributions, pool, max_share_bp=max_share_bp, min_contribution=minimum
    )
    assert set(result) == set(contributions)
    assert all(match >= 0 for match in result.values())
    assert sum(result.values()) <= pool
    cap = pool * max_share_bp // 10_000 if max_share_bp is not None else pool
    assert all(match <= cap for match in result.values())


@settings(max_examples=300, deadline=None)
@given(rounds, st.integers(min_value=1, max_value=10**10))
def test_uncapped_quadratic_gives_the_whole_pool_when_any_campaign_has_a_raw_match(
    contributions, pool
):
    result = quadratic_matches(contributions, pool)
    any_raw = any(
        quadratic_raw(list(_totals(rows).values())) > 0 for rows in contributions.values()
    )
    assert sum(result.values()) == (pool if any_raw else 0)


def _totals(rows):
    totals: dict[str, int] = {}
    for backer, amount in rows:
        totals[backer] = totals.get(backer, 0) + amount
    return totals


@settings(max_examples=500, deadline=None)
@given(st.lists(amounts, max_size=30), amounts)
def test_another_distinct_backer_never_lowers_the_raw_match(totals, newcomer):
    assert quadratic_raw([*totals, newcomer]) >= quadratic_raw(totals)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("ABC"), tags, amounts), max_size=40),
    st.integers(min_value=0, max_value=10**10),
    st.integers(min_value=0, max_value=30_000),
    st.none() | st.integers(min_value=0, max_value=10**6),
    st.none() | st.integers(min_value=0, max_value=10**6),
    st.none() | st.integers(min_value=0, max_value=10**7),
)
def test_capped_matches_respect_every_cap_and_the_pool(
    pledges, pool, ratio, per_pledge, per_backer, per_campaign
):
    result = capped_matches(
        pledges,
        pool,
        ratio_bp=ratio,
        per_pledge=per_pledge,
        per_backer=per_backer,
        per_campaign=per_campaign,
    )
    assert all(match >= 0 for match in result.values())
    assert sum(result.values()) <= pool
    for campaign, match in result.items():
        given_to_it = sum(a for c, _b, a in pledges if c == campaign)
        assert match <= given_to_it * ratio // 10_000
        if per_campaign is not None:
            assert match <= per_campaign
    if per_pledge is not None:
        assert sum(result.values()) <= per_pledge * len(pledges)

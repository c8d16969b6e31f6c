"""The margin a worker keeps back from a budget: measured from recent requests."""

import pytest

from dyn_dnn_ros.runtime.deadline_margin import DeadlineMargin, DeadlineMarginConfig


def test_no_margin_is_claimed_until_enough_requests_were_timed():
    margin = DeadlineMargin(DeadlineMarginConfig(min_samples=3))
    margin.add_way_in(0.001)
    margin.add_way_in(0.001)
    assert margin.margin_ms() is None
    margin.add_way_in(0.001)
    assert margin.margin_ms() == pytest.approx(2.0)   # there and back, nothing published yet


def test_the_margin_is_twice_the_way_in_plus_publishing_at_the_quantile():
    margin = DeadlineMargin(DeadlineMarginConfig(quantile=0.9, window=10, min_samples=1))
    for ms in range(1, 11):            # way in 1..10 ms: the 90th percentile is 10 ms
        margin.add_way_in(ms / 1000)
        margin.add_publish(0.0002)
    assert margin.margin_ms() == pytest.approx(2 * 10 + 0.2)
    for _ in range(10):                # the window forgets the slow spell
        margin.add_way_in(0.0005)
    assert margin.margin_ms() == pytest.approx(2 * 0.5 + 0.2)


def test_clocks_that_disagree_are_ignored_and_the_floor_holds():
    margin = DeadlineMargin(DeadlineMarginConfig(min_samples=1, floor_ms=0.5))
    for seconds in (-0.002, 5.0, float('nan'), float('inf')):
        margin.add_way_in(seconds)
    assert margin.margin_ms() is None
    margin.add_way_in(0.00001)
    assert margin.margin_ms() == 0.5


@pytest.mark.parametrize('field, value', [('quantile', 0.0), ('window', 0),
                                          ('min_samples', 0), ('floor_ms', -1.0)])
def test_a_config_out_of_range_is_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DeadlineMarginConfig(**{field: value})

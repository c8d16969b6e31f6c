"""bench/active_rows.py: settings parsing, the layout switch and the ratio summary."""

from bench_scripts import load_bench
import pytest

from dyn_dnn_ros.translation import beam_search

active_rows = load_bench('active_rows')


def test_settings_parse_to_dynamic_policies_and_bad_ones_name_themselves():
    policy = active_rows.parse_setting('2:5:0.29:1.121', 'gap')
    assert (policy.mode, policy.bw_min, policy.bw_max, policy.metric) == ('dynamic', 2, 5, 'gap')
    assert (policy.sigma_min, policy.sigma_max) == (0.29, 1.121)
    with pytest.raises(ValueError, match="setting '2:5:0.3'"):
        active_rows.parse_setting('2:5:0.3', 'std')
    with pytest.raises(ValueError, match="setting '5:2:0.1:0.2'"):
        active_rows.parse_setting('5:2:0.1:0.2', 'std')  # bw_min > bw_max


def test_grid_layout_drops_the_active_mask_and_is_undone_afterwards(monkeypatch):
    seen = []
    monkeypatch.setattr(beam_search, '_advance',
                        lambda state, rows, parent, active: seen.append(active))
    with active_rows.layout('grid'):
        beam_search._advance(None, None, None, 'mask')
    with active_rows.layout('active'):
        beam_search._advance(None, None, None, 'mask')
    assert seen == [None, 'mask']
    with pytest.raises(ValueError, match='layout'):
        with active_rows.layout('padded'):
            pass


def test_ratio_summary_gives_total_and_median_chunk_ratios():
    summary = active_rows.ratio_summary([1.0, 2.0, 0.9], [2.0, 2.0, 1.0])
    assert summary['active_s'] == pytest.approx(3.9)
    assert summary['grid_s'] == pytest.approx(5.0)
    assert summary['ratio'] == pytest.approx(0.78)
    assert summary['median_ratio'] == pytest.approx(0.9)
    with pytest.raises(ValueError):
        active_rows.ratio_summary([1.0], [])

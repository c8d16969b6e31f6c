"""Cross-device bench: its verdicts and arguments (the timing run itself is the bench's job)."""

from bench_scripts import load_bench
import pytest

from dyn_dnn_ros.operating_points import OperatingPoint
from dyn_dnn_ros.translation.beam_policy import BeamPolicy

bench = load_bench('cross_device')


def _point(name, bleu):
    return OperatingPoint(name=name, target='translation', subnet={}, latency_ms={1: 1.0},
                          quality=bleu, beam=BeamPolicy('fixed', 5))


def test_a_point_is_lost_only_to_another_librarys_point_as_fast_and_as_good():
    a1, a2 = _point('a1', 25.0), _point('a2', 28.0)
    b1, b2, b3 = _point('b1', 25.0), _point('b2', 27.0), _point('b3', 29.0)
    entries = [(0, a1, 10.0), (0, a2, 20.0),  # library 0
               (1, b1, 10.0),  # ties a1 on both: each dominates the other
               (1, b2, 19.0),  # faster than a2 but worse: neither loses
               (1, b3, 30.0)]  # slower than a2 and better: neither loses
    lost = bench.losses_here(entries)
    assert lost == {0: ['a1'], 1: ['b1']}
    # Within one library nothing is lost: a2 would dominate a slower, worse sibling.
    assert bench.losses_here([(0, a1, 30.0), (0, a2, 20.0)]) == {}


def test_bad_thread_count_fails_naming_the_option(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(['--threads', '0'])
    assert '--threads' in capsys.readouterr().err
    assert [p.name for p in bench.parse_args([]).library] == [
        'operating_points_translation_cpu_torch.yaml', 'operating_points_translation_cuda.yaml']

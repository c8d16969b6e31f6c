"""Front-vs-random bench: its arguments (the timing run itself is the bench's job)."""

from bench_scripts import load_bench
import pytest

bench = load_bench('front_vs_random')


def test_defaults_take_the_doubtful_comparisons_to_more_samples_than_one_pass():
    args = bench.parse_args([])
    assert args.refine_band == 0.05
    assert args.refine_repeats[0] > bench.LatencyProtocol().repeats
    assert args.refine_repeats == sorted(set(args.refine_repeats))


@pytest.mark.parametrize('argv, named', [
    (['--refine-band', 'nan'], '--refine-band'),
    (['--refine-band', '1'], '--refine-band'),
    (['--refine-band', '-0.1'], '--refine-band'),
    (['--refine-repeats', '10'], '--refine-repeats'),
    (['--refine-repeats', '3'], '--refine-repeats'),
    (['--refine-repeats', '30', '30'], '--refine-repeats'),
    (['--refine-repeats', '100', '30'], '--refine-repeats'),
])
def test_bad_second_pass_settings_fail_naming_the_option(argv, named, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert named in capsys.readouterr().err


def test_no_second_pass_takes_any_repeats():
    args = bench.parse_args(['--refine-band', '0', '--refine-repeats', '3'])
    assert args.refine_band == 0 and args.refine_repeats == [3]
    assert bench.escalation(0, 10, [3]) == []


def test_each_further_pass_narrows_the_band_as_the_standard_error_falls():
    passes = bench.escalation(0.05, 10, [30, 100])
    assert [n for n, _ in passes] == [30, 100]
    assert passes[0][1] == pytest.approx(0.05)  # picked from the 10-sample pass's noise
    assert passes[1][1] == pytest.approx(0.05 * (10 / 30) ** 0.5)  # from the 30-sample one

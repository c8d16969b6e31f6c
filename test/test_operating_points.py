import math

import pytest
import yaml

from dyn_dnn_ros.operating_points import (
    BeamPolicy,
    OperatingPoint,
    OperatingPointLibrary,
    load_timed_libraries,
)
from dyn_dnn_ros.share import library_path


def make_library():
    points = [
        OperatingPoint('big', 'translation', {'decoder_layers': 6}, {1: 90.0, 2: 50.0}, 27.0,
                       predicted_latency_ms=48.0, beam=BeamPolicy('fixed', width=5),
                       metrics={'val_loss': 3.1}),
        OperatingPoint('small', 'translation', {'decoder_layers': 1}, {1: 20.0, 2: 12.0}, 24.0,
                       beam=BeamPolicy('dynamic', bw_min=1, bw_max=4, sigma_min=0.5,
                                       sigma_max=2.0)),
    ]
    return OperatingPointLibrary('translation', 'cpu', 'bleu', points, meta={'host': 'x'})


def test_round_trip_preserves_everything(tmp_path):
    path = tmp_path / 'lib.yaml'
    make_library().save(path)
    assert [p.name for p in tmp_path.iterdir()] == ['lib.yaml']  # no temp file left
    loaded = OperatingPointLibrary.load(path)
    # compared as text: the unpredicted point's NaN latency is never == itself
    assert yaml.safe_dump(loaded.to_dict()) == yaml.safe_dump(make_library().to_dict())
    assert math.isnan(loaded.get('small').predicted_latency_ms)
    assert loaded.get('small').beam.describe() == 'dynamic std bw 1..4 sigma 0.5..2'
    assert [p.name for p in loaded.by_quality()] == ['big', 'small']
    assert loaded.fastest(threads=2).name == 'small'


def test_latency_at_falls_back_pessimistically():
    point = OperatingPoint('p', 'translation', {}, {2: 50.0, 4: 30.0}, 1.0)
    assert point.latency_at(2) == 50.0
    assert point.latency_at(3) == 50.0   # nearest measured count below
    assert point.latency_at(8) == 30.0
    assert point.latency_at(1) == 100.0  # below all measurements: scaled up
    with pytest.raises(ValueError, match='threads'):
        point.latency_at(0)


@pytest.mark.parametrize('policy, field', [
    (dict(mode='dynamic', bw_min=0, bw_max=4), 'bw_min'),
    (dict(mode='dynamic', bw_min=5, bw_max=4), 'bw_min'),
    (dict(mode='dynamic', sigma_min=2.0, sigma_max=1.0), 'sigma_min'),
    (dict(mode='dynamic', sigma_min=math.nan), 'sigma_min'),
    (dict(mode='wide'), 'mode'),
    (dict(mode='fixed', width=0), 'width'),
])
def test_bad_beam_policies_name_the_parameter(policy, field):
    with pytest.raises(ValueError, match=f'beam.{field}'):
        BeamPolicy(**policy)


@pytest.mark.parametrize('mutate, message', [
    (lambda d: d['points'][0].pop('latency_ms'), "points\\[0\\]: missing field 'latency_ms'"),
    (lambda d: d['points'][1]['latency_ms'].update({1: -3.0}), 'points\\[1\\].latency_ms\\[1\\]'),
    (lambda d: d['points'][0].update(quality=math.nan), 'points\\[0\\].quality'),
    (lambda d: d['points'][1].update(name='big'), 'duplicate name'),
    (lambda d: d.update(device='tpu'), 'device'),
    (lambda d: d['points'][0]['beam'].update(width=0), 'points\\[0\\].beam.width'),
])
def test_bad_files_name_the_field(tmp_path, mutate, message):
    data = make_library().to_dict()
    mutate(data)
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=message):
        OperatingPointLibrary.load(path)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ValueError, match='missing.yaml: cannot read'):
        OperatingPointLibrary.load(tmp_path / 'missing.yaml')
    path = tmp_path / 'broken.yaml'
    path.write_text('points: [unclosed')
    with pytest.raises(ValueError, match='broken.yaml: malformed YAML'):
        OperatingPointLibrary.load(path)


def test_unknown_point_lists_known_ones():
    with pytest.raises(KeyError, match='known: big, small'):
        make_library().get('medium')


def test_shipped_libraries_are_where_library_path_says_and_match_its_target_and_device():
    for target, device, engine in (('translation', 'cpu', None), ('translation', 'cpu', 'torch'),
                                   ('translation', 'cuda', None), ('perception', 'cpu', None)):
        path = library_path(target, device, engine)
        assert path.parent.name == 'generated' and path.parent.parent.name == 'config'
        library = OperatingPointLibrary.load(path)
        assert (library.target, library.device) == (target, device)
        assert library.engine == (engine or ('ctranslate2' if target == 'translation' and
                                            device == 'cpu' else 'torch'))


def test_libraries_timed_with_another_workload_are_refused_naming_the_file():
    shipped = library_path('translation', 'cpu', 'torch')
    workload = OperatingPointLibrary.load(shipped).meta['workload']
    assert len(load_timed_libraries([shipped, shipped], workload)) == 2
    with pytest.raises(ValueError,
                       match='operating_points_translation_cpu_torch.yaml: measured with '
                             'workload'):
        load_timed_libraries([shipped], 'ref-k1-seed9')


@pytest.mark.parametrize('policy, field', [
    # Unused in fixed mode, but kept by the worker: a later switch to dynamic
    # mode would put them in force, so the policy is checked as a whole.
    (dict(mode='fixed', width=3, bw_min=6, bw_max=5), 'bw_min'),
    (dict(mode='fixed', width=3, sigma_min=3.0, sigma_max=2.0), 'sigma_min'),
    (dict(mode='fixed', width=3, sigma_min=2.0, sigma_max=2.0), 'sigma_min'),
    (dict(mode='fixed', width=3, metric='range'), 'metric'),
])
def test_a_fixed_policy_is_validated_as_a_whole(policy, field):
    with pytest.raises(ValueError, match=f'beam.{field}'):
        BeamPolicy(**policy)
    assert BeamPolicy(mode='fixed', width=3, bw_min=2, bw_max=7).to_dict() == \
        {'mode': 'fixed', 'width': 3}

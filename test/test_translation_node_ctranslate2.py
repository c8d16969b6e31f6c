"""The translation node on the CTranslate2 engine, over real DDS, with a small model."""

from dataclasses import replace

import pytest
from rclpy.duration import Duration
from rclpy.parameter import Parameter
from ros_harness import MessageCollector, set_parameters, wait_until
from translation_fixtures import SPM, tiny_space, write_tiny_model

from dyn_dnn_ros.files import file_digest
from dyn_dnn_ros.operating_points import OperatingPoint, OperatingPointLibrary
from dyn_dnn_ros.ros.nodes.translation import TranslationNode
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.design_space import SubnetConfig
from dyn_dnn_ros.translation.tokenizer import Tokenizer
from dyn_dnn_ros_interfaces.msg import TranslationRequest, TranslationResult

pytestmark = pytest.mark.ros


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('tiny-ct2')
    model_path, torch_library = write_tiny_model(folder)
    space = tiny_space()
    small = replace(space.smallest(), decoder_ende=(1,))
    # Cross-attention narrower than self-attention: exported with zero-padded heads.
    padded = replace(space.largest(), decoder_ende=(1, 1), decoder_cross_heads=(1, 1))
    library = OperatingPointLibrary('translation', 'cpu', 'bleu', [
        OperatingPoint('ct2_big', 'translation', padded.to_dict(), {1: 6.0, 2: 9.0}, 10.0,
                       beam=BeamPolicy('fixed', width=3)),
        OperatingPoint('ct2_small', 'translation', small.to_dict(), {1: 3.0, 2: 5.0}, 5.0,
                       beam=BeamPolicy('fixed', width=1)),
    ], meta={'source': 'test fixture, latencies not measured'}, engine='ctranslate2',
        compute_type='int8')
    library_path = folder / 'ct2_library.yaml'
    library.save(library_path)
    return model_path, library_path, torch_library, folder / 'cache'


def start(ros, namespace, files, library=None, **parameters):
    model_path, library_path, _, cache = files
    values = dict(model_path=str(model_path), spm_path=str(SPM),
                  library_path=str(library or library_path), model_cache_dir=str(cache),
                  threads=1, wait_for_setting_s=0.0)
    values.update(parameters)
    return TranslationNode(context=ros.context, namespace=namespace,
                           parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])


def test_the_node_serves_a_ctranslate2_library_and_refuses_what_it_cannot_run(ros, probe,
                                                                                  files):
    node = ros.add(start(ros, '/ct1', files))
    try:
        assert node.engine_name == 'ctranslate2' and node.library.compute_type == 'int8'
        # Every point was loaded at start: a switch is a lookup.
        assert {key for key, _ in node.translator.loaded} == {
            SubnetConfig.from_dict(p.subnet).key() for p in node.library.points}
        results = MessageCollector(probe, TranslationResult, '/ct1/translation_results')
        publisher = probe.create_publisher(TranslationRequest, '/ct1/translation_requests', 10)
        wait_until(lambda: publisher.get_subscription_count() > 0)
        sent = TranslationRequest(id='r1', text='Open the file')
        sent.header.frame_id = 'cam'
        publisher.publish(sent)
        result = results.wait_for(lambda m: m.id == 'r1', timeout=30)[0]
        assert result.status == TranslationResult.STATUS_OK and result.text
        assert result.header.frame_id == 'cam' and result.operating_point == 'ct2_big'

        refused = set_parameters(probe, '/ct1/translation_node',
                                 {'beam_mode': 'dynamic', 'bw_min': 1, 'bw_max': 3},
                                 atomically=True)[0]
        assert not refused.successful
        assert 'dynamic beam width is a feature of the torch engine' in refused.reason
        switched = set_parameters(probe, '/ct1/translation_node',
                                  {'operating_point': 'ct2_small', 'beam_width': 1},
                                  atomically=True)[0]
        assert switched.successful, switched.reason
        wait_until(lambda: node.worker.setting.point == 'ct2_small')
        publisher.publish(TranslationRequest(id='r2', text='Close the window'))
        result = results.wait_for(lambda m: m.id == 'r2', timeout=30)[0]
        assert result.operating_point == 'ct2_small' and result.decoder_layers == 1

        # A request already past its budget: cut, never reported OK.
        assert set_parameters(probe, '/ct1/translation_node', {'budget_ms': 5.0})[0].successful
        wait_until(lambda: node.worker.setting.budget_ms == 5.0)
        late = TranslationRequest(id='late', text='Open the file and save it again')
        late.header.stamp = (probe.get_clock().now() - Duration(seconds=0.05)).to_msg()
        publisher.publish(late)
        result = results.wait_for(lambda m: m.id == 'late', timeout=30)[0]
        assert result.status == TranslationResult.STATUS_PARTIAL and result.stopped_at_deadline
    finally:
        ros.remove(node)


def test_a_library_for_another_engine_or_device_is_refused_at_start(ros, files):
    _, _, torch_library, _ = files
    with pytest.raises(ValueError, match='made for torch float32 on cpu, this worker runs '
                                         'ctranslate2 on cpu'):
        start(ros, '/ct2', files, library=torch_library, engine='ctranslate2')


def test_a_library_is_run_with_the_vocabulary_map_it_was_measured_with(ros, files, tmp_path):
    model_path, library_path, _, _ = files
    tokenizer_pieces = Tokenizer(SPM).pieces()
    good = tmp_path / 'map.txt'
    good.write_text(f'\t{tokenizer_pieces[10]} {tokenizer_pieces[11]}\n')
    measured = replace(OperatingPointLibrary.load(library_path),
                       vocabulary_map_sha256=file_digest(good))
    measured.save(tmp_path / 'measured.yaml')
    node = ros.add(start(ros, '/ct3', files, library=tmp_path / 'measured.yaml',
                         vocabulary_map_path=str(good)))
    assert node.translator.use_vmap
    assert node.translator.vocabulary_map_sha256 == measured.vocabulary_map_sha256
    # Another map (here: the shipped one) is refused, naming both digests.
    with pytest.raises(ValueError, match=f'measured with vocabulary map sha256 '
                                         f'{measured.vocabulary_map_sha256[:12]}, this worker '
                                         'runs with vocabulary map sha256'):
        start(ros, '/ct4', files, library=tmp_path / 'measured.yaml')

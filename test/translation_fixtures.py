"""A small random-weight SuperTransformer, saved like the shipped one, plus a library.

Node tests check behaviour (routing, headers, switching, queueing), which
does not depend on translation quality, so they use this quick model with
the real tokenizer instead of the trained weights.
"""

from pathlib import Path

import torch

from dyn_dnn_ros.operating_points import OperatingPoint, OperatingPointLibrary
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.checkpoint import save_model
from dyn_dnn_ros.translation.design_space import DesignSpace
from dyn_dnn_ros.translation.supernet import SuperTransformer
from dyn_dnn_ros.translation.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
SPM = ROOT / 'models' / 'translation' / 'spm.model'


def tiny_space():
    return DesignSpace(encoder_embed_dim=(64,), decoder_embed_dim=(64,), ffn_dim=(64, 128),
                       heads=(1, 2), encoder_layers=(2,), decoder_layers=(1, 2),
                       ende=(1, 2), head_dim=32, max_positions=64)


def write_tiny_model(folder, seed=0):
    """Model file and a two-point library ('big', 'small') in ``folder``."""
    torch.manual_seed(seed)
    tokenizer = Tokenizer(SPM)
    space = tiny_space()
    model = SuperTransformer(space, tokenizer.vocab_size, tokenizer.pad_id, tokenizer.bos_id,
                             tokenizer.eos_id, dropout=0.0)
    model_path = Path(folder) / 'tiny.safetensors'
    save_model(model_path, model)
    library = OperatingPointLibrary('translation', 'cpu', 'bleu', [
        OperatingPoint('big', 'translation', space.largest().to_dict(), {1: 20.0, 2: 12.0},
                       10.0, beam=BeamPolicy('fixed', width=3)),
        OperatingPoint('small', 'translation', space.smallest().to_dict(), {1: 8.0, 2: 5.0},
                       5.0, beam=BeamPolicy('fixed', width=1)),
    ], meta={'source': 'test fixture, latencies not measured'})
    library_path = Path(folder) / 'library.yaml'
    library.save(library_path)
    return model_path, library_path

"""scripts/train_cuda.sh on the CPU: its preset and the trainer fit together.

The script is meant for a GPU; with DEVICE=cpu and a three-step limit it runs
the same command, options and outputs on a tiny corpus in seconds.
"""

import json
import os
from pathlib import Path
import subprocess
import sys

import torch
from training_fixtures import write_tiny_corpus
from translation_fixtures import SPM

from dyn_dnn_ros.translation.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'scripts' / 'train_cuda.sh'


def script_env(tmp_path, corpus, space, **more):
    return dict(os.environ, DEVICE='cpu', PYTHON=sys.executable, RUN=str(tmp_path / 'run'),
                CORPUS=str(corpus), SPACE=str(space), SPM=str(SPM), TQDM_DISABLE='1',
                TRAIN_ARGS='--max-steps 3 --threads 1 --valid-sentences 4 --no-progress',
                **more)


def test_the_gpu_script_trains_validates_and_exports_on_the_cpu(tmp_path):
    corpus, space = write_tiny_corpus(tmp_path)
    done = subprocess.run(['bash', str(SCRIPT)], env=script_env(tmp_path, corpus, space),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert 'trained 3 steps' in done.stdout and '== train_cuda.sh took' in done.stdout
    run = tmp_path / 'run'
    history = json.loads((run / 'history.json').read_text())
    # the preset's batch holds the whole tiny corpus: one step per epoch, validated each
    assert [r['step'] for r in history['validations']] == [1, 2, 3]
    final = history['final']
    assert final['reason'] == 'max_steps' and final['tokens_per_s'] > 0
    assert final['wall_seconds'] >= final['train_seconds'] > 0
    config = torch.load(run / 'checkpoint_last.pt', weights_only=True)['progress']['config']
    assert (config['max_tokens'], config['device'], config['max_minutes']) == (16384, 'cpu', 10)
    assert (run / 'learning_curve.png').stat().st_size > 0
    assert load_model(run / 'model.safetensors').vocab_size == 8000


def test_the_gpu_script_says_when_the_train_split_is_missing(tmp_path):
    corpus, space = write_tiny_corpus(tmp_path)
    (corpus / 'train.de').unlink()
    done = subprocess.run(['bash', str(SCRIPT)], env=script_env(tmp_path, corpus, space),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f'{corpus}/train.de is missing; build the corpus first' in done.stderr

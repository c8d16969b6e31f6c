"""scripts/design_cuda.sh end to end, on the CPU here and sized to seconds.

The script is meant for a GPU machine; its steps are the device-independent
commands, so a CPU run with a tiny budget and a tiny sweep checks that they
fit together and that the outputs land where the options say.
"""

import os
from pathlib import Path
import subprocess
import sys

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Two samples at one thread count of one sentence decoded 5 steps, no warm-up: dozens of
# sub-networks fit the 3 s budget (enough for the predictor fit even on a slow machine).
# The sweep times its winners the same way (TINY_PROTOCOL in both), as it must.
TINY_PROTOCOL = '--repeats 2 --sentences 1 --warmup 0 --fixed-length 5'
TINY_LATENCY = f'{TINY_PROTOCOL} --threads 1'
# The predictor's fits at a tenth of their training steps: the same code, in seconds (on
# one thread, which such small fits do not need more of).
TINY_PREDICTOR = '--epochs 200 --threads 1'
TINY_SWEEP = ('--threads 1 --count 1 --iterations 1 --population 4 --parents 1 --mutations 2 '
              '--crossovers 1 --max-finalists 1 --per-gap 0 --fill-searches 0 --bleu-sentences 4 '
              '--bleu-batch-size 4 --fitness-sentences 8 --refine-band 0 --random 0 '
              + TINY_PROTOCOL)


def test_the_pipeline_script_writes_a_library_a_plot_and_a_reduced_space(tmp_path):
    env = dict(os.environ, DEVICE='cpu', PYTHON=sys.executable, RUN=str(tmp_path / 'run'),
               CONFIG=str(tmp_path), DOCS=str(tmp_path), LATENCY_MINUTES='0.05',
               LATENCY_ARGS=TINY_LATENCY, PREDICTOR_ARGS=TINY_PREDICTOR,
               SWEEP_ARGS=TINY_SWEEP, TQDM_DISABLE='1')
    done = subprocess.run(['bash', str(ROOT / 'scripts' / 'design_cuda.sh')], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for step in ('latency', 'predictor', 'sweep', 'design-report'):
        assert f'== {step} took' in done.stdout
    assert 'sub-networks fit a budget of 3 s' in done.stdout
    library_file = tmp_path / 'operating_points_translation_cpu_torch.yaml'
    library = yaml.safe_load(library_file.read_text())
    assert library['device'] == 'cpu' and library['points']
    assert (tmp_path / 'pareto_cpu.png').stat().st_size > 0
    reduced = yaml.safe_load((tmp_path / 'design_space_reduced_cpu.yaml').read_text())
    assert reduced
    assert (tmp_path / 'run' / 'sweep_cpu' / 'searches.json').is_file()

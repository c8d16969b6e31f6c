"""The folder of exported CTranslate2 models: built on first use, rebuilt when stale.

Exported models are derived files (a few MB each, made in well under a second),
so they are not shipped: the first use of a sub-network exports it into the
cache. Each model folder records what it was made from (a digest of the
super-network weights and of the tokenizer, the exporter's format, the
CTranslate2 version, the sub-network, the compute type, the head layout and,
when one is used, the vocabulary map, copied in as ``vmap.txt``); a folder
whose record differs from what is asked for is stale and is exported again,
so new weights, a new tokenizer or a new map can never run with old models.

CTranslate2's specification classes import torch when it is installed. A
process that has not imported torch (a worker node on this engine) exports in
a child process, so the worker's own memory never holds torch.
"""

import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile

from dyn_dnn_ros.files import file_digest
from dyn_dnn_ros.translation.ctranslate2_export import export_subnet
from dyn_dnn_ros.translation.vocabulary_map import CTRANSLATE2_FILE

# Bump when the exporter's output changes meaning for the same inputs.
EXPORT_FORMAT = 'dyn_dnn_ros.ctranslate2/1'
RECORD_FILE = 'dyn_dnn_ros.json'


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dyn_dnn_ros/ctranslate2``, else ``~/.cache/dyn_dnn_ros/ctranslate2``."""
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base) / 'dyn_dnn_ros' / 'ctranslate2'


class ModelCache:
    """Model folders of one weights file and tokenizer, one per sub-network and compute type."""

    def __init__(self, cache_dir, weights_path, spm_path, quantization, heads,
                 vocabulary_map=None):
        """``vocabulary_map``: the map file every model gets, or None (the whole vocabulary)."""
        import ctranslate2
        self.cache_dir = Path(cache_dir)
        self.weights_path, self.spm_path = Path(weights_path), Path(spm_path)
        self.quantization, self.heads = quantization, heads
        self.vocabulary_map = None if vocabulary_map is None else Path(vocabulary_map)
        self.source = {
            'format': EXPORT_FORMAT,
            'ctranslate2': ctranslate2.__version__,
            'weights_sha256': file_digest(self.weights_path),
            'tokenizer_sha256': file_digest(self.spm_path),
            'quantization': quantization,
            'heads': heads,
        }
        self.map_tag = ''
        if self.vocabulary_map is not None:
            try:
                self.source['vocabulary_map_sha256'] = file_digest(self.vocabulary_map)
            except OSError as error:
                raise ValueError(f'vocabulary map {self.vocabulary_map}: cannot read it '
                                 f'({error.strerror})') from None
            # Models with and without a map, or with two maps, may share one cache.
            self.map_tag = f'-vmap{self.source["vocabulary_map_sha256"][:8]}'
        self.exports = 0  # models written by this cache object (stale or missing)
        self._weights = None

    def folder(self, subnet) -> Path:
        return self.cache_dir / f'{subnet.key()}-{self.quantization}-{self.heads}{self.map_tag}'

    def record(self, subnet) -> dict:
        return {**self.source, 'subnet': subnet.to_dict()}

    def is_current(self, subnet) -> bool:
        try:
            found = json.loads((self.folder(subnet) / RECORD_FILE).read_text())
        except (OSError, ValueError):
            return False
        return found == self.record(subnet)

    def model_dir(self, subnet, vocabulary) -> Path:
        """The folder of ``subnet``'s model, exported now if missing or stale."""
        folder = self.folder(subnet)
        if self.is_current(subnet):
            return folder
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # Export beside the target and rename: a reader never sees half a model,
        # and two processes exporting the same model at once both end complete.
        staging = Path(tempfile.mkdtemp(prefix=f'.{folder.name}.', dir=self.cache_dir))
        try:
            self._export(subnet, vocabulary, staging / 'model')
            if self.vocabulary_map is not None:
                self._copy_map(staging / 'model' / CTRANSLATE2_FILE)
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
            try:
                os.replace(staging / 'model', folder)
            except OSError:
                if not self.is_current(subnet):  # another process won the race: fine
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.exports += 1
        return folder

    def _copy_map(self, target):
        shutil.copyfile(self.vocabulary_map, target)
        if file_digest(target) != self.source['vocabulary_map_sha256']:
            raise ValueError(f'vocabulary map {self.vocabulary_map} changed while this engine '
                             'ran: start it again to use the new map')

    def _export(self, subnet, vocabulary, out_dir):
        if 'torch' in sys.modules:  # nothing to keep out of this process
            if self._weights is None:
                from dyn_dnn_ros.translation.ctranslate2_export import SuperWeights
                self._weights = SuperWeights.load(self.weights_path)
            export_subnet(self._weights, subnet, vocabulary, out_dir,
                          quantization=self.quantization, heads=self.heads,
                          metadata=self.record(subnet))
            return
        job = {'weights': str(self.weights_path), 'subnet': subnet.to_dict(),
               'vocabulary': list(vocabulary), 'out_dir': str(out_dir),
               'quantization': self.quantization, 'heads': self.heads,
               'metadata': self.record(subnet)}
        done = subprocess.run([sys.executable, '-m', __name__], input=json.dumps(job),
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or ['no error output']
            raise ValueError(f'exporting {subnet.key()} failed: {lines[-1]}')


def _export_job():
    """Child-process side of ``ModelCache._export``: one export described on stdin."""
    from dyn_dnn_ros.translation.ctranslate2_export import SuperWeights
    from dyn_dnn_ros.translation.design_space import SubnetConfig
    job = json.load(sys.stdin)
    export_subnet(SuperWeights.load(job['weights']), SubnetConfig.from_dict(job['subnet']),
                  job['vocabulary'], job['out_dir'], quantization=job['quantization'],
                  heads=job['heads'], metadata=job['metadata'])


if __name__ == '__main__':
    _export_job()

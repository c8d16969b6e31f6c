"""Jetson reader: the nvpmodel power mode, via jetson-stats (jtop) or ``nvpmodel -q``."""

import importlib
from pathlib import Path
import re
import shutil
import subprocess

from dyn_dnn_ros.resources.readers import Reader

_MODE_LINE = re.compile(r'NV Power Mode:\s*(\S.*)')


def parse_nvpmodel_query(output: str) -> str:
    """Return the mode name from ``nvpmodel -q`` output ('NV Power Mode: MAXN' / '0')."""
    match = _MODE_LINE.search(output)
    if match is None:
        raise ValueError(f'no "NV Power Mode:" line in nvpmodel output {output[:80]!r}')
    return match.group(1).strip()


class JetsonReader(Reader):
    """Power mode of an NVIDIA Jetson; unavailable anywhere else.

    jetson-stats is optional and imported lazily; without it (or without its
    service running) the reader asks ``nvpmodel -q`` on each read.
    """

    name = 'jetson'

    def __init__(self, etc_root: Path = Path('/etc'), nvpmodel: str = 'nvpmodel'):
        super().__init__()
        self.release = Path(etc_root) / 'nv_tegra_release'
        self.nvpmodel = nvpmodel
        self._jtop = None

    def _connect_jtop(self):
        try:
            jtop = importlib.import_module('jtop').jtop
        except ImportError:
            return None
        try:
            client = jtop()
            client.start()  # talks to the jtop service; fails when it is not running
        except Exception:
            return None
        return client

    def probe(self):
        self._jtop = self._connect_jtop()
        if self._jtop is not None:
            return ''
        if not self.release.is_file():
            return f'not a Jetson: {self.release} not found and jetson-stats not usable'
        if shutil.which(self.nvpmodel) is None:
            return f'{self.nvpmodel} not found on PATH'
        return ''

    def read(self, snapshot):
        if self._jtop is not None:
            model = self._jtop.nvpmodel
            snapshot.power_mode = '' if model is None else str(model)
            return
        result = subprocess.run([self.nvpmodel, '-q'], capture_output=True, text=True,
                                timeout=5, check=True)
        snapshot.power_mode = parse_nvpmodel_query(result.stdout)

    def close(self):
        if self._jtop is not None:
            self._jtop.close()
            self._jtop = None

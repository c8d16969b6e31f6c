"""Design time of Dynamic-HAT: latency dataset, predictor, evolutionary search, sweep, report.

Core code: no rclpy. The pipeline, one command per step::

    dyn-dnn-ros latency      # measure random sub-networks -> latency CSV
    dyn-dnn-ros predictor    # fit per-layer latency predictors -> predictor file
    dyn-dnn-ros search       # one evolutionary search under one latency constraint
    dyn-dnn-ros sweep        # searches over a range of constraints -> operating-point library
    dyn-dnn-ros design-report  # which design-space choices the library uses
"""

import os
from pathlib import Path
import tempfile


def write_atomic(path, data: bytes):
    """Write through a temporary file in the same folder, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as stream:
            stream.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates owner-only files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

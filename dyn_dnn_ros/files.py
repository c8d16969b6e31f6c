"""Writing files so that a reader never sees half of one, even after a crash or Ctrl-C."""

from contextlib import contextmanager
import hashlib
import json
import os
from pathlib import Path
import tempfile


@contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; it replaces ``path`` if the block succeeds.

    The temporary file lives in the same folder (so the rename is atomic) and
    is removed when the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates owner-only files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path, data: bytes):
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def file_digest(path, algorithm='sha256') -> str:
    """Hex digest of a file's bytes, read in blocks: ties derived files to their source."""
    digest = hashlib.new(algorithm)
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def json_digest(value) -> str:
    """SHA-256 of ``value`` as canonical JSON: ties measurements to the data they were made on."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(',', ':'))
    return hashlib.sha256(text.encode('utf-8')).hexdigest()

"""The SuperTransformer file's header: what a saved model claims to be, read without torch.

The run-time path with the CTranslate2 engine and the exporter only need the
header (design space, vocabulary size, special ids) and NumPy arrays, so this
module imports neither torch nor the model; ``checkpoint.py`` builds on it.
"""

import json
from pathlib import Path

FORMAT = 'dyn_dnn_ros.supertransformer/1'
MODEL_FILE = 'supertransformer.safetensors'
SPM_FILE = 'spm.model'
HEADER_KEY = 'dyn_dnn_ros'


def default_model_path() -> Path:
    from dyn_dnn_ros.share import model_path
    return model_path('translation', MODEL_FILE)


def default_spm_path() -> Path:
    from dyn_dnn_ros.share import model_path
    return model_path('translation', SPM_FILE)


def default_vocabulary_map_path() -> Path:
    from dyn_dnn_ros.share import model_path
    from dyn_dnn_ros.translation.vocabulary_map import FILE_NAME
    return model_path('translation', FILE_NAME)


def read_header(path):
    """The model header of a saved model file (no weights are read)."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise ValueError(f'model file {path} does not exist')
    try:
        with safe_open(str(path), framework='numpy') as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise ValueError(f'{path}: not a readable safetensors file: {err}') from None
    if HEADER_KEY not in meta:
        raise ValueError(f'{path}: no {HEADER_KEY!r} header; not a dyn_dnn_ros model file')
    try:
        header = json.loads(meta[HEADER_KEY])
    except json.JSONDecodeError as err:
        raise ValueError(f'{path}: corrupt header JSON: {err}') from None
    if not isinstance(header, dict) or header.get('format') != FORMAT:
        found = header.get('format') if isinstance(header, dict) else header
        raise ValueError(f'{path}: header format {found!r}, expected {FORMAT!r}')
    return header

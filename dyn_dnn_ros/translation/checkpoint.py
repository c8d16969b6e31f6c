"""Saving and loading SuperTransformers: fp16 safetensors models and resumable training states.

A model file carries, in its safetensors header, everything needed to rebuild
the network (design space, weight shape, vocabulary size, special ids), so a
file that does not match what it claims fails at load with a ``ValueError``
naming the file, never later with a shape error deep in a forward pass.
"""

import json
from pathlib import Path
import random

from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
import torch

from dyn_dnn_ros.files import atomic_output, write_atomic
from dyn_dnn_ros.translation.design_space import DesignSpace, SubnetConfig
from dyn_dnn_ros.translation.model_file import FORMAT, HEADER_KEY, read_header
from dyn_dnn_ros.translation.supernet import SuperTransformer


def model_header(model: SuperTransformer, metadata=None):
    return {
        'format': FORMAT,
        'space': model.space.to_dict(),
        'shape': model.super_shape.to_dict(),
        'vocab_size': model.vocab_size,
        'pad_id': model.pad_id, 'bos_id': model.bos_id, 'eos_id': model.eos_id,
        'dropout': model.dropout,
        'metadata': metadata or {},
    }


def model_from_header(header, source):
    """Build an (uninitialised-weights) model from a header dict; ``source`` names the file."""
    if not isinstance(header, dict) or header.get('format') != FORMAT:
        found = header.get('format') if isinstance(header, dict) else header
        raise ValueError(f'{source}: header format {found!r}, expected {FORMAT!r}')
    try:
        space = DesignSpace.from_dict(header['space'], source=f'{source} design space')
        shape = SubnetConfig.from_dict(header['shape'])
        return SuperTransformer(space, header['vocab_size'], header['pad_id'], header['bos_id'],
                                header['eos_id'], header['dropout'], super_shape=shape)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f'{source}: bad model header: {err!r}') from None


def save_model(path, model: SuperTransformer, metadata=None):
    """Save ``model``'s weights as fp16 safetensors with a JSON header."""
    tensors = {}
    for name, tensor in model.state_dict().items():
        half = tensor.detach().to('cpu', torch.float16).contiguous()
        if not torch.isfinite(half).all():
            raise ValueError(f'{path}: parameter {name} does not fit in fp16 (inf/nan)')
        tensors[name] = half
    header = json.dumps(model_header(model, metadata))
    # Through bytes rather than save_file, which creates the file owner-only (0600).
    data = safetensors_bytes(tensors, metadata={HEADER_KEY: header})
    write_atomic(path, data)


def load_model(path, device='cpu', dtype=torch.float32) -> SuperTransformer:
    """Load a model saved by ``save_model``, in eval mode, with its largest shape active."""
    path = Path(path)
    header = read_header(path)
    with torch.device('meta'):  # weights come from the file; allocate once, below
        model = model_from_header(header, path)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    try:
        with safe_open(str(path), framework='pt') as f:
            found = set(f.keys())
            missing, unexpected = sorted(set(expected) - found), sorted(found - set(expected))
            if missing or unexpected:
                raise ValueError(f'{path}: tensors do not match its header: missing '
                                 f'{missing[:5]}, unexpected {unexpected[:5]}')
            state = {}
            for name, shape in expected.items():
                tensor = f.get_tensor(name)
                if tuple(tensor.shape) != shape:
                    raise ValueError(f'{path}: tensor {name} has shape {tuple(tensor.shape)}, '
                                     f'header implies {shape}')
                state[name] = tensor.to(dtype)
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(f'{path}: cannot read tensors: {err}') from None
    model = model.to_empty(device=device)
    model.load_state_dict(state)
    return model.to(dtype).eval()


def save_training_state(path, model: SuperTransformer, optimizer, scheduler, progress):
    """Everything needed to resume training exactly: fp32 weights, optimiser, RNGs, progress."""
    state = {
        'header': model_header(model),
        'model': model.state_dict(),
        'optimizer': optimizer.state_dict(),
        'scheduler': scheduler.state_dict() if scheduler is not None else None,
        'progress': progress,
        'rng': {
            'torch': torch.get_rng_state(),
            'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            'python': random.getstate(),
        },
    }
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path, model: SuperTransformer, optimizer=None, scheduler=None):
    """Restore a training state into ``model`` (and optimiser, scheduler); return its progress."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f'training checkpoint {path} does not exist')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:
        raise ValueError(f'{path}: not a readable training checkpoint: {err}') from None
    ours = model_header(model)
    for key in ('space', 'shape', 'vocab_size', 'pad_id', 'bos_id', 'eos_id'):
        theirs = state.get('header', {}).get(key)
        if theirs != ours[key]:
            raise ValueError(f'{path}: checkpoint {key}={theirs!r} does not match the model '
                             f'being trained ({key}={ours[key]!r})')
    model.load_state_dict(state['model'])
    if optimizer is not None:
        optimizer.load_state_dict(state['optimizer'])
    if scheduler is not None and state['scheduler'] is not None:
        scheduler.load_state_dict(state['scheduler'])
    torch.set_rng_state(state['rng']['torch'])
    if state['rng']['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['rng']['cuda'])
    random.setstate(_as_random_state(state['rng']['python']))
    return state['progress']


def _as_random_state(state):
    """``random.setstate`` wants nested tuples; serialisation may hand back lists."""
    version, internal, gauss = state
    return version, tuple(internal), gauss

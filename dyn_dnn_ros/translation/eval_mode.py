"""Dropout off for a block of inference, without walking a model that is already in eval mode."""

from contextlib import contextmanager


@contextmanager
def evaluating(model):
    """Put ``model`` in eval mode for the block when it is training, and back afterwards.

    ``nn.Module.eval()`` sets an attribute on every submodule (187 in the
    SuperTransformer): a noticeable share of a short translation with the
    smallest sub-network when a search did it twice. A model is put in eval
    mode through its root (``model.eval()``), so the root's flag decides;
    scanning every module's flag instead would itself walk the whole model.
    """
    was_training = model.training
    if was_training:
        model.eval()
    try:
        yield model
    finally:
        if was_training:
            model.train()

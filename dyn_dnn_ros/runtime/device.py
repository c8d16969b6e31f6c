"""Which device a worker runs on.

'cpu' needs nothing; only 'auto' and 'cuda' ask torch whether a GPU is there,
so a CPU worker on the CTranslate2 engine never imports torch.
"""


def resolve_device(name):
    """'cpu', 'cuda' or 'auto' -> a device torch can use; cuda without a GPU is an error."""
    if name == 'cpu':
        return name
    import torch
    if name == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if name == 'cuda' and not torch.cuda.is_available():
        raise ValueError('device: cuda was asked for but torch sees no CUDA device')
    return name

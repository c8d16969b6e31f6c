"""Turn image arrays into WeNet input tensors, the same way for training and serving.

Images become single-channel floats in [0, 1] (ink bright, as in the digits
data), are resized bilinearly to a square ``input_size`` and normalised with
the training split's mean and standard deviation.
"""

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dyn_dnn_ros.validation import require_finite, require_int, require_positive

# ITU-R BT.601 luma weights: how a camera's RGB becomes one grey channel.
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class PreprocessConfig:
    input_size: int = 32
    mean: float = 0.0
    std: float = 1.0
    invert: bool = False  # dark ink on light paper -> bright ink, as trained

    def __post_init__(self):
        require_int('preprocess.input_size', self.input_size, 4)
        require_finite('preprocess.mean', self.mean)
        require_positive('preprocess.std', self.std)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ValueError(f'preprocess: expected a mapping, got {data!r}')
        unknown = set(data) - {'input_size', 'mean', 'std', 'invert'}
        if unknown:
            raise ValueError(f'preprocess: unknown field(s) {sorted(unknown)}')
        return cls(**data)


def to_unit_gray(image):
    """Any 2-D grey or 3-D HxWxC (1, 3 or 4 channel) array -> float32 HxW in [0, 1]."""
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError(f'image: empty array of shape {image.shape}')
    if np.issubdtype(image.dtype, np.integer):
        image = image.astype(np.float32) / np.iinfo(image.dtype).max
    elif np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 1:
            raise ValueError('image: float pixels must be finite and within [0, 1], got '
                             f'range [{np.nanmin(image):g}, {np.nanmax(image):g}]')
    else:
        raise ValueError(f'image: unsupported pixel type {image.dtype}')
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        image = image[..., 0] if image.shape[2] == 1 else image[..., :3] @ np.array(LUMA)
    elif image.ndim != 2:
        raise ValueError(f'image: expected HxW or HxWx{{1,3,4}}, got shape {image.shape}')
    return image.astype(np.float32)


def resize(images, size):
    """``[N, H, W]`` unit-range floats -> ``[N, 1, size, size]`` bilinear tensor."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32)).unsqueeze(1)
    if x.shape[-2:] == (size, size):
        return x
    # Antialiasing only matters when shrinking; upsampling 8x8 digits is exact either way.
    return F.interpolate(x, size=(size, size), mode='bilinear', align_corners=False,
                         antialias=True).clamp_(0.0, 1.0)


def normalise(x, config):
    if config.invert:
        x = 1.0 - x
    return (x - config.mean) / config.std


def to_model_input(image, config):
    """One image array (e.g. from a camera message) -> a ``[1, 1, S, S]`` input tensor."""
    return normalise(resize(to_unit_gray(image)[None], config.input_size), config)

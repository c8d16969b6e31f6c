"""Image-classification data for WeNet: handwritten digits, or a folder of images.

``digits`` is scikit-learn's bundled copy of the UCI handwritten digits
(1,797 8x8 grey images, 10 classes); a folder ``root/<class>/*.png`` brings
your own. Both are split train/val/test, stratified and seeded, resized to the
model's input size and normalised with the training split's statistics.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split
import torch

from dyn_dnn_ros.perception.preprocess import PreprocessConfig, normalise, resize, to_unit_gray
from dyn_dnn_ros.validation import require_fraction, require_int

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff')
DIGITS_MAX = 16.0  # the digits' pixels are ink counts 0..16


@dataclass(frozen=True)
class DataConfig:
    source: str = 'digits'   # 'digits' or an image-folder path
    input_size: int = 32
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0

    def __post_init__(self):
        for name in ('val_fraction', 'test_fraction'):
            require_fraction(f'data.{name}', getattr(self, name))
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f'data: val_fraction + test_fraction must leave training data, '
                             f'got {self.val_fraction} + {self.test_fraction}')
        require_int('data.input_size', self.input_size, 4)


@dataclass
class Split:
    images: torch.Tensor   # [N, 1, S, S], normalised
    labels: torch.Tensor   # [N] int64

    def __len__(self):
        return len(self.labels)


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    classes: list
    preprocess: PreprocessConfig


def load_digits_images():
    """The scikit-learn digits as ``[N, 8, 8]`` floats in [0, 1], labels and class names."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    return (digits.images / DIGITS_MAX).astype(np.float32), digits.target, [str(c) for c in
                                                                            digits.target_names]


def load_image_folder(root):
    """Images under ``root/<class>/``: a list of unit grey arrays, labels, class names."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f'data.source: {root} is neither "digits" nor a directory')
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if len(classes) < 2:
        raise ValueError(f'{root}: expected one sub-folder per class, found {len(classes)}')
    from matplotlib import image as mpimg  # reads PNG itself, other formats through Pillow
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(f for f in (root / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f'{root / name}: no images ({", ".join(IMAGE_SUFFIXES)})')
        for path in files:
            try:
                pixels = mpimg.imread(path)
            except (OSError, ValueError, SyntaxError) as error:
                raise ValueError(f'{path}: cannot read image ({error})') from None
            try:
                images.append(to_unit_gray(pixels))
            except ValueError as error:
                raise ValueError(f'{path}: {error}') from None
            labels.append(label)
    return images, np.array(labels), classes


def split_indices(labels, config):
    """Stratified, seeded train/val/test index arrays."""
    indices = np.arange(len(labels))
    try:
        rest, test = train_test_split(indices, test_size=config.test_fraction,
                                      stratify=labels, random_state=config.seed)
        val_share = config.val_fraction / (1 - config.test_fraction)
        train, val = train_test_split(rest, test_size=val_share, stratify=labels[rest],
                                      random_state=config.seed)
    except ValueError as error:
        raise ValueError(f'data: cannot split {len(labels)} images by class ({error}); '
                         'every class needs a few images in each split') from None
    return train, val, test


def load_dataset(config):
    if config.source == 'digits':
        images, labels, classes = load_digits_images()
    else:
        images, labels, classes = load_image_folder(config.source)
    train, val, test = split_indices(labels, config)
    # Resize one image at a time: a folder's images may differ in size.
    resized = torch.cat([resize(image[None], config.input_size) for image in images])
    train_pixels = resized[torch.as_tensor(train)]
    preprocess = PreprocessConfig(config.input_size, float(train_pixels.mean()),
                                  float(train_pixels.std()))
    labels = torch.as_tensor(labels, dtype=torch.int64)

    def split(index):
        index = torch.as_tensor(index)
        return Split(normalise(resized[index], preprocess), labels[index])

    return Dataset(split(train), split(val), split(test), classes, preprocess)


def random_shift(images, max_shift, generator):
    """Shift each image by up to ``max_shift`` pixels, filling with the border value."""
    if max_shift == 0:
        return images
    padded = torch.nn.functional.pad(images, [max_shift] * 4, mode='replicate')
    size = images.shape[-1]
    offsets = torch.randint(0, 2 * max_shift + 1, (len(images), 2), generator=generator)
    return torch.stack([padded[i, :, dy:dy + size, dx:dx + size]
                        for i, (dy, dx) in enumerate(offsets.tolist())])

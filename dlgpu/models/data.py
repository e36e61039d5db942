"""The 8x8 handwritten digits bundled with scikit-learn (no download) as torch tensors.

1797 grey-level images of the digits 0-9, pixel values 0..16, 8x8. ``load_digits`` splits them
once with a fixed seed (stratified, so every class is in both parts), scales them and hands back
tensors shaped for the CNNs ([N, 1, 8, 8]) or for the MLPs and autoencoders ([N, 64]).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import Tensor

SCALINGS = ("unit", "standard", "none")


@dataclass(frozen=True)
class Digits:
    """A train/test split of the digits.

    Attributes:
        x_train: [N_train, 1, 8, 8] images (or [N_train, 64] when flattened).
        y_train: [N_train] int64 labels 0..9.
        x_test, y_test: the same for the held-out part.
        num_classes: 10.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int = 10

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Shape of one sample, without the batch dimension: (1, 8, 8) or (64,)."""
        return tuple(self.x_train.shape[1:])


@cache
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sk_load

    d = sk_load()
    return d.images.astype(np.float64), d.target.astype(np.int64)  # N,8,8; N


def load_digits(
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    flatten: bool = False,
    scaling: str = "unit",
    upsample: int = 1,
    dtype: torch.dtype = torch.float32,
) -> Digits:
    """Load scikit-learn's digits, split them (stratified, seeded) and scale them.

    Args:
        test_fraction: share of the 1797 samples held out, in (0, 1).
        seed: seed of the split; the same seed always gives the same split.
        flatten: [N, 64] instead of [N, 1, 8, 8].
        scaling: "unit" divides by 16 (pixels in [0, 1], the autoencoders' Bernoulli range);
            "standard" subtracts the train mean and divides by the train standard deviation per pixel
            (constant pixels keep a divisor of 1); "none" keeps 0..16.
        upsample: integer factor of nearest-neighbour upsampling (4 gives LeNet-5's 32x32 input);
            images only, so it cannot be combined with flatten.
        dtype: floating dtype of the images.
    Returns:
        A Digits with the train and test tensors (labels int64).
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {', '.join(SCALINGS)}; got {scaling!r}")
    if isinstance(upsample, bool) or not isinstance(upsample, int) or upsample < 1:
        raise ValueError(f"upsample must be an int >= 1, got {upsample!r}")
    if flatten and upsample != 1:
        raise ValueError("upsample must be 1 when flatten=True (upsampling is for images)")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype}")
    from sklearn.model_selection import train_test_split

    images, labels = _raw()
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    if scaling == "unit":
        x_tr, x_te = x_tr / 16.0, x_te / 16.0
    elif scaling == "standard":
        mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)  # 8,8 from the training part only
        std = np.where(std > 0, std, 1.0)
        x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    if upsample > 1:
        x_tr = x_tr.repeat(upsample, axis=1).repeat(upsample, axis=2)
        x_te = x_te.repeat(upsample, axis=1).repeat(upsample, axis=2)
    shape = (-1, 64) if flatten else (-1, 1, 8 * upsample, 8 * upsample)

    def t(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a).reshape(shape)).to(dtype)

    return Digits(t(x_tr), torch.from_numpy(y_tr), t(x_te), torch.from_numpy(y_te))

"""What the MNIST and CIFAR-10 data sets share: the split check and the Dataset that turns
uint8 images ``[N, C, H, W]`` into float32 in [0, 1] (pixel / 255, as torchvision's
ToTensor), optionally standardised per channel."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence

import torch
from torch.utils.data import Dataset


def check_split(name: str, split: str, valid: Collection[str]) -> str:
    """``split`` when it is one of ``valid``, else a ValueError naming data set ``name``."""
    if split not in valid:
        raise ValueError(f"unknown {name} split {split!r}; valid: {', '.join(valid)}")
    return split


class ImageDataset(Dataset):
    """``(image, label)`` pairs: image float32 ``[C, H, W]``, ``(pixel / 255 - mean) / std``
    when ``mean``/``std`` are given, else pixel / 255; label int64.

    Subclasses set ``channels`` and ``_read(root, split, download)``, which returns the
    split's images as uint8 ``[N, C, H, W]`` and its labels as int64 ``[N]``.
    """

    channels: int

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        train: bool = True,
        download: bool = False,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
    ):
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        # [C, 1, 1] broadcasts over one image and over a batch; a wrong count fails here.
        self.mean = None if mean is None else self._per_channel(mean)
        self.std = None if std is None else self._per_channel(std)
        if self.std is not None and not bool((self.std > 0).all()):
            raise ValueError(f"std must be > 0, got {std}")
        self.split = "train" if train else "test"
        self.images, self.targets = self._read(root, self.split, download)

    def _per_channel(self, value: float | Sequence[float]) -> torch.Tensor:
        return torch.tensor(value, dtype=torch.float32).view(self.channels, 1, 1)

    @staticmethod
    def _read(
        root: str | os.PathLike | None, split: str, download: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.targets)

    def _convert(self, raw: torch.Tensor) -> torch.Tensor:
        x = raw.to(torch.float32).div_(255.0)  # a fresh tensor, so in place is safe
        if self.mean is not None:
            x = x.sub_(self.mean).div_(self.std)
        return x

    def __getitem__(self, index: int):
        return self._convert(self.images[index]), self.targets[index]

    def __getitems__(self, indices: list[int]):
        """Batched fetch (used by DataLoader): one conversion for the whole batch."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        x = self._convert(self.images[idx])
        return list(zip(x.unbind(0), self.targets[idx].unbind(0)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split}, n={len(self)})"

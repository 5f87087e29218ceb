"""CIFAR-10 from the standard ``cifar-10-batches-py`` folder; torchvision only to download.

The folder (Krizhevsky's "python version", which ``torchvision.datasets.CIFAR10`` also
reads) holds pickled dicts ``data_batch_1`` … ``data_batch_5`` (training, 10000 images
each) and ``test_batch`` (10000): ``data`` is a uint8 array ``[N, 3072]``, each row the
1024 red, then green, then blue values of a 32×32 image in row-major order; ``labels`` a
list of N ints 0–9. ``batches.meta`` names the classes.

The folder is looked for as ``root`` itself, ``root/cifar-10-batches-py`` (torchvision's
layout) and ``root/cifar10/cifar-10-batches-py``.

The batches are pickles, and unpickling can run code: they are read with an unpickler that
only admits numpy arrays and plain containers, so a tampered file fails instead of running.

Normalisation: ``CIFAR10`` returns float32 ``[3, 32, 32]`` in [0, 1] (pixel / 255, as
torchvision's ToTensor, which is what the paper's code used, with no mean/std); optional
per-channel ``mean``/``std`` standardise further.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ._images import ImageDataset, check_split
from .paths import resolve_data_dir, torchvision_download

CIFAR10_DIRNAME = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_SHAPE = (3, 32, 32)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

_SPLITS = {"train": CIFAR10_TRAIN_BATCHES, "test": (CIFAR10_TEST_BATCH,)}


class _SafeUnpickler(pickle.Unpickler):
    """Admits only what CIFAR-10's batches contain: numpy arrays, dtypes and builtins data."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol-2 pickles store bytes
        ("builtins", "bytes"),
        ("__builtin__", "bytes"),  # the Python 2 name, mapped by fix_imports
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a CIFAR-10 batch holds only numpy arrays and "
            f"plain data"
        )


def _unpickle(path: Path) -> dict:
    raw = path.read_bytes()
    try:
        # latin1 decodes the Python 2 strings of the original files (as torchvision does).
        obj = _SafeUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: a CIFAR-10 batch is a pickled dict, got {type(obj).__name__}")
    # Keys are str (latin1 decoding of Python 2 files) or bytes (files written by Python 3).
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_cifar10_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as ``(images uint8 [N, 3, 32, 32], labels int64 [N])``.

    Raises ValueError when the file is not a CIFAR-10 batch or its images are not rows of
    3072 = 3×32×32 bytes.
    """
    path = Path(path)
    batch = _unpickle(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise ValueError(
                f"{path}: a CIFAR-10 batch needs the keys 'data' and 'labels', found "
                f"{sorted(batch)}"
            )
    data = np.asarray(batch["data"])
    expected = int(np.prod(CIFAR10_SHAPE))
    if data.ndim == 4 and data.shape[1:] == CIFAR10_SHAPE:
        data = data.reshape(len(data), expected)
    if data.ndim != 2 or data.shape[1] != expected:
        raise ValueError(
            f"{path}: CIFAR-10 images must be rows of {expected} = 3x32x32 bytes (data of "
            f"shape [N, {expected}]), got data of shape {tuple(data.shape)}; is this another "
            f"data set (CIFAR-100, a resized copy)?"
        )
    if data.dtype != np.uint8:
        raise ValueError(f"{path}: CIFAR-10 pixels must be uint8, got {data.dtype}")
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if labels.shape != (len(data),):
        raise ValueError(f"{path}: {len(data)} images but labels of shape {tuple(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels must be 0-9, found {labels.min()}..{labels.max()}")
    return data.reshape(len(data), *CIFAR10_SHAPE), labels


def _candidate_dirs(root: Path) -> list[Path]:
    return [root, root / CIFAR10_DIRNAME, root / "cifar10" / CIFAR10_DIRNAME]


def find_cifar10_dir(root: str | os.PathLike | None = None, split: str = "train") -> Path:
    """The ``cifar-10-batches-py`` folder under ``root`` holding ``split``'s batch files.

    Raises FileNotFoundError saying which files are expected where and how to get them.
    """
    split = check_split("CIFAR-10", split, _SPLITS)
    root = resolve_data_dir(root)
    for folder in _candidate_dirs(root):
        if all((folder / name).is_file() for name in _SPLITS[split]):
            return folder
    where = ", ".join(str(d) for d in _candidate_dirs(root))
    state = "does not exist" if not root.exists() else "lacks them"
    raise FileNotFoundError(
        f"CIFAR-10 {split} files not found: the data directory {root} {state}. Expected "
        f"{', '.join(_SPLITS[split])} (the python version, folder {CIFAR10_DIRNAME}) in one "
        f"of: {where}. Get them with download=True (the CLI's --download; needs torchvision "
        f"and internet), or download {CIFAR10_URL} and unpack it into {root}; set the "
        f"directory with data_dir= / --data-dir or the NESTEROVNODE_DATA environment variable."
    )


def download_cifar10(root: str | os.PathLike | None = None) -> Path:
    """Download CIFAR-10 into ``root/cifar-10-batches-py`` with torchvision."""
    root = resolve_data_dir(root)
    torchvision_download(
        "CIFAR-10",
        root,
        lambda datasets, where: datasets.CIFAR10(where, train=True, download=True),
        by_hand=f"download {CIFAR10_URL} and unpack it into {root}.",
        offline=f"copy the unpacked {CIFAR10_DIRNAME} folder into {root}.",
    )
    return root / CIFAR10_DIRNAME


def read_cifar10(
    root: str | os.PathLike | None = None, split: str = "train", download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 ``split``: images uint8 ``[N, 3, 32, 32]`` and labels int64 ``[N]``."""
    split = check_split("CIFAR-10", split, _SPLITS)
    try:
        folder = find_cifar10_dir(root, split)
    except FileNotFoundError:
        if not download:
            raise
        download_cifar10(root)
        folder = find_cifar10_dir(root, split)
    parts = [read_cifar10_batch(folder / name) for name in _SPLITS[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)


class CIFAR10(ImageDataset):
    """CIFAR-10 as ``(image, label)``: image float32 ``[3, 32, 32]`` in [0, 1] (pixel / 255),
    label int64 0–9.

    Args:
        root: data directory (None: ``$NESTEROVNODE_DATA`` or ``./data``).
        train: the five training batches (50000 images), else the test batch (10000).
        download: fetch the data with torchvision when missing.
        mean, std: optional per-channel standardisation after scaling to [0, 1]; off by
            default, as in the paper's code.
    """

    channels = 3

    @staticmethod
    def _read(root, split, download):
        return read_cifar10(root, split, download=download)


def write_cifar10_batch(
    path: str | os.PathLike, images: np.ndarray, labels: Sequence[int], batch_label: str = ""
) -> Path:
    """Write one batch in the ``cifar-10-batches-py`` format: a pickled dict with bytes keys
    ``data`` (uint8 ``[N, 3072]``), ``labels``, ``batch_label`` and ``filenames``.

    ``images`` may be ``[N, 3, 32, 32]`` or ``[N, 3072]``; anything else is an error.
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1:] == CIFAR10_SHAPE:
        images = images.reshape(len(images), -1)
    if images.ndim != 2 or images.shape[1] != int(np.prod(CIFAR10_SHAPE)):
        raise ValueError(
            f"CIFAR-10 images must be [N, 3, 32, 32] or [N, 3072], got {tuple(images.shape)}"
        )
    batch = {
        b"batch_label": batch_label.encode(),
        b"labels": [int(v) for v in labels],
        b"data": images.astype(np.uint8),
        b"filenames": [f"synthetic_{i:05d}.png".encode() for i in range(len(images))],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(batch, fh, protocol=2)
    return path


def write_synthetic_cifar10(
    root: str | os.PathLike, n_train: int = 50, n_test: int = 20, seed: int = 0
) -> Path:
    """Write a small synthetic CIFAR-10 in the exact ``cifar-10-batches-py`` format under
    ``root`` (``n_train`` images spread over the five training batches, ``n_test`` in the
    test batch, plus ``batches.meta``); returns the batches folder.

    Each image is noise plus a class-dependent colour, so a model can learn something.
    """
    folder = Path(root) / CIFAR10_DIRNAME
    rng = np.random.default_rng(seed)
    palette = rng.integers(40, 215, size=(10, 3))

    def make(n: int):
        labels = rng.integers(0, 10, size=n)
        noise = rng.integers(-40, 41, size=(n, *CIFAR10_SHAPE))
        images = np.clip(palette[labels][:, :, None, None] + noise, 0, 255).astype(np.uint8)
        return images, labels

    sizes = [n_train // 5 + (1 if i < n_train % 5 else 0) for i in range(5)]
    for i, (name, size) in enumerate(zip(CIFAR10_TRAIN_BATCHES, sizes)):
        images, labels = make(size)
        write_cifar10_batch(folder / name, images, labels, f"training batch {i + 1} of 5")
    images, labels = make(n_test)
    write_cifar10_batch(folder / CIFAR10_TEST_BATCH, images, labels, "testing batch 1 of 1")
    meta = {
        b"label_names": [c.encode() for c in CIFAR10_CLASSES],
        b"num_cases_per_batch": sizes[0],
        b"num_vis": int(np.prod(CIFAR10_SHAPE)),
    }
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump(meta, fh, protocol=2)
    return folder

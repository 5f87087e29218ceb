"""MNIST read straight from its four IDX files; torchvision is needed only to download.

The IDX format (LeCun et al.): a 4-byte big-endian magic number ``0x00 0x00 TT NN``, where
TT is the element type (0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64) and NN the number of dimensions; then NN big-endian uint32
sizes; then the data, row-major. MNIST's images are ``0x00000803`` (uint8, N×28×28) and its
labels ``0x00000801`` (uint8, N), 60000 for training and 10000 for testing.

Files are looked for, plain or gzip-compressed (``.gz``), in ``root``, ``root/MNIST/raw``
(where ``torchvision.datasets.MNIST(root, download=True)`` puts them), ``root/mnist`` and
``root/mnist/MNIST/raw``.

Normalisation: ``MNIST`` returns images as float32 ``[1, 28, 28]`` scaled to [0, 1]
(pixel / 255), exactly what torchvision's ``ToTensor`` gives and what the paper's code
(the ANODE data loader: ``Resize(28)`` + ``ToTensor``, no mean/std) trained on. A
``mean``/``std`` pair may be given to standardise further; the default does not.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from ._images import ImageDataset, check_split
from .paths import resolve_data_dir, torchvision_download

#: The four files, by split: (images, labels), without the optional ``.gz``.
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_ALL_FILES = tuple(name for pair in MNIST_FILES.values() for name in pair)
MNIST_SHAPE = (28, 28)
#: Where the files can be downloaded (the mirror torchvision uses, then the original site).
MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


# -- IDX files ---------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip (detected by content, not name)."""
    with open(path, "rb") as fh:
        head = fh.read(2)
        fh.seek(0)
        if head == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=fh) as gz:
                try:
                    return gz.read()
                except (OSError, EOFError) as exc:
                    raise ValueError(f"{path}: not a valid gzip file ({exc})") from exc
        return fh.read()


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip) into a numpy array of its declared type and shape.

    Raises ValueError when the magic number, element type or size does not match the format.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes is too short for an IDX header")
    zero, type_code, ndim = data[:2], data[2], data[3]
    magic = int.from_bytes(data[:4], "big")
    if zero != b"\x00\x00" or type_code not in _IDX_TYPES or ndim == 0:
        raise ValueError(
            f"{path}: not an IDX file (magic number 0x{magic:08x}; IDX files start with "
            f"0x0000TTNN, TT in {{08, 09, 0B, 0C, 0D, 0E}}, NN >= 1 dimensions)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: header declares {ndim} dimensions but the file ends early")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_TYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: header says shape {dims} of {dtype.name} ({expected} bytes of data) but "
            f"the file holds {len(data) - header}; the file is truncated or corrupt"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzip when ``compress`` or the name ends in ``.gz``)."""
    path = Path(path)
    array = np.asarray(array)
    codes = {v.newbyteorder("=").str.lstrip("<>|="): k for k, v in _IDX_TYPES.items()}
    key = array.dtype.newbyteorder("=").str.lstrip("<>|=")
    if key not in codes:
        raise ValueError(
            f"IDX cannot store dtype {array.dtype}; use one of uint8, int8, "
            f"int16, int32, float32, float64"
        )
    code = codes[key]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(_IDX_TYPES[code], copy=False).tobytes()
    compress = path.suffix == ".gz" if compress is None else compress
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)
    return path


# -- locating and loading MNIST ----------------------------------------------------------


def _candidate_dirs(root: Path) -> list[Path]:
    return [root, root / "MNIST" / "raw", root / "mnist", root / "mnist" / "MNIST" / "raw"]


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_mnist_files(
    root: str | os.PathLike | None = None, split: str = "train"
) -> tuple[Path, Path]:
    """``(images, labels)`` paths of ``split`` under ``root`` (see the module docstring).

    Raises FileNotFoundError saying which files are expected where and how to get them.
    """
    split = check_split("MNIST", split, MNIST_FILES)
    root = resolve_data_dir(root)
    names = MNIST_FILES[split]
    for folder in _candidate_dirs(root):
        found = [_find_file(folder, name) for name in names]
        if all(found):
            return found[0], found[1]
    raise FileNotFoundError(_missing_message(root, split))


def _missing_message(root: Path, split: str) -> str:
    where = ", ".join(str(d) for d in _candidate_dirs(root))
    files = ", ".join(f"{n}[.gz]" for n in _ALL_FILES)
    state = "does not exist" if not root.exists() else "lacks them"
    return (
        f"MNIST {split} files not found: the data directory {root} {state}. Expected the four "
        f"IDX files {files} (gzip or not) in one of: {where}. Get them with download=True "
        f"(the CLI's --download; needs torchvision and internet) or download them from "
        f"{MNIST_URLS[0]} into {root}; set the directory with data_dir= / --data-dir or the "
        f"NESTEROVNODE_DATA environment variable."
    )


def download_mnist(root: str | os.PathLike | None = None) -> Path:
    """Download MNIST into ``root/MNIST/raw`` with torchvision; a clear error without it."""
    root = resolve_data_dir(root)

    def fetch(datasets, where):
        for train in (True, False):
            datasets.MNIST(where, train=train, download=True)

    torchvision_download(
        "MNIST",
        root,
        fetch,
        by_hand=f"download the four MNIST files from {MNIST_URLS[0]} into {root} by hand.",
        offline=f"copy the four IDX files ({', '.join(_ALL_FILES)}, gzip or not) into {root}.",
    )
    return root / "MNIST" / "raw"


def read_mnist(
    root: str | os.PathLike | None = None, split: str = "train", download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``split`` as uint8 tensors: images ``[N, 28, 28]`` and labels ``[N]`` (0–9).

    With ``download=True`` missing files are fetched with torchvision first. The headers
    are checked (magic numbers, 28×28 images, as many labels as images, labels 0–9).
    """
    split = check_split("MNIST", split, MNIST_FILES)
    try:
        img_path, lbl_path = find_mnist_files(root, split)
    except FileNotFoundError:
        if not download:
            raise
        download_mnist(root)
        img_path, lbl_path = find_mnist_files(root, split)
    images = read_idx(img_path)
    labels = read_idx(lbl_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != MNIST_SHAPE:
        raise ValueError(
            f"{img_path}: MNIST images must be uint8 of shape [N, 28, 28] (magic 0x00000803), "
            f"got {images.dtype} {tuple(images.shape)}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{lbl_path}: MNIST labels must be uint8 of shape [N] (magic 0x00000801), got "
            f"{labels.dtype} {tuple(labels.shape)}"
        )
    if len(labels) != len(images):
        raise ValueError(
            f"{img_path} holds {len(images)} images but {lbl_path} holds {len(labels)} labels"
        )
    if len(labels) and int(labels.max()) > 9:
        raise ValueError(f"{lbl_path}: labels must be 0-9, found {int(labels.max())}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())


class MNIST(ImageDataset):
    """MNIST as ``(image, label)``: image float32 ``[1, 28, 28]`` in [0, 1] (pixel / 255,
    as torchvision's ToTensor), label int64 0–9.

    Args:
        root: data directory (None: ``$NESTEROVNODE_DATA`` or ``./data``).
        train: the 60000-image training split, else the 10000-image test split.
        download: fetch missing files with torchvision.
        mean, std: optional standardisation ``(x - mean) / std`` after scaling to [0, 1]
            (e.g. 0.1307, 0.3081); off by default, as in the paper's code.
    """

    channels = 1

    @staticmethod
    def _read(root, split, download):
        images, labels = read_mnist(root, split, download=download)
        # A channel axis (a view, no copy) so that images index as [N, C, H, W] like CIFAR10.
        return images.unsqueeze(1), labels.long()


def write_synthetic_mnist(
    root: str | os.PathLike,
    n_train: int = 64,
    n_test: int = 32,
    seed: int = 0,
    compress: bool = True,
) -> Path:
    """Write small random MNIST-format IDX files into ``root`` (for tests and dry runs).

    Each image is noise plus a bright class-dependent bar, so a model can learn something.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    suffix = ".gz" if compress else ""
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 64, size=(n, *MNIST_SHAPE)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * int(label) : 4 + 2 * int(label), 4:24] = 255
        img_name, lbl_name = MNIST_FILES[split]
        write_idx(root / f"{img_name}{suffix}", images)
        write_idx(root / f"{lbl_name}{suffix}", labels)
    return root

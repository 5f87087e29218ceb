"""Data sets: point cloud (embedded), MNIST (IDX files), CIFAR-10 (python batches)."""

from .cifar10 import (
    CIFAR10,
    find_cifar10_dir,
    read_cifar10,
    read_cifar10_batch,
    write_cifar10_batch,
    write_synthetic_cifar10,
)
from .mnist import MNIST, find_mnist_files, read_idx, read_mnist, write_idx, write_synthetic_mnist
from .paths import DataUnavailableError, resolve_data_dir
from .pointcloud import point_cloud

__all__ = [
    "CIFAR10",
    "MNIST",
    "DataUnavailableError",
    "find_cifar10_dir",
    "find_mnist_files",
    "point_cloud",
    "read_cifar10",
    "read_cifar10_batch",
    "read_idx",
    "read_mnist",
    "resolve_data_dir",
    "write_cifar10_batch",
    "write_idx",
    "write_synthetic_cifar10",
    "write_synthetic_mnist",
]

"""Data sets: point cloud (embedded), Silverbox, Walker2D, MNIST, CIFAR-10."""

from .pointcloud import point_cloud

__all__ = ["point_cloud"]

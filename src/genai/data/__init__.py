"""Datasets: MNIST-style images (and text corpora)."""

from genai.data.images import (
    DatasetError,
    ImageBatches,
    ImageDataset,
    load_images,
    read_idx,
    split_dataset,
    write_idx,
)

__all__ = [
    "DatasetError",
    "ImageBatches",
    "ImageDataset",
    "load_images",
    "read_idx",
    "split_dataset",
    "write_idx",
]

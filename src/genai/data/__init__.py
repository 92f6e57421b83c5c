"""Datasets: images from any source (named datasets, folders, arrays) and text corpora."""

from genai.data.batches import ImageBatches
from genai.data.dataset import DatasetError, ImageDataset, split_dataset
from genai.data.idx import read_idx, write_idx
from genai.data.images import load_images
from genai.data.named import NAMED
from genai.data.text import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    TokenBatches,
    build_tokenizer,
    load_text,
    tokenizer_from_dict,
)

__all__ = [
    "NAMED",
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "TokenBatches",
    "build_tokenizer",
    "load_text",
    "tokenizer_from_dict",
    "DatasetError",
    "ImageBatches",
    "ImageDataset",
    "load_images",
    "read_idx",
    "split_dataset",
    "write_idx",
]

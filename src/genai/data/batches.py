"""The training batches of an image dataset: the batch of step s is a pure function of
(seed, s), so that a resumed run sees exactly the batches it would have seen."""

from __future__ import annotations

import torch

from genai.data.dataset import ImageDataset
from genai.data.pixels import to_float


class ImageBatches:
    """Shuffled batches of images, a pure function of ``(seed, step)``.

    The data lives on ``device`` as uint8; each batch is indexed from a per-epoch
    ``torch.randperm`` seeded by ``(seed, epoch)`` and converted to float in ``[0, 1]`` on the
    fly. With ``binarize=True`` each batch is dynamically binarized (pixel ~ Bernoulli(intensity)),
    again seeded by the step, so an interrupted run resumes on exactly the same batches.

    Args:
        data: the images and labels.
        batch_size: examples per batch; the last partial batch of an epoch is dropped.
        seed: seed of the data order.
        device: where the data and batches live.
        binarize: dynamic binarization.
    """

    def __init__(
        self,
        data: ImageDataset,
        batch_size: int,
        seed: int = 0,
        device: torch.device | str = "cpu",
        binarize: bool = False,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        if batch_size > len(data):
            raise ValueError(
                f"batch_size {batch_size} is larger than the dataset ({len(data)} images); "
                "set a smaller batch_size (--batch-size)"
            )
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device) if data.labels is not None else None
        self.batch_size = batch_size
        self.seed = seed
        self.binarize = binarize
        self._epoch = -1
        self._perm: torch.Tensor | None = None

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.images.shape[0] // self.batch_size

    def _generator(self, *key: int) -> torch.Generator:
        seed = self.seed
        for k in key:
            seed = (seed * 1_000_003 + k) % (2**63)
        return torch.Generator(self.device).manual_seed(seed)

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch of global ``step``: images ``(B, C, H, W)`` float in [0, 1], labels ``(B,)``.

        Labels are ``None`` for unlabeled data.
        """
        epoch, i = divmod(step, len(self))
        if epoch != self._epoch:
            self._perm = torch.randperm(
                self.images.shape[0], generator=self._generator(0, epoch), device=self.device
            )
            self._epoch = epoch
        idx = self._perm[i * self.batch_size : (i + 1) * self.batch_size]
        x = to_float(self.images[idx])  # (B, C, H, W)
        if self.binarize:
            x = torch.bernoulli(x, generator=self._generator(1, step))
        return x, self.labels[idx] if self.labels is not None else None

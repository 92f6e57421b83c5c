"""The evaluation protocol of an image model (``genai eval``): one function for every kind.

A kind's ``evaluate`` adds its own likelihood (the VAE's ELBO and IWAE NLL, diffusion's
bits/dim) to :func:`evaluate_images`: the sample metrics in a classifier's feature space
(FID, IS, class coverage, label accuracy, and the real-data floor of each), then the standard
Inception FID where its weights are present.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from genai.core.fields import check_fields
from genai.data.dataset import ImageDataset, check_shape
from genai.metrics import (
    INCEPTION_FEATURE_SPACE,
    draw_samples,
    evaluate_samples,
    inception_fid,
    inception_fid_unavailable,
    metric_classifier,
    real_data_floor,
)

log = logging.getLogger(__name__)


@dataclass
class EvalOptions:
    """How ``genai eval`` measures a run (each field is a flag: ``--classifier-steps``).

    Attributes:
        n: evaluate on a seeded subset of ``n`` test images (0: all).
        k: importance samples of the IWAE NLL (VAE).
        batch_size: images per evaluation batch.
        samples: generated images for the classifier FID.
        classifier_steps: training steps of the metric classifier.
        seed: seeds the samples and the subset.
        inception: the Inception FID too, when its weights are present (slow on a CPU;
            ``--no-inception`` skips it).
        download: allow downloading the Inception-v3 FID weights.
        progress: show progress bars.
    """

    n: int = 0
    k: int = 1000
    batch_size: int = 100
    samples: int = 5000
    classifier_steps: int = 800
    seed: int = 0
    inception: bool = True
    download: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        for name, low in (("n", 0), ("k", 1), ("batch_size", 1), ("samples", 2)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.classifier_steps < 1:
            raise ValueError(f"classifier_steps must be >= 1, got {self.classifier_steps}")


def check_classes(model: nn.Module, data: ImageDataset) -> None:
    """Refuse data whose classes are not the ones a conditional model draws."""
    k = getattr(model.config, "num_classes", None)
    if k is not None and data.labels is not None and k != data.num_classes:
        raise ValueError(
            f"the model draws {k} classes but the data ({data.name}) has {data.num_classes}; "
            "evaluate it on the data it was trained on"
        )
    names = getattr(model.config, "class_names", None)
    if names and data.class_names and tuple(names) != tuple(data.class_names):
        raise ValueError(
            f"the model's classes ({', '.join(names)}) are not the data's "
            f"({', '.join(data.class_names)}); evaluate it on the data it was trained on"
        )


def subset(data: ImageDataset, n: int) -> ImageDataset:
    """A seeded subset of ``n`` images (all of them for 0)."""
    if not n:
        return data
    return data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:n])


def classifier_metrics(
    model: nn.Module, train: ImageDataset, test: ImageDataset, options: EvalOptions
) -> dict:
    """FID, IS, coverage and label accuracy in the feature space of a classifier of ``train``."""
    if train.labels is None or train.labels.unique().numel() < 2:
        what = "unlabeled" if train.labels is None else "labeled with one class only"
        return {
            "note": f"{train.name} is {what}: no metric classifier can be trained on it, so "
            "there is no classifier FID, IS, class coverage or label accuracy"
        }
    device = next(model.parameters()).device
    steps, n, seed = options.classifier_steps, options.samples, options.seed
    classifier = metric_classifier(train, steps=steps, device=device)
    return {
        "feature_space": f"a {steps}-step classifier trained on {train.name} train "
        f"({len(train)} images): compare runs on this dataset only",
        **evaluate_samples(model, classifier, test.images, n=n, seed=seed),
        **real_data_floor(classifier, train, test, n=n, seed=seed),
    }


def inception_metrics(model: nn.Module, test: ImageDataset, options: EvalOptions) -> dict:
    """The standard Inception FID, or why it was not computed."""
    missing = inception_fid_unavailable(options.download)
    if not options.inception or missing:
        why = "skipped (--no-inception)" if not options.inception else f"not computed: {missing}"
        return {"inception_fid": None, "inception_fid_note": why}
    fake = draw_samples(model, options.samples, options.seed, options.batch_size)
    log.info(
        "Inception FID: %d samples against %d test images (about 11 GFLOP each: slow on a "
        "CPU; --no-inception skips it)",
        len(fake),
        len(test),
    )
    device = next(model.parameters()).device
    try:
        fid = inception_fid(test.images, fake, options.download, options.batch_size, device)
    except (OSError, ValueError) as e:  # no network, a bad weights file: keep the rest
        return {
            "inception_fid": None,
            "inception_fid_note": f"not computed: {' '.join(str(e).split())}",
        }
    space = f"{INCEPTION_FEATURE_SPACE}; here {len(fake)} samples against {len(test)} test images"
    return {"inception_fid": fid, "inception_fid_feature_space": space}


def held_out(model: nn.Module, test: ImageDataset, options: EvalOptions) -> ImageDataset:
    """The test images of an evaluation: checked against the model, subset to ``options.n``."""
    check_shape(model.config.image_shape, test)
    return subset(test, options.n)


def evaluate_images(
    model: nn.Module, train: ImageDataset, test: ImageDataset, options: EvalOptions
) -> dict:
    """The sample metrics of an image model against ``test`` (see :func:`held_out`):
    classifier metrics in a classifier of ``train``'s feature space, then the Inception FID."""
    check_shape(model.config.image_shape, train)
    check_classes(model, train)
    return {
        **classifier_metrics(model, train, test, options),
        **inception_metrics(model, test, options),
    }


def evaluate_sampler(
    model: nn.Module,
    train: ImageDataset,
    test: ImageDataset,
    options: EvalOptions,
    train_config: dict | None = None,
) -> dict:
    """``genai eval`` of a model that only samples (a GAN): :func:`evaluate_images`."""
    return evaluate_images(model, train, held_out(model, test, options), options)

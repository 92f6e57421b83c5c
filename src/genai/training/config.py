"""What every training loop shares: :class:`TrainConfig`, which each loop's config extends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from genai.core.device import PRECISIONS
from genai.core.fields import Config, check_fields, field
from genai.training.schedule import SCHEDULES


@dataclass
class TrainConfig(Config):
    """What every training loop shares. Each loop's config extends it.

    Training length, the same in every loop: ``max_steps`` optimizer steps if set, else
    ``epochs`` passes over the training data if set, else the loop's ``default_max_steps``
    (a number of steps, so that the default run time does not grow with the data). Cadences
    are in optimizer steps; 0 means "once per epoch" for eval and samples and "only at the
    end" for checkpoints.

    Attributes:
        out_dir: the run directory.
        epochs: passes over the training data (used when ``max_steps`` is None).
        max_steps: optimizer steps; wins over ``epochs``.
        batch_size: examples per optimizer step (per process under torchrun); the image loops
            lower a default larger than the data to the number of images.
        lr: peak learning rate.
        betas: Adam's moment decays (beta1, beta2).
        weight_decay: decoupled weight decay (AdamW) of weight matrices and convolution
            kernels; biases, norms and embeddings of dimension < 2 are never decayed.
        warmup_steps: linear warmup of the learning rate from 0.
        lr_schedule: ``"constant"``, ``"cosine"`` (decay to ``min_lr_ratio * lr``) or ``"wsd"``
            (warmup-stable-decay: constant, then a linear decay to ``min_lr_ratio * lr`` over
            the last ``decay_fraction`` of the steps).
        min_lr_ratio: the final learning rate of ``"cosine"`` and ``"wsd"``, as a fraction of
            ``lr``.
        decay_fraction: the fraction of the steps over which ``"wsd"`` decays.
        grad_clip: clip the global gradient norm to this (0: off).
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA only) or ``"auto"``: bf16 where
            the device computes it natively (a CUDA device that supports it, a CPU with
            AVX512-BF16 or AMX), else fp32 (:func:`genai.core.device.resolve_precision`).
            Autocast over fp32 weights.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda:1"``, ``"mps"``.
        seed: seeds the data order and the training RNGs (seed before building the model
            too: the CLI does).
        log_every: steps between ``metrics.jsonl`` train lines (means over the interval).
        eval_every: steps between evaluations (0: once per epoch).
        sample_every: steps between sample files (0: once per epoch).
        checkpoint_every: steps between checkpoints (0: only at the end).
        compile: ``torch.compile`` the model's forward pass.
        progress: show a progress bar.
        resume: continue the run in ``out_dir``.
        overwrite: replace the run in ``out_dir`` (moved aside until the first checkpoint).
        strategy: data parallelism under ``torchrun``: ``"ddp"`` (every rank holds the whole
            model; gradients averaged by one all-reduce at the optimizer step, no module
            wrapping) or ``"fsdp"`` (FSDP2 ``fully_shard``: weights, gradients and optimizer
            moments sharded over the ranks; the GPT only). One process: the same either way.
        loggers: more loggers of the metrics besides ``metrics.jsonl``: ``"tensorboard"``
            (``out_dir/tensorboard``) and/or ``"wandb"`` (``out_dir/wandb``).
    """

    out_dir: str = field("runs/run", nonempty=True)
    epochs: int | None = field(None, gt=0)
    max_steps: int | None = field(None, gt=0)
    batch_size: int = field(128, gt=0)
    lr: float = field(1e-3, gt=0)
    betas: tuple[float, float] = field((0.9, 0.999), ge=0, lt=1, rule="two numbers in [0, 1)")
    weight_decay: float = field(0.0, ge=0)
    warmup_steps: int = field(0, ge=0)
    lr_schedule: str = field("constant", choices=SCHEDULES)
    min_lr_ratio: float = field(0.1, ge=0, le=1)
    decay_fraction: float = field(0.2, gt=0, le=1)
    grad_clip: float = field(0.0, ge=0)
    precision: str = field("fp32", choices=PRECISIONS)
    device: str = "auto"
    seed: int = 0
    log_every: int = field(50, gt=0)
    eval_every: int = field(0, ge=0)
    sample_every: int = field(0, ge=0)
    checkpoint_every: int = field(1000, ge=0)
    compile: bool = False
    progress: bool = True
    resume: bool = False
    overwrite: bool = False
    strategy: str = field("ddp", choices=("ddp", "fsdp"))
    loggers: tuple[str, ...] = ()

    # Settings that fix the data order: a resumed run must keep them (see fit).
    fixed_on_resume: ClassVar[tuple[str, ...]] = ("batch_size", "seed")
    # The length of a run that sets neither max_steps nor epochs.
    default_max_steps: ClassVar[int] = 1000
    # `genai train --help`'s text for a default the train function chooses (field -> text).
    default_help: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        check_fields(self)
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other")
        if self.strategy == "fsdp" and self.precision == "fp16":
            raise ValueError(
                "strategy 'fsdp' does not take precision 'fp16' (its grad scaler): use bf16"
            )

    def total_steps(self, steps_per_epoch: int) -> int:
        """The run's length in optimizer steps (see the class docstring)."""
        if self.max_steps is not None:
            return self.max_steps
        if self.epochs is not None:
            return self.epochs * steps_per_epoch
        return self.default_max_steps

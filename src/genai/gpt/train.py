"""The language model's training loop: next-token cross-entropy with AdamW (or Muon + AdamW)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from genai.core.device import PRECISIONS, autocast
from genai.core.fields import check_model, coerce_config, field
from genai.core.files import atomic_write
from genai.data.text import TokenBatches, Tokenizer, split_tokens
from genai.gpt import lora, recipes
from genai.gpt.evaluate import evaluate_lm
from genai.gpt.model import GPT
from genai.gpt.sampling import SAMPLING, SamplingConfig, sampling_config
from genai.gpt.text import generate_text
from genai.optim import decay_groups, make_adamw, make_muon, muon_params
from genai.training.engine import Callback, TrainConfig, Trainer, fit, maybe_compile

OPTIMIZERS = ("adamw", "muon")


@dataclass
class GPTTrainConfig(TrainConfig):
    """Training of a GPT. Adds to :class:`TrainConfig` (whose defaults it changes to nanoGPT's,
    and ``precision`` to ``"auto"``: bf16 autocast where the device computes bf16 natively):

    Attributes:
        grad_accum: micro-batches of ``batch_size`` windows per optimizer step.
        optimizer: "adamw" for every parameter, or "muon": Muon (``torch.optim.Muon``) for the
            2-D weights inside the blocks and AdamW (at ``lr``) for the embeddings, the head,
            gains and biases.
        muon_lr: Muon's learning rate (the schedule scales it as it scales ``lr``).
        muon_momentum: Muon's (Nesterov) momentum after its warmup.
        muon_momentum_warmup: steps over which Muon's momentum rises linearly from 0.85 to
            ``muon_momentum`` (0: no warmup).
        muon_weight_decay: Muon's decoupled weight decay.
        val_fraction: the tail of the text held out for validation, in [0, 1).
        eval_batches: batches of ``batch_size`` windows per validation loss (computed at the
            training ``precision``, as nanoGPT's ``estimate_loss`` runs under its autocast).
        sample_tokens: tokens of the text sample written at each sample step.
        sample_prompt: the sample's prompt ("" starts from token 0).
        sample_temperature: the sample's temperature; the rest of its :attr:`sampling` is
            :data:`genai.gpt.sampling.SAMPLING`'s (top-p 0.95).
        lora_rank: the rank of LoRA adapters (:mod:`genai.gpt.lora`); 0 trains every weight
            (full fine-tuning). Above 0 only the adapters train (with AdamW).
        lora_alpha: the adapters' scale is ``lora_alpha / lora_rank``.
        lora_dropout: dropout on the adapters' input, in [0, 1).
        lora_targets: the Linear layers of every block that get an adapter, among
            ``attn.c_attn`` (q, k, v), ``attn.c_proj``, ``mlp.c_fc``, ``mlp.c_proj``.
        lora_merge: the run gives back the adapters merged into a plain GPT (``genai.load``,
            and the model ``train_gpt`` trained); False: the GPT with its adapters. The run
            directory holds them apart either way (resume is exact).
        grad_checkpoint: recompute each block's activations in the backward pass (activation
            checkpointing): less memory, about one more forward pass of time, same gradients.
        weights_dtype: "bf16" stores the frozen weights in bf16 (needs ``lora_rank > 0``); the
            adapters and their optimizer state stay fp32.
    """

    out_dir: str = "runs/gpt"
    # bf16 autocast where the device has it natively: the validation loss of nanoGPT's CPU size
    # within 0.0003 nats of fp32 over 3 seeds, 1.27x faster (docs/gpt.md, "Precision").
    precision: str = field("auto", choices=PRECISIONS)
    batch_size: int = 12
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    lr_schedule: str = "cosine"
    grad_clip: float = 1.0
    eval_every: int = 250
    sample_every: int = 250
    grad_accum: int = field(1, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    optimizer: str = field("adamw", choices=OPTIMIZERS)
    muon_lr: float = field(0.02, gt=0)
    muon_momentum: float = field(0.95, ge=0, lt=1)
    muon_momentum_warmup: int = field(300, ge=0)
    muon_weight_decay: float = field(0.0, ge=0)
    val_fraction: float = field(0.1, ge=0, lt=1)
    eval_batches: int = field(20, gt=0)
    sample_tokens: int = field(200, ge=0)
    sample_prompt: str = ""
    sample_temperature: float = field(SAMPLING.temperature, ge=0)
    lora_rank: int = field(0, ge=0, rule=">= 0 (0 = full fine-tuning)")
    lora_alpha: float = field(16.0, gt=0)
    lora_dropout: float = field(0.0, ge=0, lt=1)
    lora_targets: tuple[str, ...] = field(lora.ATTENTION, choices=lora.TARGETS, nonempty=True)
    lora_merge: bool = True
    grad_checkpoint: bool = False
    weights_dtype: str = field("fp32", choices=lora.WEIGHTS_DTYPES)

    default_max_steps: ClassVar[int] = 5000
    fixed_on_resume: ClassVar[tuple[str, ...]] = (
        "batch_size",
        "seed",
        "grad_accum",
        "val_fraction",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        lora.check_config(self)

    @classmethod
    def recipe(cls, name: str, **overrides: Any) -> GPTTrainConfig:
        """The training settings of a named recipe ("gpt2" or "modern"), with ``overrides``.

        Example: ``GPTTrainConfig.recipe("modern", max_steps=2000)``; the model side is
        ``GPTConfig.recipe(name)``.
        """
        return cls(**recipes.recipe(name, "train", overrides))

    @property
    def sampling(self) -> SamplingConfig:
        """How the samples written during training draw their tokens."""
        return sampling_config(temperature=self.sample_temperature)


def muon_momentum(step: int, config: GPTTrainConfig) -> float:
    """Muon's momentum at ``step``: linear from 0.85 to ``muon_momentum`` over the warmup."""
    warmup = config.muon_momentum_warmup
    frac = min(1.0, step / warmup) if warmup else 1.0
    return (1.0 - frac) * 0.85 + frac * config.muon_momentum


class GPTTask:
    """The language-model loop for :func:`genai.training.engine.fit`."""

    kind = "gpt"

    def __init__(
        self,
        model: GPT,
        tokens: torch.Tensor,
        tokenizer: Tokenizer,
        config: GPTTrainConfig,
        source: str | dict,
    ):
        self.model, self.tokenizer, self.config, self.source = model, tokenizer, config, source
        self.train_tokens, self.val_tokens = split_tokens(tokens, config.val_fraction)
        if config.sample_tokens:  # checked now, not at the first sample step hundreds of steps in
            try:
                tokenizer.encode(config.sample_prompt)
            except ValueError as e:
                raise ValueError(f"sample_prompt {config.sample_prompt!r}: {e}") from None
        block = model.config.block_size
        if config.val_fraction > 0 and len(self.val_tokens) <= block:
            raise ValueError(
                f"the validation split has {len(self.val_tokens)} tokens; it needs more than "
                f"block_size={block} (use a longer text or a larger val_fraction)"
            )

    def setup(self, device: torch.device) -> TokenBatches:
        c = self.config
        self.device = device
        lora.prepare(self.model, c, device)  # adapters, frozen weights' dtype, checkpointing
        self.model.to(device)
        self.forward = maybe_compile(self.model, c)
        self.val_tokens = self.val_tokens.to(device)
        block = self.model.config.block_size
        return TokenBatches(self.train_tokens, block, c.batch_size, c.seed, device, c.grad_accum)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        betas = c.betas
        if c.optimizer == "adamw":
            groups = decay_groups(self.model, c.weight_decay)
            return {"gpt": make_adamw(groups, c.lr, self.device, betas=betas)}
        hidden = muon_params(self.model)
        others = [p for p in self.model.parameters() if all(p is not h for h in hidden)]
        groups = [
            {"params": [p for p in others if p.dim() >= 2], "weight_decay": c.weight_decay},
            {"params": [p for p in others if p.dim() < 2], "weight_decay": 0.0},
        ]
        return {
            "muon": make_muon(hidden, c.muon_lr, c.muon_momentum, c.muon_weight_decay),
            "adamw": make_adamw(groups, c.lr, self.device, betas=betas),
        }

    def train_step(self, batch, step: int, trainer: Trainer) -> dict[str, torch.Tensor]:
        names = tuple(trainer.optimizers)
        if "muon" in trainer.optimizers:
            momentum = muon_momentum(step, self.config)
            for group in trainer.optimizers["muon"].param_groups:
                group["momentum"] = momentum
        x, y = batch  # (A, B, T) each
        total = torch.zeros((), device=x.device)
        for a in range(x.shape[0]):
            with trainer.autocast():
                _, loss = self.forward(x[a], y[a])
            trainer.backward(loss / x.shape[0], names[0])
            total += loss.detach()
        trainer.step(*names)
        return {"loss": total / x.shape[0]}

    def evaluate(self) -> dict[str, float]:
        if self.config.val_fraction == 0:
            return {}
        c = self.config
        with autocast(self.device, c.precision):  # as training computes (nanoGPT's estimate_loss)
            return evaluate_lm(self.model, self.val_tokens, c.eval_batches, c.batch_size, c.seed)

    def write_samples(self, stem: Path) -> Path | None:
        c = self.config
        if c.sample_tokens == 0:
            return None
        generator = torch.Generator(self.device).manual_seed(c.seed)
        text = generate_text(
            self.model,
            c.sample_prompt,
            c.sample_tokens,
            c.sampling,
            generator=generator,
            tokenizer=self.tokenizer,
        )
        path = stem.with_suffix(".txt")
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        return path

    def checkpoint_extra(self) -> dict:
        data = self.source if isinstance(self.source, dict) else {"source": self.source}
        init = getattr(self.model, "init_from", None)  # a fine-tuned run's start (also sharded)
        return {
            "tokenizer": self.tokenizer.to_dict(),
            "data": data,
            **({"init": init} if init else {}),
            **lora.record(self.model),
        }


def train_gpt(
    model: GPT,
    text: str | torch.Tensor,
    tokenizer: Tokenizer,
    config: GPTTrainConfig | None = None,
    source: str | dict | None = None,
    callbacks: Sequence[Callback] = (),
) -> dict:
    """Train ``model`` on ``text`` (a string, or its ``(N,)`` token ids) in place.

    Writes the run directory ``config.out_dir`` (with the tokenizer, so :func:`genai.load` returns
    a model that can :func:`generate_text`) and returns :func:`fit`'s summary with
    ``trainable_params``, the count of parameters that trained (also in ``config.json``). The
    model keeps the tokenizer as ``model.tokenizer``; with ``lora_rank > 0`` it comes back as
    :func:`genai.load` gives the run: merged into a plain GPT, or with its adapters if
    ``lora_merge=False`` (:mod:`genai.gpt.lora`). ``config`` may be a dict of :class:`GPTTrainConfig`
    fields; ``source`` describes the text for ``config.json`` (a name or path, or a dict such
    as ``{"source": "shakespeare", "root": "data/"}``), so that ``--resume`` reads it again;
    ``callbacks`` are as in :func:`fit`.

    Args:
        model: the GPT, trained in place.
        text: the training text, or its token ids ``(N,)``.
        tokenizer: turns ``text`` into token ids; its vocabulary must fit ``model``.
        config: a :class:`GPTTrainConfig`, a dict of its fields, or None for the defaults.
        source: what the text is, recorded in ``config.json`` for ``--resume`` (None: text
            given in memory, which a resume must be given again).
        callbacks: functions called with each metrics record before it is written; a returned
            dict is merged into the record.

    Raises:
        ValueError: the tokenizer's vocabulary does not fit the model, the text is too short, or
            the model has LoRA adapters (merge them first).
    """
    check_model(model, GPT, "train_gpt")
    config = coerce_config(config, GPTTrainConfig)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
            f"{model.config.vocab_size}"
        )
    if isinstance(text, torch.Tensor):
        tokens = text
        if tokens.dim() != 1 or tokens.is_floating_point() or tokens.dtype == torch.bool:
            raise TypeError(
                f"text: token ids must be a 1-d integer tensor, got {tokens.dtype} "
                f"{tuple(tokens.shape)}"
            )
        if len(tokens) and (int(tokens.min()) < 0 or int(tokens.max()) >= tokenizer.vocab_size):
            raise ValueError(
                f"text: token ids must be in [0, {tokenizer.vocab_size}) (the tokenizer's "
                f"vocabulary), got [{int(tokens.min())}, {int(tokens.max())}]"
            )
    elif isinstance(text, str):
        tokens = torch.tensor(tokenizer.encode(text))
    else:
        raise TypeError(f"text: expected a str or a tensor of token ids, got {type(text).__name__}")
    if len(tokens) == 0:
        raise ValueError("the training text is empty")
    if lora.has_adapters(model):
        raise ValueError(
            "the model has LoRA adapters: merge them first (genai.gpt.lora.merge(model)), or "
            "resume their run (resume=True)"
        )
    model.tokenizer = tokenizer
    try:
        summary = fit(GPTTask(model, tokens.long(), tokenizer, config, source), config, callbacks)
    finally:
        model.grad_checkpoint = False
    trainable = lora.trainable_params(model)
    lora.finish(model, config)  # the model as genai.load gives the run back
    return {**summary, "trainable_params": trainable}

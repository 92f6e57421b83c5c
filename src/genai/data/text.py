"""Text for the language model: tokenizers, corpora, and random-window batches.

Three tokenizers share one small interface (``encode``, ``decode``, ``vocab_size``, ``to_dict``):
:class:`CharTokenizer` (the characters of a corpus), :class:`ByteTokenizer` (UTF-8 bytes: any
text) and :class:`BPETokenizer` (byte-level BPE trained locally with Hugging Face ``tokenizers``).
:func:`tokenizer_from_dict` restores any of them from the run directory's ``config.json``.
"""

from __future__ import annotations

import glob
import json
import logging
import sysconfig
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from genai.core.files import atomic_write
from genai.data.dataset import default_root

log = logging.getLogger(__name__)

SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
CORPORA = ("shakespeare", "python-stdlib")
TOKENIZERS = ("char", "byte", "bpe")


class CharTokenizer:
    """One token per character of a fixed vocabulary (sorted, as in nanoGPT's char model).

    Args:
        chars: the vocabulary, each character once.
    """

    def __init__(self, chars: str):
        if not chars:
            raise ValueError("a CharTokenizer needs at least one character")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer characters must be distinct")
        self.chars = chars
        self._index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer of every character that occurs in ``text``."""
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``.

        Raises:
            ValueError: a character is not in the vocabulary (named, with its position).
        """
        try:
            return [self._index[c] for c in text]
        except KeyError as e:
            pos = next(i for i, c in enumerate(text) if c not in self._index)
            raise ValueError(
                f"character {e.args[0]!r} at position {pos} is not in the tokenizer's "
                f"vocabulary of {self.vocab_size} characters"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict:
        return {"type": "char", "chars": self.chars}


class ByteTokenizer:
    """UTF-8 bytes as tokens (vocabulary 256): encodes every text."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        """The text of the bytes; a cut or invalid multi-byte sequence becomes U+FFFD."""
        return bytes(ids).decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        return {"type": "byte"}


GPT2_EOT = "<|endoftext|>"


class BPETokenizer:
    """Byte-level BPE (GPT-2's scheme) through Hugging Face ``tokenizers``.

    Args:
        tokenizer: a ``tokenizers.Tokenizer``.
        chat_template: a chat model's Jinja template (``tokenizer_config.json``'s
            ``chat_template``), rendered by :func:`genai.gpt.chat.render_chat`; None for none.
        special_tokens: the named special tokens of ``tokenizer_config.json`` the template uses
            (``{"eos_token": "<|im_end|>", "bos_token": ...}``).
    """

    def __init__(
        self, tokenizer, chat_template: str | None = None, special_tokens: dict | None = None
    ):
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.special_tokens = dict(special_tokens or {})

    @classmethod
    def train(cls, text: str, vocab_size: int = 1024) -> BPETokenizer:
        """Train a byte-level BPE with ``vocab_size`` tokens (>= 256) on ``text``, locally."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size < 256:
            raise ValueError(f"bpe vocab_size must be >= 256 (the bytes), got {vocab_size}")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator([text], trainer=trainer)
        return cls(tok)

    @classmethod
    def from_file(cls, path: str | Path) -> BPETokenizer:
        """Load a ``tokenizer.json`` (e.g. GPT-2's)."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    @classmethod
    def from_folder(cls, folder: str | Path) -> BPETokenizer | None:
        """The tokenizer of a Hugging Face model folder: its ``tokenizer.json``, else GPT-2's
        byte-level BPE from ``vocab.json`` and ``merges.txt``; None when it has neither."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        folder = Path(folder)
        template, special = _chat_config(folder)
        if (folder / "tokenizer.json").is_file():
            return cls(Tokenizer.from_file(str(folder / "tokenizer.json")), template, special)
        vocab, merges = folder / "vocab.json", folder / "merges.txt"
        if not (vocab.is_file() and merges.is_file()):
            return None
        tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        if GPT2_EOT in tok.get_vocab():  # one token, as in GPT-2's tokenizer.json
            tok.add_special_tokens([GPT2_EOT])
        return cls(tok, template, special)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def to_dict(self) -> dict:
        d = {"type": "bpe", "json": self.tokenizer.to_str()}
        if self.chat_template is not None:
            d["chat_template"] = self.chat_template
        if self.special_tokens:
            d["special_tokens"] = self.special_tokens
        return d


def _chat_config(folder: Path) -> tuple[str | None, dict[str, str]]:
    """A Hugging Face folder's chat template and named special tokens (``tokenizer_config.json``,
    ``chat_template.jinja``), or ``(None, {})``."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if (folder / "chat_template.jinja").is_file():  # newer transformers save it apart
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    special = {}
    for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = config.get(name)
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str):
            special[name] = value
    return (template if isinstance(template, str) else None), special


Tokenizer = CharTokenizer | ByteTokenizer | BPETokenizer


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Rebuild a tokenizer from its ``to_dict()``.

    Raises:
        ValueError: ``d`` is not a tokenizer's dict (unknown type, missing or damaged entries).
    """
    if not isinstance(d, dict):
        raise ValueError(f"expected a dict with a 'type', got {type(d).__name__}")
    kind = d.get("type")
    if kind == "char":
        return CharTokenizer(d["chars"])
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        from tokenizers import Tokenizer as HFTokenizer

        try:
            tok = HFTokenizer.from_str(d["json"])
            return BPETokenizer(tok, d.get("chat_template"), d.get("special_tokens"))
        except Exception as e:  # the tokenizers library raises a bare Exception for bad JSON
            raise ValueError(f"not a BPE tokenizer's JSON ({e})") from e
    raise ValueError(f"unknown tokenizer type {kind!r}: expected one of {', '.join(TOKENIZERS)}")


def build_tokenizer(kind: str, text: str, vocab_size: int = 1024) -> Tokenizer:
    """A ``char``, ``byte`` or ``bpe`` tokenizer for ``text`` (``vocab_size`` is BPE's)."""
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        return BPETokenizer.train(text, vocab_size)
    raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {kind!r}")


def _decodes_piecewise(tokenizer: Tokenizer) -> bool:
    """Whether ``decode(a + b) == decode(a) + decode(b)`` for whole pieces ``a`` and ``b``."""
    if isinstance(tokenizer, (CharTokenizer, ByteTokenizer)):
        return True
    decoder = getattr(getattr(tokenizer, "tokenizer", None), "decoder", None)
    return isinstance(tokenizer, BPETokenizer) and type(decoder).__name__ == "ByteLevel"


def decode_stream(tokenizer: Tokenizer, ids: Iterable[int]) -> Iterator[str]:
    """Turn a stream of token ids into a stream of text pieces.

    Text is released only when it is final: a tail that decodes to U+FFFD (a multi-byte character
    cut between tokens) is held back until the next token completes it or the stream ends. For
    the tokenizers whose decodings concatenate (characters, bytes, byte-level BPE) only the ids
    since the text was last whole are decoded again, so the cost is linear in the length;
    others (a SentencePiece or WordPiece ``tokenizer.json``, whose decoders drop or add spaces
    at the start) decode the whole stream each time.
    """
    piecewise = _decodes_piecewise(tokenizer)
    pending: list[int] = []  # ids since the text was last whole; decoded together
    emitted = 0  # characters of their text already yielded
    text = ""
    for i in ids:
        pending.append(i)
        text = tokenizer.decode(pending)
        final = len(text.rstrip("\ufffd"))
        if final > emitted:
            yield text[emitted:final]
            emitted = final
        if piecewise and final == len(text):  # nothing held back: start afresh (linear)
            pending, emitted, text = [], 0, ""
    if len(text) > emitted:
        yield text[emitted:]


def _read_files(paths: list[Path]) -> str:
    """The UTF-8 text of ``paths`` joined; other files are skipped (an error if all are)."""
    parts, skipped = [], []
    utf16 = False
    for path in paths:
        try:  # utf-8-sig: a byte-order mark at the start is not text
            parts.append(path.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError as e:
            utf16 = utf16 or e.object[:2] in (b"\xff\xfe", b"\xfe\xff")
            skipped.append(f"{path} (byte {e.start} is not UTF-8)")
    if skipped and not parts:
        source = "utf-16" if utf16 else "latin1"
        raise ValueError(
            f"no UTF-8 text in {skipped[0]}"
            + (f" and {len(skipped) - 1} more" if len(skipped) > 1 else "")
            + f"; genai reads UTF-8 (convert with e.g. iconv -f {source} -t utf-8)"
        )
    for reason in skipped:
        log.warning("skipping %s", reason)
    return "".join(parts)


def python_stdlib_text(max_chars: int | None = 5_000_000) -> str:
    """The running Python's standard-library sources (tests and site-packages left out)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idlelib", "__pycache__"}
    files = sorted(
        p for p in root.rglob("*.py") if not skip.intersection(p.relative_to(root).parts)
    )
    if not files:
        raise FileNotFoundError(
            f"no standard-library sources (*.py) under {root}: this Python ships compiled "
            "modules only; train on a file, folder or glob of text instead"
        )
    text, size = [], 0
    for path in files:
        try:
            part = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        text.append(part)
        size += len(part)
        if max_chars is not None and size >= max_chars:
            break
    return "".join(text)[:max_chars]


def shakespeare_text(root: str | Path | None = None, download: bool = False) -> str:
    """Tiny-shakespeare: ``root`` (the file or its folder), the cache, or a download if allowed."""
    if root is not None:
        path = Path(root)
        path = path / "input.txt" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no tiny-shakespeare text at {str(path)!r}")
        return _read_files([path])

    path = default_root() / "tinyshakespeare" / "input.txt"  # where every download goes
    if not path.is_file():
        if not download:
            raise FileNotFoundError(
                f"tiny-shakespeare is not at {path}; pass download=True (--download) or a local "
                "path (--root)"
            )

        try:  # to a temporary file first: an interrupted download leaves nothing behind
            atomic_write(path, lambda tmp: urllib.request.urlretrieve(SHAKESPEARE_URL, tmp))
        except OSError as e:  # URLError is an OSError
            raise OSError(
                f"could not download tiny-shakespeare from {SHAKESPEARE_URL} ({e})"
            ) from e
    return _read_files([path])


def load_text(source: str | Path, root: str | Path | None = None, download: bool = False) -> str:
    """Read a corpus: a named one (``shakespeare``, ``python-stdlib``), a file, a folder or a glob.

    A folder is read recursively (hidden files and non-UTF-8 files skipped), files in sorted order.

    Args:
        source: ``"shakespeare"``, ``"python-stdlib"``, or a path, folder or glob of UTF-8 text.
        root: where tiny-shakespeare's ``input.txt`` lives (the file or its folder).
        download: allow downloading tiny-shakespeare when it is neither in ``root`` nor cached.

    Returns:
        The corpus as one string.

    Raises:
        FileNotFoundError: nothing matches ``source``.
        ValueError: the corpus is empty.
    """
    source = str(source)
    if source == "shakespeare":
        text = shakespeare_text(root, download)
    elif source == "python-stdlib":
        text = python_stdlib_text()
    else:
        path = Path(source)
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(s.startswith(".") for s in p.relative_to(path).parts)
            )
        else:
            files = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
            if not files:
                raise FileNotFoundError(
                    f"no text at {source!r}: not a file, folder, glob or one of {', '.join(CORPORA)}"
                )
        text = _read_files(files)
    if not text:
        raise ValueError(f"the corpus {source!r} is empty")
    return text


def split_tokens(tokens: torch.Tensor, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``1 - val_fraction`` of the tokens for training, the rest for validation."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = int(len(tokens) * (1.0 - val_fraction))
    return tokens[:n], tokens[n:]


def random_windows(
    tokens: torch.Tensor, shape: tuple[int, ...], block_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets of random windows of ``tokens``.

    Returns:
        ``(x, y)``, each ``shape + (block_size,)``; ``y`` is ``x`` shifted by one token.
    """
    starts = torch.randint(
        len(tokens) - block_size, shape, generator=generator, device=generator.device
    )
    idx = starts[..., None] + torch.arange(block_size + 1, device=tokens.device)  # (..., T + 1)
    window = tokens[idx]
    return window[..., :-1].contiguous(), window[..., 1:].contiguous()  # models may .view them


class TokenBatches:
    """Batches of random windows of one token tensor, a pure function of ``(seed, step)``.

    Args:
        tokens: ``(N,)`` token ids.
        block_size: window length T.
        batch_size: windows per micro-batch B.
        seed: seed of the window positions.
        device: where the tokens and batches live.
        accum: micro-batches per step A (gradient accumulation).
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        block_size: int,
        batch_size: int,
        seed: int = 0,
        device: torch.device | str = "cpu",
        accum: int = 1,
    ):
        if len(tokens) <= block_size:
            raise ValueError(
                f"the text has {len(tokens)} tokens; it needs more than block_size={block_size}"
            )
        self.device = torch.device(device)
        self.tokens = tokens.to(self.device)
        self.block_size, self.batch_size, self.seed, self.accum = (
            block_size,
            batch_size,
            seed,
            accum,
        )

    def __len__(self) -> int:
        """Steps per epoch: steps that together see about as many tokens as the text has."""
        return max(1, len(self.tokens) // (self.accum * self.batch_size * self.block_size))

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of global ``step``: ``(x, y)``, each ``(A, B, T)`` token ids."""
        generator = torch.Generator(self.device).manual_seed(self.seed * 1_000_003 + step)
        return random_windows(
            self.tokens, (self.accum, self.batch_size), self.block_size, generator
        )

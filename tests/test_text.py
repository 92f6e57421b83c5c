"""Tokenizers, corpora and random-window batches."""

from __future__ import annotations

import pytest
import torch

from genai.data.text import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    TokenBatches,
    build_tokenizer,
    decode_stream,
    load_text,
    split_tokens,
    tokenizer_from_dict,
)

SAMPLES = ["Hello, world!\n", "你好，世界。中国", "emoji 🙂🚀 mixed 中文 text"]


@pytest.mark.parametrize("text", SAMPLES)
def test_char_tokenizer_round_trip(text):
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    assert len(ids) == len(text) and max(ids) < tok.vocab_size
    assert tok.decode(ids) == text
    assert tok.chars == "".join(sorted(set(text)))


def test_char_tokenizer_names_the_unknown_character_and_position():
    tok = CharTokenizer.from_text("abc ")
    with pytest.raises(ValueError, match=r"character '🙂' at position 4 is not in"):
        tok.encode("abc 🙂 a")


@pytest.mark.parametrize("text", SAMPLES)
def test_byte_tokenizer_round_trip(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8")) and all(0 <= i < 256 for i in ids)
    assert tok.decode(ids) == text


def test_byte_decode_of_a_cut_character_does_not_crash():
    tok = ByteTokenizer()
    ids = tok.encode("a🙂")  # 'a' + 4 bytes
    assert tok.decode(ids[:3]) == "a\ufffd"
    assert tok.decode([0xFF]) == "\ufffd"


@pytest.mark.parametrize("kind", ["byte", "bpe"])
def test_decode_stream_never_splits_a_character(kind):
    text = "中国 🙂🚀 ok"
    tok = build_tokenizer(kind, text * 20, vocab_size=260)
    pieces = list(decode_stream(tok, tok.encode(text)))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


@pytest.mark.parametrize("text", SAMPLES)
def test_bpe_round_trip_and_compression(text):
    corpus = " ".join(SAMPLES) * 50
    tok = BPETokenizer.train(corpus, vocab_size=300)
    assert 256 < tok.vocab_size <= 300
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(corpus)) < len(corpus.encode("utf-8"))  # merges learned
    assert tok.decode(tok.encode("unseen ✓ text")) == "unseen ✓ text"  # byte-level: any text


@pytest.mark.parametrize("kind", ["char", "byte", "bpe"])
def test_tokenizer_dict_round_trip(kind):
    corpus = " ".join(SAMPLES) * 20
    tok = build_tokenizer(kind, corpus, vocab_size=280)
    back = tokenizer_from_dict(tok.to_dict())
    assert type(back) is type(tok) and back.vocab_size == tok.vocab_size
    assert back.encode(corpus) == tok.encode(corpus)


def test_bad_tokenizer_names():
    with pytest.raises(ValueError, match="unknown tokenizer type 'x'"):
        tokenizer_from_dict({"type": "x"})
    with pytest.raises(ValueError, match="tokenizer must be one of char, byte, bpe"):
        build_tokenizer("word", "text")
    with pytest.raises(ValueError, match="bpe vocab_size must be >= 256"):
        BPETokenizer.train("text", 100)


def test_load_text_file_folder_glob(tmp_path):
    (tmp_path / "b.txt").write_text("second ")
    (tmp_path / "a.txt").write_text("first ")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.md").write_text("third")
    (tmp_path / ".hidden").write_text("never")
    (tmp_path / "bin.dat").write_bytes(b"\xff\xfe\x00")
    assert load_text(tmp_path / "a.txt") == "first "
    assert load_text(tmp_path) == "first second third"
    assert load_text(str(tmp_path / "*.txt")) == "first second "
    assert load_text(str(tmp_path / "**" / "*.md")) == "third"


def test_load_text_errors(tmp_path, monkeypatch):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_text(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match="no text at"):
        load_text(str(tmp_path / "nothing*.txt"))
    monkeypatch.setenv("GENAI_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="pass download=True"):
        load_text("shakespeare")


def test_shakespeare_from_a_local_path(tmp_path):
    (tmp_path / "input.txt").write_text("First Citizen:\nBefore we proceed")
    assert load_text("shakespeare", root=tmp_path).startswith("First Citizen:")


def test_python_stdlib_corpus_is_the_running_pythons_source():
    text = load_text("python-stdlib")
    assert 1_000_000 <= len(text) <= 5_000_000
    assert "def " in text and "import " in text


def test_split_tokens():
    train, val = split_tokens(torch.arange(100), 0.1)
    assert torch.equal(train, torch.arange(90)) and torch.equal(val, torch.arange(90, 100))
    with pytest.raises(ValueError, match="val_fraction"):
        split_tokens(torch.arange(10), 1.0)


def test_token_batches_are_shifted_windows_and_a_pure_function_of_step():
    tokens = torch.arange(1000)
    a = TokenBatches(tokens, block_size=16, batch_size=4, seed=3, accum=2)
    b = TokenBatches(tokens, block_size=16, batch_size=4, seed=3, accum=2)
    x, y = a.get(7)
    assert x.shape == y.shape == (2, 4, 16)
    assert torch.equal(y, x + 1)  # targets are the next tokens
    assert x[1].is_contiguous() and y[1].is_contiguous()  # a model may .view() a micro-batch
    assert torch.equal(x[..., 1:] - x[..., :-1], torch.ones(2, 4, 15, dtype=torch.long))
    assert x.min() >= 0 and y.max() <= 999
    a.get(100)
    assert torch.equal(a.get(7)[0], b.get(7)[0])
    assert not torch.equal(a.get(8)[0], x)
    assert not torch.equal(TokenBatches(tokens, 16, 4, seed=4, accum=2).get(7)[0], x)
    assert len(a) == 1000 // (2 * 4 * 16)


def test_token_batches_need_more_tokens_than_the_block():
    with pytest.raises(ValueError, match="needs more than block_size=16"):
        TokenBatches(torch.arange(16), block_size=16, batch_size=2)


def test_shakespeare_download_place(tmp_path, monkeypatch):
    import os
    from pathlib import Path

    with pytest.raises(FileNotFoundError, match="genai-data/tinyshakespeare/input.txt"):
        load_text("shakespeare")  # looked for where downloads go: $GENAI_DATA
    new = Path(os.environ["GENAI_DATA"]) / "tinyshakespeare" / "input.txt"
    new.parent.mkdir(parents=True)
    new.write_text("First Citizen:\nnew place")
    assert load_text("shakespeare").endswith("new place")


def test_decode_stream_decodes_each_id_about_once():
    """Linear, not quadratic: only the ids since the text was last whole are decoded again."""
    tok = build_tokenizer("byte", "")
    decoded = []
    real = tok.decode
    tok.decode = lambda ids: (decoded.append(len(ids)), real(ids))[1]
    text = "中国 🙂 ok " * 200
    assert "".join(decode_stream(tok, tok.encode(text))) == text
    assert sum(decoded) < 3 * len(text.encode())  # each 4-byte character: 1 + 2 + 3 + 4 ids


def test_load_text_drops_a_byte_order_mark_and_names_utf16(tmp_path):
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfhello")
    assert load_text(tmp_path / "bom.txt") == "hello"
    (tmp_path / "wide.txt").write_bytes("hi".encode("utf-16"))
    with pytest.raises(ValueError, match="iconv -f utf-16 -t utf-8"):
        load_text(tmp_path / "wide.txt")


def test_decode_stream_of_a_tokenizer_whose_pieces_do_not_concatenate():
    """A SentencePiece-style decoder drops the leading space of a decoded piece: the stream
    must decode the whole sequence, not piece by piece."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from genai.data.text import BPETokenizer

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=60, special_tokens=["<unk>"])
    tok.train_from_iterator(["hello world again and again"] * 20, trainer)
    bpe = BPETokenizer(tok)
    ids = bpe.encode("hello world again")
    assert "".join(decode_stream(bpe, ids)) == bpe.decode(ids) == "hello world again"

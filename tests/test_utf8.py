"""Every string genai returns is text: byte-level sampling constrained to valid UTF-8, and
streams of text that yield whole characters only."""

from __future__ import annotations

import codecs

import pytest
import torch

from genai.cli import build_parser
from genai.data.text import BPETokenizer, ByteTokenizer, decode_stream
from genai.gpt import GPT, GPTConfig, SamplingConfig, generate_text, stream_text
from genai.gpt.sampling import Utf8Constraint, utf8_tables

PROMPTS = ["中国", "北京是", "Hello", "日本語の", "ü", "🙂"]
CHINESE = "中国的首都是北京。北京是一座历史悠久的城市，上海是中国最大的城市。" * 30


def byte_model(seed: int = 0, vocab_size: int = 256) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32)
    model = GPT(config).eval()
    model.tokenizer = ByteTokenizer()
    return model


def _sample_rows(model: GPT, **kw) -> list[list[int]]:
    """1,000 sampled byte rows: 50 batches of 20 rows x 40 new tokens, at T = 1.0 and 1.5."""
    tok, rows = ByteTokenizer(), []
    for b in range(50):
        prompt = tok.encode(PROMPTS[b % len(PROMPTS)])
        idx = torch.tensor([prompt] * 20)
        temperature = 1.0 if b % 2 == 0 else 1.5
        out = model.generate(idx, 40, temperature=temperature, top_p=None, seed=b, **kw)
        rows += [row[len(prompt) :] for row in out.tolist()]
    return rows


def test_a_random_byte_model_writes_only_utf8():
    rows = _sample_rows(byte_model())
    assert len(rows) == 1000 and all(len(r) == 40 for r in rows)
    texts = [bytes(r).decode("utf-8") for r in rows]  # strict: raises on any invalid byte
    assert sum(t.count("\ufffd") for t in texts) == 0
    assert (
        sum(len(r) - len(t) for r, t in zip(rows, texts, strict=True)) > 1000
    )  # multi-byte characters drawn
    # The text path, Chinese prompts included.
    model = byte_model()
    for i, prompt in enumerate(PROMPTS * 2):
        text = generate_text(model, prompt, 30, temperature=1.5, top_p=None, seed=i)
        assert "\ufffd" not in text and text.startswith(prompt)


def test_turned_off_the_draws_are_the_old_ones():
    """valid_utf8=False is exactly the unconstrained sampler: the same draws as a model without a
    byte tokenizer and as the plain loop of temperature sampling."""
    model = byte_model()
    rows_off = _sample_rows(model, valid_utf8=False)
    del model.tokenizer
    assert rows_off == _sample_rows(model)
    assert sum(bytes(r).decode("utf-8", "replace").count("\ufffd") for r in rows_off) > 1000
    idx = torch.tensor([list("北京是".encode())] * 3)
    generator = torch.Generator().manual_seed(7)
    window, sampling = idx, SamplingConfig(temperature=1.0, top_p=None)
    for _ in range(10):
        token = sampling.draw(model(window)[0][:, -1], generator)
        window = torch.cat([window, token[:, None]], dim=1)
    model.tokenizer = ByteTokenizer()
    got = model.generate(idx, 10, sampling, valid_utf8=False, seed=7)
    assert torch.equal(got, window)


def _valid_prefix(data: bytes, prefixes: frozenset[bytes]) -> bool:
    """Python's decoder: ``data`` is whole characters followed by the start of one."""
    try:
        _, consumed = codecs.utf_8_decode(data, "strict", False)
    except UnicodeDecodeError:
        return False
    return consumed == len(data) or data[consumed:] in prefixes


def test_the_mask_agrees_with_pythons_decoder_on_every_short_prefix():
    """For every valid prefix p of 0-2 bytes, every 3-byte start of a 4-byte character whose last
    byte is 80 or BF, and every byte b: the mask allows b after p iff p + b still starts valid
    UTF-8 by Python's strict decoder (a tail is the start of the encoding of a code point)."""
    every_char = (chr(c).encode() for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    prefixes = frozenset(e[:n] for e in every_char for n in range(1, len(e)))
    level, valid = [b""], [b""]
    for _ in range(2):  # the valid prefixes of 1, then 2 bytes
        level = [p + bytes([b]) for p in level for b in range(256)]
        level = [p for p in level if _valid_prefix(p, prefixes)]
        valid += level
    valid += [p + bytes([b]) for p in level if p[0] >= 0xF0 for b in (0x80, 0xBF)]
    assert len(valid) > 26_000
    tails: dict[bytes, int] = {}  # what follows the whole characters of p
    rows = [
        tails.setdefault(p[codecs.utf_8_decode(p, "strict", False)[1] :], len(tails)) for p in valid
    ]
    expected = torch.tensor(
        [[_valid_prefix(tail + bytes([b]), prefixes) for b in range(256)] for tail in tails]
    )[rows]  # (len(valid), 256)
    idx = torch.tensor([[0x41] * (3 - len(p)) + list(p) for p in valid])  # "A" pads: a boundary
    allowed = Utf8Constraint(idx).mask(torch.zeros(len(valid), 256), remaining=4) == 0
    wrong = (allowed != expected).any(dim=1).nonzero()[:, 0].tolist()
    assert not wrong, [valid[i] for i in wrong[:5]]
    allowed_table, _, _ = utf8_tables()
    assert not allowed_table[0, [0x80, 0xBF, 0xC0, 0xC1, *range(0xF5, 0x100)]].any()
    assert allowed_table[0, [0x00, 0x0A, 0x7F, 0xC2, 0xE0, 0xF4]].all()


def test_a_character_is_started_only_when_it_can_be_finished():
    idx = torch.zeros(1, 1, dtype=torch.long)
    for remaining, longest in [(1, 0x7F), (2, 0xDF), (3, 0xEF), (4, 0xF4)]:
        ok = Utf8Constraint(idx).mask(torch.zeros(1, 256), remaining)[0] == 0
        assert ok.nonzero().max().item() == longest
    model = byte_model()
    for n in range(1, 6):
        for seed in range(5):
            out = model.generate(torch.tensor([list("中".encode())]), n, temperature=2.0, seed=seed)
            bytes(out[0].tolist()).decode("utf-8")  # always ends on a character boundary


def test_padding_ids_are_never_drawn_and_a_prompts_partial_character_is_finished():
    model = byte_model(vocab_size=320)  # padded past the 256 bytes
    cut = list("中国".encode())[:-1]  # the prompt ends inside 国
    out = model.generate(torch.tensor([cut] * 8), 20, temperature=1.5, top_p=None, seed=0)
    assert int(out.max()) < 256
    for row in out.tolist():
        text = bytes(row).decode("utf-8")
        assert text[0] == "中" and text[1].encode()[:2] == "国".encode()[:2]


def _boosted(model: GPT, boosts: dict[int, float]) -> GPT:
    """The model with ``boosts`` added to the logits of those ids."""
    bias = torch.zeros(model.config.vocab_size)
    for i, v in boosts.items():
        bias[i] = v
    model.lm_head.register_forward_hook(lambda module, args, out: out + bias)
    return model


def test_greedy_never_picks_a_byte_that_breaks_utf8():
    model = _boosted(byte_model(), {0x80: 100.0, ord("x"): 50.0})  # argmax: a continuation byte
    idx = torch.tensor([[ord("a")]])
    assert model.generate(idx, 5, temperature=0)[0, 1:].tolist() == [ord("x")] * 5
    assert model.generate(idx, 5, temperature=0, valid_utf8=False)[0, 1:].tolist() == [0x80] * 5
    assert generate_text(model, "a", 4, temperature=0) == "axxxx"
    # After a lead byte the argmax "x" is refused until the character is complete.
    model = _boosted(byte_model(), {ord("x"): 100.0, 0xB8: 50.0})
    out = model.generate(torch.tensor([[0xE4]]), 4, temperature=0)
    assert bytes(out[0].tolist()).decode("utf-8") == "丸xx"  # E4 B8 B8: U+4E38


@pytest.mark.parametrize("use_cache", [True, False])
def test_each_row_keeps_its_own_state(use_cache):
    model = byte_model()
    rows = [list("中".encode())[:1], list(b"ab"), list("🙂".encode())[:2]]
    rows = [[0x20] * (2 - len(r)) + r for r in rows]
    out = model.generate(torch.tensor(rows), 12, temperature=1.5, seed=3, use_cache=use_cache)
    for row in out.tolist():
        bytes(row).decode("utf-8")


def test_the_switch_is_a_validated_field_and_a_flag():
    assert SamplingConfig().valid_utf8 is True
    with pytest.raises(TypeError, match="valid_utf8 must be True or False, got 'no'"):
        SamplingConfig(valid_utf8="no")
    args = build_parser().parse_args(["generate", "run", "--no-valid-utf8"])
    assert args.valid_utf8 is False
    assert not hasattr(build_parser().parse_args(["generate", "run"]), "valid_utf8")


def test_bpe_stream_yields_whole_characters_only():
    """A byte-level BPE whose tokens split Chinese characters: stream_text holds a partial
    character back until it completes, and its text is generate_text's."""
    tok = BPETokenizer.train(CHINESE, vocab_size=270)  # few merges: characters stay split
    assert any("\ufffd" in tok.decode([i]) for i in tok.encode("中国"))
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32)
    model = _boosted(GPT(config).eval(), {i: 4.0 for i in set(tok.encode(CHINESE))})
    model.tokenizer = tok
    split, naive_wrong = 0, 0
    for seed in range(5):
        pieces = list(stream_text(model, "北京是", 40, seed=seed, temperature=1.0))
        ids = model.generate(torch.tensor([tok.encode("北京是")]), 40, seed=seed, temperature=1.0)
        full = tok.decode(ids[0].tolist())
        assert "北京是" + "".join(pieces) == full
        assert full == generate_text(model, "北京是", 40, seed=seed, temperature=1.0)
        assert all(not p.endswith("\ufffd") for p in pieces[:-1])
        raw = [tok.decode([i]) for i in ids[0, len(tok.encode("北京是")) :].tolist()]
        split += sum("\ufffd" in p for p in raw)  # tokens that are part of a character
        naive_wrong += "北京是" + "".join(raw) != full  # what decoding token by token would give
    assert split > 10 and naive_wrong == 5


def test_decode_stream_holds_a_split_character_whatever_the_cut():
    tok = BPETokenizer.train(CHINESE, vocab_size=270)
    ids = tok.encode("北京是一座城市🙂")
    pieces = list(decode_stream(tok, ids))
    assert "".join(pieces) == "北京是一座城市🙂" and all("\ufffd" not in p for p in pieces)


def test_genai_generate_writes_utf8_unless_told_not_to(tmp_path, capsys):
    from genai.cli import main

    run = byte_model().save_pretrained(tmp_path / "bytes")
    gen = ["generate", str(run), "--prompt", "北京是", "--max-new-tokens", "60", "--seed", "2"]
    gen += ["--temperature", "1.5", "--device", "cpu"]
    assert main(gen) == 0
    out = capsys.readouterr().out
    assert "\ufffd" not in out and out.startswith("北京是")
    assert out == generate_text(run, "北京是", 60, temperature=1.5, seed=2, device="cpu") + "\n"
    assert main([*gen, "--no-valid-utf8"]) == 0
    assert "\ufffd" in capsys.readouterr().out

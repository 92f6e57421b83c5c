"""Fine-tuning pretrained models (``genai train gpt --init``, ``train_gpt(GPT.from_huggingface)``)
and chat models (``generate_text(messages=...)``): tiny random Hugging Face folders, CPU, no
network."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import genai
from genai.cli import main
from genai.data.text import BPETokenizer, tokenizer_from_dict
from genai.gpt import GPT, GPTTrainConfig, generate_text, stream_text, train_gpt
from genai.gpt.chat import render_chat, stop_ids

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("jinja2")

CHINESE = "中国是东亚的一个国家"
WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "and",
    "the",
    "dog",
    "ran",
    "far",
    "away",
    "中国",
    "北京",
    "东亚",
    "国家",
    "首都",
    "是",
    "的",
    "一个",
]
TEXT = " ".join(random.Random(0).choice(WORDS) for _ in range(2500))
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
VOCAB = 300
STEPS = ["--max-steps", "30", "--batch-size", "4", "--lr", "3e-3", "--warmup-steps", "0"]
QUIET = ["--log-every", "5", "--eval-every", "15", "--sample-tokens", "4", "--eval-batches", "2"]


def hf_model(family: str):
    torch.manual_seed(0)
    if family == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
            bos_token_id=None, eos_token_id=None,
        )  # fmt: skip
        return transformers.GPT2LMHeadModel(config)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=False, bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


def save_folder(folder: Path, family: str, chat: bool = False) -> Path:
    """A Hugging Face folder: config.json, model.safetensors, tokenizer.json (and, for a chat
    model, tokenizer_config.json with a ChatML template)."""
    hf_model(family).save_pretrained(folder)
    tok = BPETokenizer.train(TEXT, vocab_size=280).tokenizer
    tok.add_special_tokens(SPECIAL)
    tok.save(str(folder / "tokenizer.json"))
    if chat:
        config = {"chat_template": CHATML, "eos_token": {"content": "<|im_end|>"}}
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    (root / "text.txt").write_text(TEXT, encoding="utf-8")
    return {f: save_folder(root / f, f) for f in ("llama", "gpt2")}, root / "text.txt"


def train_losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r.get("split") == "train"]


@pytest.fixture(scope="module")
def finetuned(folders, tmp_path_factory):
    """``genai train gpt --init`` of each family: the run directories."""
    hf, text = folders
    runs = {}
    for family, folder in hf.items():
        run = tmp_path_factory.mktemp("runs") / family
        argv = ["--init", str(folder), "--text", str(text), "--block-size", "32"]
        assert main(["-q", "train", "gpt", *argv, *STEPS, *QUIET, "--out-dir", str(run)]) == 0
        runs[family] = run
    return runs


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_finetuning_lowers_the_loss_and_records_the_init(finetuned, folders, family):
    run, folder = finetuned[family], folders[0][family]
    losses = train_losses(run)
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.5
    record = json.loads((run / "config.json").read_text())
    assert record["init"] == {
        "source": str(folder.resolve()), "kind": "huggingface", "model_type": family,
    }  # fmt: skip
    pretrained = GPT.from_huggingface(folder)
    expected = {**json.loads(json.dumps(dataclasses.asdict(pretrained.config))), "block_size": 32}
    assert record["model_config"] == expected  # the init's settings, the block size cropped
    assert record["tokenizer"] == pretrained.tokenizer.to_dict()  # the model's own tokenizer


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_the_run_reloads_and_generates_with_the_models_tokenizer(
    finetuned, folders, family, capsys
):
    model = genai.load(finetuned[family], device="cpu")
    assert model.config.block_size == 32 and isinstance(model.tokenizer, BPETokenizer)
    ids = model.tokenizer.encode(CHINESE)
    assert model.tokenizer.decode(ids) == CHINESE
    assert ids == BPETokenizer.from_folder(folders[0][family]).encode(CHINESE)
    text = generate_text(model, "中国", max_new_tokens=40, temperature=0)  # past block_size
    assert text.startswith("中国") and len(text) > 2
    assert (
        main(["generate", str(finetuned[family]), "--prompt", "中国", "--max-new-tokens", "5"]) == 0
    )
    assert capsys.readouterr().out.startswith("中国")


def test_resume_needs_no_init_and_keeps_the_record(finetuned, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for path in finetuned["llama"].iterdir():
        if path.is_file():
            (run / path.name).write_bytes(path.read_bytes())
    before = json.loads((run / "config.json").read_text())
    assert main(["-q", "train", "gpt", "--resume", str(run), "--max-steps", "35"]) == 0
    after = json.loads((run / "config.json").read_text())
    assert after["step"] == 35 and after["init"] == before["init"]
    assert after["tokenizer"] == before["tokenizer"]
    genai.resume(run, max_steps=40, progress=False)
    assert json.loads((run / "config.json").read_text())["init"] == before["init"]


def test_python_api_and_init_from_a_genai_run(folders, finetuned, tmp_path):
    hf, text = folders
    model = GPT.from_huggingface(hf["gpt2"])
    config = GPTTrainConfig(out_dir=str(tmp_path / "py"), max_steps=3, batch_size=2, progress=False,
                            sample_tokens=0, val_fraction=0.0)  # fmt: skip
    train_gpt(model, TEXT, model.tokenizer, config)
    record = json.loads((tmp_path / "py" / "config.json").read_text())
    assert record["init"]["kind"] == "huggingface" and record["model_config"]["block_size"] == 64
    assert genai.load(tmp_path / "py").tokenizer.encode(CHINESE) == model.tokenizer.encode(CHINESE)
    # --init a genai run: its weights and tokenizer, the record naming its step (and its init)
    run = tmp_path / "again"
    argv = ["--init", str(finetuned["llama"]), "--text", str(text), "--dropout", "0.1"]
    assert main(["-q", "train", "gpt", *argv, *STEPS, *QUIET, "--out-dir", str(run)]) == 0
    record = json.loads((run / "config.json").read_text())
    source = json.loads((finetuned["llama"] / "config.json").read_text())
    assert record["init"] == {
        "source": str(finetuned["llama"].resolve()), "kind": "genai", "step": source["step"],
        "init": source["init"],
    }  # fmt: skip
    assert record["model_config"] == {**source["model_config"], "dropout": 0.1}
    assert train_losses(run)[0] < train_losses(finetuned["llama"])[0]  # it starts trained


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err  # before any weight is read
    return err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tokenizer", "bpe"], "--tokenizer cannot be given with --init"),
        (["--block-size", "128"], r"larger than the pretrained model's context \(64 tokens\)"),
        (["--n-layer", "3", "--n-embd", "64"], r"n_layer \(3 given, 2 in the model\), n_embd"),
        (["--recipe", "modern"], "--recipe cannot be given with --init"),
        (["--download", "gpt2"], "give --init .* or --download gpt2, not both"),
    ],
)
def test_bad_combinations_are_one_line_errors(folders, tmp_path, capsys, extra, message):
    hf, text = folders
    argv = ["train", "gpt", "--init", str(hf["llama"]), "--text", str(text), *extra]
    err = _error([*argv, "--out-dir", str(tmp_path / "r")], capsys)
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "r").exists()


def test_init_errors_name_the_problem(folders, finetuned, tmp_path, capsys):
    _, text = folders
    base = ["train", "gpt", "--text", str(text), "--out-dir", str(tmp_path / "r")]
    assert "no such folder" in _error([*base, "--init", str(tmp_path / "nowhere")], capsys)
    (tmp_path / "empty").mkdir()
    assert "neither a Hugging Face model" in _error(
        [*base, "--init", str(tmp_path / "empty")], capsys
    )
    hf_model("llama").save_pretrained(tmp_path / "bare")  # no tokenizer files
    capsys.readouterr()
    assert "the model has no tokenizer" in _error([*base, "--init", str(tmp_path / "bare")], capsys)
    err = _error(
        [*base, "--init", str(tmp_path / "x"), "--resume", str(finetuned["llama"])], capsys
    )
    assert "--init cannot be given with --resume" in err


def test_download_offline_names_the_flag(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(genai.__file__).parents[1]),
                                                      env.get("PYTHONPATH")]))  # fmt: skip
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    argv = ["train", "gpt", "--download", "Qwen/Qwen2.5-0.5B", "--text", str(text)]
    done = subprocess.run(
        [sys.executable, "-m", "genai.cli", *argv, "--out-dir", str(tmp_path / "r")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("genai: error: --download Qwen/Qwen2.5-0.5B: could not fetch")
    assert "pass a local folder with --init DIR instead" in done.stderr


# Chat models.


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    folder = save_folder(tmp_path_factory.mktemp("chat") / "qwen-chat", "llama", chat=True)
    return GPT.from_huggingface(folder)


MESSAGES = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "中国?"}]


def test_chat_messages_render_with_the_template(chat_model):
    tok = chat_model.tokenizer
    assert tok.chat_template == CHATML and tok.special_tokens == {"eos_token": "<|im_end|>"}
    text = render_chat(tok, MESSAGES)
    assert text == (
        "<|im_start|>system\nYou are brief.<|im_end|>\n<|im_start|>user\n中国?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert stop_ids(tok) == [tok.tokenizer.token_to_id("<|im_end|>")]
    back = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert render_chat(back, MESSAGES) == text and back.special_tokens == tok.special_tokens


def test_the_reply_stops_at_the_end_token(chat_model):
    tok = chat_model.tokenizer
    ids = tok.tokenizer.encode(render_chat(tok, MESSAGES), add_special_tokens=False).ids
    assert ids.count(tok.tokenizer.token_to_id("<|im_start|>")) == 3  # special tokens, whole
    greedy = chat_model.generate(torch.tensor([ids]), 20, temperature=0)[0, len(ids) :].tolist()
    # make the 4th greedy token the end token: the reply must stop before it
    end = greedy[3]
    tok.special_tokens["eos_token"] = tok.tokenizer.id_to_token(end)
    try:
        stops = stop_ids(tok)
        cut = next(i for i, t in enumerate(greedy) if t in stops)
        assert cut <= 3
        reply = generate_text(chat_model, messages=MESSAGES, max_new_tokens=20, temperature=0)
        assert reply == tok.decode(greedy[:cut])
        pieces = list(stream_text(chat_model, messages=MESSAGES, max_new_tokens=20, temperature=0))
        assert "".join(pieces) == reply
    finally:
        tok.special_tokens["eos_token"] = "<|im_end|>"


def test_a_saved_chat_model_keeps_its_template(chat_model, tmp_path, capsys):
    chat_model.save_pretrained(tmp_path / "saved")
    back = genai.load(tmp_path / "saved", device="cpu")
    assert back.tokenizer.chat_template == CHATML
    a = generate_text(back, messages=MESSAGES, max_new_tokens=8, temperature=0)
    assert a == generate_text(chat_model, messages=MESSAGES, max_new_tokens=8, temperature=0)
    one = [{"role": "user", "content": "中国?"}]
    reply = generate_text(back, messages=one, max_new_tokens=8, temperature=0)
    argv = ["generate", str(tmp_path / "saved"), "--chat", "中国?", "--max-new-tokens", "8"]
    assert main([*argv, "--temperature", "0", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == reply + "\n"


def test_chat_errors_are_one_line(folders, chat_model):
    plain = GPT.from_huggingface(folders[0]["llama"])
    with pytest.raises(ValueError, match="this tokenizer has no chat template") as error:
        generate_text(plain, messages=MESSAGES, max_new_tokens=2)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="not both"):
        generate_text(chat_model, "hi", messages=MESSAGES)
    with pytest.raises(ValueError, match=r"messages\[0\]\['content'\] must be text"):
        generate_text(chat_model, messages=[{"role": "user", "content": 3}])

"""One API across the three models: save/load, configs, callbacks, pictures, global state."""

import json

import pytest
import torch

import genai
from genai.data.text import BPETokenizer


def tiny_models():
    return {
        "vae": genai.VAE(genai.VAEConfig(arch="mlp", latent_dim=3, hidden_dims=(16,))),
        "gan": genai.GAN(genai.GANConfig(arch="mlp", latent_dim=4, g_width=8, d_width=8, num_classes=3)),
        "gpt": genai.GPT(genai.GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8)),
    }  # fmt: skip


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("kind", ["vae", "gan", "gpt"])
def test_save_pretrained_round_trip_is_exact(tmp_path, kind):
    model = tiny_models()[kind]
    cls = type(model)
    path = model.save_pretrained(tmp_path / kind)
    assert sorted(p.name for p in path.iterdir() if not p.name.startswith(".")) == [
        "config.json",
        "model.safetensors",
    ]
    loaded = cls.from_pretrained(path, device="cpu")
    assert same_weights(model, loaded) and loaded.config == model.config and not loaded.training
    assert same_weights(model, genai.load(path, "cpu"))  # the kind-agnostic loader reads it too
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    genai.load(path, "cpu")  # its random init is replaced by the weights: the RNG stays as it was
    assert torch.equal(torch.rand(3), expected)
    other = genai.VAE if cls is not genai.VAE else genai.GAN
    with pytest.raises(
        genai.CheckpointError, match=f"holds a {cls.__name__.upper()} .*, not a {other.__name__}"
    ):
        other.from_pretrained(path)
    model.save_pretrained(path)  # a saved model may be replaced by a new save


def test_gpt_from_huggingface_saves_with_its_tokenizer(tmp_path):
    transformers = pytest.importorskip("transformers")
    text = "China is a country in East Asia. 中国是东亚的一个国家。 " * 10
    bpe = BPETokenizer.train(text, vocab_size=280)
    folder = tmp_path / "hf"
    config = transformers.GPT2Config(vocab_size=280, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    bpe.tokenizer.save(str(folder / "tokenizer.json"))
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    gpt = genai.GPT.from_huggingface(folder)
    assert torch.equal(torch.rand(3), expected)  # the global RNG is where it was
    gpt.save_pretrained(tmp_path / "mine")
    back = genai.GPT.from_pretrained(tmp_path / "mine", device="cpu")
    assert same_weights(gpt, back)
    assert back.tokenizer.encode(text) == bpe.encode(text)
    a = genai.generate_text(gpt, "China", max_new_tokens=6, temperature=0)
    assert genai.generate_text(back, "China", max_new_tokens=6, temperature=0) == a


def test_save_pretrained_never_replaces_a_training_run(tmp_path, idx_root):
    data = genai.load_images("mnist", "train", root=idx_root)
    vae = tiny_models()["vae"]
    run = tmp_path / "run"
    genai.train_vae(
        vae, data, dict(out_dir=str(run), max_steps=2, batch_size=20, device="cpu", progress=False)
    )
    before = (run / "state.pt").read_bytes()
    with pytest.raises(FileExistsError, match="holds a training run"):
        vae.save_pretrained(run)
    assert (run / "state.pt").read_bytes() == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="genai did not write"):
        vae.save_pretrained(tmp_path / "mine")


def test_every_model_builds_without_a_config_and_from_a_dict():
    for cls, config_cls in (
        (genai.VAE, genai.VAEConfig),
        (genai.GAN, genai.GANConfig),
        (genai.GPT, genai.GPTConfig),
    ):
        assert cls().config == config_cls()
    assert genai.GPT({"n_layer": 1, "n_head": 2, "n_embd": 8}).config.n_layer == 1
    with pytest.raises(
        TypeError, match="config must be a VAEConfig \\(or a dict of its fields\\), got GANConfig"
    ):
        genai.VAE(genai.GANConfig())
    with pytest.raises(TypeError, match="VAEConfig has no field\\(s\\) latent"):
        genai.VAE({"latent": 3})
    with pytest.raises(TypeError, match="config must be a VAETrainConfig"):
        genai.train_vae(
            genai.VAE(), torch.zeros(4, 1, 28, 28, dtype=torch.uint8), genai.GANTrainConfig()
        )


def test_registry_names_every_model_with_its_config():
    from genai.registry import KINDS, kind_of, list_models

    assert list_models() == ["vae", "gpt", "gan", "diffusion"]
    for name, kind in KINDS.items():
        assert kind.name == name and kind.model.kind == name
        assert kind.config.__name__ == kind.model.__name__ + "Config"
        assert kind.train_config.__name__ == kind.model.__name__ + "TrainConfig"
        assert kind_of(genai.get_model(name)) == name


def test_training_length_has_one_meaning():
    cfg = genai.VAETrainConfig()
    assert cfg.total_steps(39) == genai.VAETrainConfig.default_max_steps  # neither given
    assert genai.VAETrainConfig(epochs=2).total_steps(39) == 78
    assert genai.VAETrainConfig(epochs=2, max_steps=5).total_steps(39) == 5  # max_steps wins
    assert genai.GPTTrainConfig(epochs=1).total_steps(7) == 7  # epochs counts for the GPT too


def test_callbacks_log_the_users_metrics(tmp_path, idx_root):
    data = genai.load_images("mnist", "train", root=idx_root)
    seen = []

    def my_metric(record):
        seen.append(record["step"])
        return {"twice_loss": 2 * record["loss"]} if record["split"] == "train" else None

    cfg = genai.VAETrainConfig(out_dir=str(tmp_path / "run"), max_steps=4, log_every=2, batch_size=20,
                               device="cpu", progress=False, eval_every=4)  # fmt: skip
    genai.train_vae(tiny_models()["vae"], data, cfg, eval_data=data, callbacks=[my_metric])
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == [2, 4] and seen == [2, 4, 4]
    assert all(r["twice_loss"] == 2 * r["loss"] for r in train)


def test_show_returns_a_picture_for_any_images():
    from PIL import Image

    image = genai.show(torch.rand(10, 1, 28, 28), nrow=5)
    assert isinstance(image, Image.Image) and image.size == (5 * 30 + 2, 2 * 30 + 2)
    rgb = genai.show(
        torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8).numpy(), nrow=3, scale=2
    )
    assert rgb.mode == "RGB" and rgb.size == (2 * (3 * 18 + 2), 2 * (18 + 2))
    white = genai.show(torch.ones(1, 1, 4, 4))
    assert white.getpixel((3, 3)) == 255
    with pytest.raises(ValueError, match=r"images must be \(N, C, H, W\)"):
        genai.show(torch.rand(2, 5, 4, 4))
    with pytest.raises(ValueError, match="nrow must be a positive integer"):
        genai.show(torch.rand(2, 1, 4, 4), nrow=0)


def test_training_never_touches_matplotlib_state(tmp_path, idx_root):
    import matplotlib

    matplotlib.use("svg")  # a user's choice
    data = genai.load_images("mnist", "train", root=idx_root)
    cfg = genai.VAETrainConfig(
        out_dir=str(tmp_path / "run"), max_steps=2, batch_size=20, device="cpu", progress=False
    )
    genai.train_vae(tiny_models()["vae"], data, cfg)
    assert matplotlib.get_backend().lower() == "svg"
    assert (tmp_path / "run" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_import_is_light():
    import subprocess
    import sys

    # tqdm.auto: in a notebook kernel without ipywidgets its import prints a TqdmWarning
    code = "import sys, genai; print(' '.join(m for m in ('torchvision', 'matplotlib', 'transformers', 'tqdm.auto') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_gpt_runs_remember_their_text(tmp_path, monkeypatch):
    from genai.cli import main

    corpus = tmp_path / "data" / "input.txt"
    corpus.parent.mkdir()
    corpus.write_text("To be, or not to be, that is the question. " * 30)
    monkeypatch.chdir(tmp_path)
    small = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--device", "cpu",
             "--no-progress", "--sample-tokens", "0"]  # fmt: skip
    assert main(["-q", "train", "gpt", "--corpus", "shakespeare", "--root", "data", "--max-steps", "2",
                 "--out-dir", "run", *small]) == 0  # fmt: skip
    data = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert data == {"source": "shakespeare", "root": str(tmp_path / "data")}
    monkeypatch.chdir(tmp_path / "data")  # elsewhere: the recorded absolute root is found
    assert main(["-q", "train", "gpt", "--resume", str(tmp_path / "run"), "--max-steps", "4"]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["step"] == 4


def test_one_set_of_sampling_defaults():
    """Every entry point takes sampling=SamplingConfig | None plus overrides of its fields, and
    builds the one object with sampling_config; the defaults are SAMPLING's alone."""
    import dataclasses
    import inspect

    from genai.cli import build_parser
    from genai.gpt.sampling import SAMPLING, SamplingConfig, sampling_config

    assert SamplingConfig() == SAMPLING
    assert (SAMPLING.temperature, SAMPLING.top_k, SAMPLING.top_p) == (0.8, None, 0.95)
    for fn in (genai.GPT.generate, genai.GPT.stream, genai.generate_text, genai.stream_text):
        params = inspect.signature(fn).parameters
        assert params["sampling"].default is None, fn
        assert any(p.kind is p.VAR_KEYWORD for p in params.values()), fn
        assert not {f.name for f in dataclasses.fields(SamplingConfig)} & set(params), fn
    assert sampling_config() is SAMPLING
    assert sampling_config(temperature=0) == SamplingConfig(temperature=0)
    assert sampling_config(SamplingConfig(top_k=5), top_p=None) == SamplingConfig(
        top_k=5, top_p=None
    )
    with pytest.raises(TypeError, match="unknown keyword argument 'temprature'"):
        sampling_config(temprature=1.0)
    with pytest.raises(TypeError, match="sampling must be a SamplingConfig or None, got float"):
        sampling_config(1.0)
    # The CLI's sampling flags are SamplingConfig's fields, with no defaults of their own.
    args = build_parser().parse_args(["generate", "run", "--temperature", "0.5"])
    assert args.temperature == 0.5 and not hasattr(args, "top_k") and not hasattr(args, "top_p")
    assert genai.GPTTrainConfig().sample_temperature == SAMPLING.temperature
    assert genai.GPTTrainConfig().sampling == SAMPLING
    assert genai.GPTTrainConfig(sample_temperature=0).sampling == SamplingConfig(temperature=0)
    with pytest.raises(ValueError, match="sample_temperature must be >= 0, got -1.0"):
        genai.GPTTrainConfig(sample_temperature=-1.0)
    with pytest.raises(ValueError, match="sample_temperature must be a finite number"):
        genai.GPTTrainConfig(sample_temperature=float("inf"))


def test_names_that_never_shipped_are_gone():
    with pytest.raises(AttributeError, match="has no attribute 'LMTrainConfig'"):
        genai.LMTrainConfig  # noqa: B018  (the renamed names never shipped)


def test_optimizers_share_one_vocabulary(tmp_path):
    """betas and weight_decay mean the same in every loop: decay matrices only."""
    from genai.gan.train import GANTask
    from genai.vae.train import VAETask

    x = torch.zeros(40, 1, 28, 28, dtype=torch.uint8)
    data = genai.data.dataset.as_dataset(x)
    for task in (
        VAETask(tiny_models()["vae"], data, genai.VAETrainConfig(betas=(0.8, 0.9), weight_decay=0.1, batch_size=8), None),
        GANTask(genai.GAN(genai.GANConfig(arch="mlp", latent_dim=4, g_width=8, d_width=8)), data,
                genai.GANTrainConfig(betas=(0.8, 0.9), weight_decay=0.1, batch_size=8)),
    ):  # fmt: skip
        task.setup(torch.device("cpu"))
        for opt in task.configure_optimizers().values():
            for group in opt.param_groups:
                assert group["betas"] == (0.8, 0.9)
                assert group["weight_decay"] == (
                    0.1 if all(p.dim() >= 2 for p in group["params"]) else 0.0
                )


def test_text_generation_names_a_bad_prompt_or_tokenizer():
    gpt = genai.GPT(genai.GPTConfig(vocab_size=10, n_layer=1, n_head=1, n_embd=8, block_size=8))
    chars = genai.CharTokenizer("abc")
    for prompt in (None, b"ab"):
        with pytest.raises(TypeError, match="prompt must be text"):
            genai.generate_text(gpt, prompt, 2, tokenizer=chars)
    with pytest.raises(
        ValueError, match="tokenizer has 256 tokens but the model's vocab_size is 10"
    ):
        genai.generate_text(gpt, "ab", 2, tokenizer=genai.ByteTokenizer())
    with pytest.raises(TypeError, match="VAEConfig has no field"):
        genai.get_model("vae", latnt_dim=3)


def test_every_model_draws_reproducibly_with_a_seed():
    vae = genai.VAE(genai.VAEConfig(arch="mlp", hidden_dims=(8,), latent_dim=2))
    gan = genai.GAN(genai.GANConfig(num_classes=3, g_width=8, d_width=8, latent_dim=4))
    gpt = genai.GPT(genai.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8))
    idx = torch.zeros(2, 1, dtype=torch.long)
    for draw in (
        lambda **kw: vae.sample(3, **kw),
        lambda **kw: gan.sample(4, **kw),
        lambda **kw: gpt.generate(idx, 6, temperature=1.0, **kw),
    ):
        assert torch.equal(draw(seed=1), draw(seed=1))
        assert torch.equal(draw(seed=1), draw(generator=torch.Generator().manual_seed(1)))
        assert not torch.equal(draw(seed=1), draw(seed=2))
        with pytest.raises(TypeError, match="seed must be an integer or None, got 1.5"):
            draw(seed=1.5)

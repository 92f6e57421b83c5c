"""genai in Jupyter: a short notebook executed with nbclient, as a user would run it."""

import base64
import io

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

CELLS = [
    "import matplotlib\nbackend = matplotlib.get_backend()\nimport torch\nimport genai",
    # synthetic 'digits': a bright bar whose row depends on the class
    "x = torch.zeros(256, 1, 28, 28, dtype=torch.uint8)\n"
    "for i in range(256):\n    x[i, 0, 3 + 2 * (i % 10) : 6 + 2 * (i % 10), 4:24] = 255\n"
    "vae = genai.VAE(genai.VAEConfig(arch='mlp', latent_dim=4, hidden_dims=(64,)))\n"
    "summary = genai.train_vae(vae, x, dict(out_dir='run', max_steps=300, batch_size=32,"
    " log_every=10, device='cpu'))",
    "genai.show(vae.sample(16), nrow=4, scale=2)",
    "assert matplotlib.get_backend() == backend, (backend, matplotlib.get_backend())\n"
    "print(summary['step'])",
]


def test_notebook_trains_and_shows_samples_inline(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    train_outputs = nb.cells[1].outputs
    # one progress display updated in place, not one output per update; no warnings
    assert len(train_outputs) <= 2, train_outputs
    assert not any("Warning" in str(o) for o in train_outputs), train_outputs
    picture = nb.cells[2].outputs
    assert picture and "image/png" in picture[0]["data"]
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(picture[0]["data"]["image/png"])))
    assert image.size == (2 * (4 * 30 + 2), 2 * (4 * 30 + 2))
    assert nb.cells[3].outputs[0]["text"].strip() == "300"

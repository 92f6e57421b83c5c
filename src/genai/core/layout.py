"""How the image models' conv nets scale with the image size (DCGAN's rule).

A conv net starts from a small square map (4x4, or 7x7 for the 28x28 family) and doubles it
with one stride-2 block per step up to the image: 28 = 7 * 2^2, 32 = 4 * 2^3, 64 = 4 * 2^4.
Widths halve as the resolution grows. The MLP variants take any size.
"""

from __future__ import annotations

BASES = (4, 7)
MAX_BLOCKS = 7  # up to 512x512 (4 * 2^7) and 896x896 (7 * 2^7)


def buildable_sizes() -> list[int]:
    """Square sizes the conv nets can build, ascending."""
    return sorted({base * 2**k for base in BASES for k in range(1, MAX_BLOCKS + 1)})


def check_image_shape(image_shape) -> tuple[int, int, int]:
    """``image_shape`` as a ``(C, H, W)`` tuple of ints with C = 1 or 3.

    Raises:
        ValueError: naming ``image_shape`` when it is not three positive sizes with C = 1 or 3.
    """
    shape = tuple(image_shape)
    if (
        len(shape) != 3
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape)
        or shape[0] not in (1, 3)
        or min(shape[1:]) <= 0
    ):
        raise ValueError(
            f"image_shape must be (C, H, W) with C = 1 or 3 and H, W > 0, got {image_shape!r}"
        )
    return shape


def conv_plan(image_shape: tuple[int, int, int]) -> tuple[int, int]:
    """``(base, blocks)``: the side of the first square map and the number of stride-2 blocks.

    Raises:
        ValueError: naming ``image_shape`` and the sizes that work, when the conv nets cannot
            build this shape.
    """
    _, h, w = image_shape
    for base in BASES:
        for blocks in range(1, MAX_BLOCKS + 1):
            if h == w == base * 2**blocks:
                return base, blocks
    sizes = ", ".join(map(str, buildable_sizes()[:9]))
    raise ValueError(
        f"image_shape {tuple(image_shape)}: the conv nets need square images of side 4 * 2^k or "
        f"7 * 2^k ({sizes}, ...); resize the data (image_size=...) or use arch='mlp'"
    )

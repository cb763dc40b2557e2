"""Image augmentation and normalisation of whole batches, on the device that holds them.

The standard CIFAR recipe (padded random crop, horizontal flip; cutout as an option) applied to
a batch tensor at once with index arithmetic: no per-image Python loop and no worker processes,
so a GPU run is not held up by the CPU. Every random draw comes from the ``torch.Generator``
passed in (on the batch's device), so a seeded generator gives the same batch every time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_float(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> float32 ``(N, C, H, W)``: scaled to [0, 1], minus ``mean``, over ``std`` (each ``(C,)``)."""
    mean = mean.to(images.device, torch.float32).view(1, -1, 1, 1)
    std = std.to(images.device, torch.float32).view(1, -1, 1, 1)
    return (images.to(torch.float32) / 255 - mean) / std


def augment(x: torch.Tensor, generator: torch.Generator, padding: int, flip: bool, cutout: int) -> torch.Tensor:
    """A randomly cropped, flipped and cut-out copy of the float batch ``x`` ``(N, C, H, W)``.

    - crop: each image is zero-padded by ``padding`` pixels per side and an H x W window is
      taken at an offset drawn uniformly from ``0..2*padding`` in each direction (a shift of
      up to ``padding`` pixels; zeros are the mean colour, as ``x`` is already normalised);
    - flip: each image is mirrored left-right with probability 1/2 when ``flip``;
    - cutout (DeVries & Taylor 2017): a ``cutout`` x ``cutout`` square centred on a uniformly
      drawn pixel is set to zero, clipped where it crosses the border.

    Draws, in this order, from ``generator``: crop offsets, flips, cutout centres (only those
    that are on). With ``padding=0, flip=False, cutout=0`` it returns ``x`` itself.
    """
    if padding < 0 or cutout < 0:
        raise ValueError(f"padding and cutout must be >= 0, got {padding} and {cutout}.")
    n, _, h, w = x.shape
    device = x.device
    if padding:
        p = padding
        padded = F.pad(x, (p, p, p, p))  # (N, C, H+2p, W+2p)
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=device)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=device)
        rows = dy[:, None] + torch.arange(h, device=device)  # (N, H): the padded rows each image keeps
        cols = dx[:, None] + torch.arange(w, device=device)  # (N, W)
        c = x.shape[1]
        x = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * p))  # (N, C, H, W+2p)
        x = x.gather(3, cols[:, None, None, :].expand(n, c, h, w))  # (N, C, H, W)
    if flip:
        mirrored = torch.rand(n, generator=generator, device=device) < 0.5  # (N,)
        x = torch.where(mirrored[:, None, None, None], x.flip(3), x)
    if cutout:
        cy = torch.randint(0, h, (n,), generator=generator, device=device)
        cx = torch.randint(0, w, (n,), generator=generator, device=device)
        top, left = cy - cutout // 2, cx - cutout // 2  # (N,): the square's first row and column (may be < 0)
        ys, xs = torch.arange(h, device=device), torch.arange(w, device=device)
        in_rows = (ys >= top[:, None]) & (ys < top[:, None] + cutout)  # (N, H)
        in_cols = (xs >= left[:, None]) & (xs < left[:, None] + cutout)  # (N, W)
        hole = in_rows[:, :, None] & in_cols[:, None, :]  # (N, H, W)
        x = x.masked_fill(hole[:, None], 0.0)
    return x


__all__ = ["augment", "to_float"]

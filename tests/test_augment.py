"""Batch augmentation: every output is a shift/flip of its input, both kinds happen, seeds repeat."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmark.training.augment import augment, to_float


def batch(n=64, c=3, h=8, w=8, seed=0):
    # Random values: every shift and flip of an image is distinct, so a match identifies it.
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)) + 0.5


def candidates(image, padding, flips):
    """Every (dy, dx, flipped) -> the hand-made shifted (and mirrored) copy of one (C, H, W) image."""
    c, h, w = image.shape
    padded = F.pad(image, (padding,) * 4)
    out = {}
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            window = padded[:, dy:dy + h, dx:dx + w]
            for flipped in flips:
                out[dy, dx, flipped] = window.flip(2) if flipped else window
    return out


def identify(x, y, padding, flips):
    """For each image, the (dy, dx, flipped) whose hand-made copy equals the output, or fail."""
    found = []
    for image, result in zip(x, y):
        matches = [k for k, v in candidates(image, padding, flips).items() if torch.equal(v, result)]
        assert len(matches) == 1, f"output is no single shift/flip of its input: {matches}"
        found.append(matches[0])
    return found


def test_crop_and_flip_are_exact_shifts_and_mirrors_and_both_happen():
    x = batch()
    y = augment(x, torch.Generator().manual_seed(1), padding=2, flip=True, cutout=0)
    assert y.shape == x.shape and y.dtype == x.dtype
    found = identify(x, y, padding=2, flips=(False, True))
    assert {f for _, _, f in found} == {False, True}
    assert len({(dy, dx) for dy, dx, _ in found}) >= 10  # of the 25 offsets, many occur in 64 draws


def test_crop_only_never_flips_and_flip_only_never_shifts():
    x = batch()
    found = identify(x, augment(x, torch.Generator().manual_seed(2), padding=1, flip=False, cutout=0), 1, (False, True))
    assert not any(f for _, _, f in found) and len({(dy, dx) for dy, dx, _ in found}) == 9
    y = augment(x, torch.Generator().manual_seed(3), padding=0, flip=True, cutout=0)
    mirrored = [torch.equal(b, a.flip(2)) for a, b in zip(x, y)]
    kept = [torch.equal(b, a) for a, b in zip(x, y)]
    assert all(m != k for m, k in zip(mirrored, kept)) and 16 < sum(mirrored) < 48


def test_same_seed_same_batch_other_seed_other_batch():
    x = batch()
    a = augment(x, torch.Generator().manual_seed(7), padding=2, flip=True, cutout=3)
    b = augment(x, torch.Generator().manual_seed(7), padding=2, flip=True, cutout=3)
    c = augment(x, torch.Generator().manual_seed(8), padding=2, flip=True, cutout=3)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("size", [1, 3, 4])
def test_cutout_zeroes_one_square_of_the_given_side_clipped_at_the_border(size):
    x = batch(n=200, h=9, w=9)  # no zeros in the input: the zeros are the hole
    y = augment(x, torch.Generator().manual_seed(4), padding=0, flip=False, cutout=size)
    hole = y == 0  # (N, C, H, W)
    assert (hole == hole[:, :1]).all()  # the same pixels in every channel
    assert torch.equal(y[~hole], x[~hole])  # nothing else changed
    full = 0
    for mask in hole[:, 0]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert len(rows) > 0  # the centre is inside the image, so some of the square is too
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert mask[top:bottom, left:right].all() and mask.sum() == (bottom - top) * (right - left)  # a rectangle
        assert bottom - top <= size and right - left <= size
        # Smaller than the side only where the square crosses the border.
        assert bottom - top == size or top == 0 or bottom == 9
        assert right - left == size or left == 0 or right == 9
        full += int(mask.sum() == size * size)
    assert full > 50


def test_all_off_changes_nothing():
    x = batch()
    assert augment(x, torch.Generator().manual_seed(0), padding=0, flip=False, cutout=0) is x


def test_negative_settings_are_refused():
    with pytest.raises(ValueError, match="padding and cutout"):
        augment(batch(), torch.Generator(), padding=-1, flip=False, cutout=0)


def test_to_float_scales_and_normalises_per_channel():
    images = torch.tensor([[[[0, 255]], [[51, 102]]]], dtype=torch.uint8)  # (1, 2, 1, 2)
    mean, std = torch.tensor([0.5, 0.2]), torch.tensor([0.5, 0.1])
    out = to_float(images, mean, std)
    assert out.dtype == torch.float32 and out.shape == (1, 2, 1, 2)
    torch.testing.assert_close(out, torch.tensor([[[[-1.0, 1.0]], [[0.0, 2.0]]]]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_the_gpu_with_a_gpu_generator():
    x = batch().cuda()
    a = augment(x, torch.Generator(device="cuda").manual_seed(5), padding=2, flip=True, cutout=0)
    b = augment(x, torch.Generator(device="cuda").manual_seed(5), padding=2, flip=True, cutout=0)
    assert a.device == x.device and torch.equal(a, b)
    found = identify(x.cpu(), a.cpu(), padding=2, flips=(False, True))
    assert {f for _, _, f in found} == {False, True}
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, device="cuda")
    assert to_float(images, torch.full((3,), 0.5), torch.full((3,), 0.25)).device == images.device

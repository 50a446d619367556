"""Vision ops, as a computer-vision library's suite checks them: warps sampled near pixel
centres, ReLU networks, clipped descriptors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck


def _affine_grid(theta: torch.Tensor, size: tuple[int, int, int, int]) -> torch.Tensor:
    return F.affine_grid(theta, list(size), align_corners=False)


def warp_affine(img: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = _affine_grid(theta, tuple(img.shape))  # type: ignore[arg-type]
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def test_warp_affine_sampled_near_pixel_centres():
    torch.manual_seed(0)
    img = torch.rand(2, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    # a translation by 1e-5 of a pixel: every sample lies 1e-5 from a pixel centre, where
    # bilinear interpolation has its kinks
    shift = 2.0 / 12 * 1e-5
    theta = torch.tensor([[[1.0, 0.0, shift], [0.0, 1.0, -shift]]] * 2, dtype=torch.float64)
    theta.requires_grad_(True)
    assert gradcheck(warp_affine, (img, theta), fast_mode=True)


def test_grid_sample_points_next_to_centres():
    torch.manual_seed(1)
    img = torch.rand(1, 2, 10, 10, dtype=torch.float64, requires_grad=True)
    centres = (torch.arange(10, dtype=torch.float64) * 2 + 1) / 10 - 1
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    grid = torch.stack([xs, ys], dim=-1)[None] + 3e-6 * torch.randn(
        1, 10, 10, 2, dtype=torch.float64
    )
    grid.requires_grad_(True)

    def sample(image: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(image, g, mode="bilinear", align_corners=False)

    assert gradcheck(sample, (img, grid), eps=1e-6, atol=1e-4, fast_mode=True)


class SuperResolution(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 3 * 4, 3, padding=1),
        )
        self.shuffle = torch.nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x))


def test_relu_super_resolution_net():
    torch.manual_seed(2)
    model = SuperResolution().double()
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    assert gradcheck(model, (x,), fast_mode=True)


def sift_like(patches: torch.Tensor, tau: float = 0.2) -> torch.Tensor:
    desc = F.normalize(patches.flatten(1), dim=1)
    desc = torch.max(desc, torch.tensor(tau, dtype=desc.dtype))  # max(x, tau), as descriptors clip
    return F.normalize(desc, dim=1)


def test_max_tau_descriptor():
    torch.manual_seed(3)
    patches = torch.rand(4, 1, 8, 8, dtype=torch.float64) + 0.05
    patches.requires_grad_(True)
    assert gradcheck(sift_like, (patches,), fast_mode=True)


class Descriptor(torch.nn.Module):
    """A small patch descriptor that standardises its input patches first."""

    def __init__(self, detach_normalisation: bool) -> None:
        super().__init__()
        self.detach = detach_normalisation
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1),
            torch.nn.Tanh(),
            torch.nn.Conv2d(8, 8, 3, stride=2, padding=1),
            torch.nn.Tanh(),
        )
        self.head = torch.nn.Linear(8 * 64, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True) + 1e-7
        if self.detach:
            mean, std = mean.detach(), std.detach()
        x = (x - mean) / std
        return F.normalize(self.head(self.features(x).flatten(1)), dim=1)


@pytest.mark.parametrize("detach", [False, True], ids=["right", "detached_normalisation"])
def test_descriptor(detach):
    torch.manual_seed(4)
    net = Descriptor(detach).double()
    patches = torch.rand(8, 1, 16, 16, dtype=torch.float64, requires_grad=True)
    # the second case is the planted defect: its gradient is wrong
    assert gradcheck(net, (patches,), eps=1e-6, atol=1e-4, fast_mode=True)

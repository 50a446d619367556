"""Losses, histograms, metrics and geometry, as library suites check them."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F


def soft_histogram(x: torch.Tensor, bins: torch.Tensor, bandwidth: float) -> torch.Tensor:
    return torch.exp(-0.5 * ((x[..., None] - bins) / bandwidth) ** 2).sum(dim=-2)


def test_soft_histogram_far_from_bins():
    torch.manual_seed(9)
    # values in [0, 0.1]; bins at 0.5 and beyond: every gradient is about 1e-11
    x = (0.1 * torch.rand(2, 40, dtype=torch.float64)).requires_grad_(True)
    bins = torch.linspace(0.5, 1.0, 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(soft_histogram, (x, bins, 0.06), fast_mode=True)


def ssim_like(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    c1, c2 = 0.01**2, 0.03**2
    window = torch.ones(1, 1, 5, 5, dtype=a.dtype) / 25
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    var_a = F.conv2d(a * a, window) - mu_a**2
    var_b = F.conv2d(b * b, window) - mu_b**2
    cov = F.conv2d(a * b, window) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return 1 - (num / den).mean()


def test_ssim_of_an_image_with_itself():
    torch.manual_seed(10)
    img = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    a = img.clone().requires_grad_(True)
    # at a == b SSIM is at its maximum: the gradient is zero up to rounding (about 1e-13)
    assert torch.autograd.gradcheck(ssim_like, (a, img), eps=1e-6, atol=1e-5, fast_mode=True)


def test_polynomial_with_double_roots_at_integers():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0, 0.0, -1.0], dtype=torch.float64, requires_grad=True)

    def p(v: torch.Tensor) -> torch.Tensor:
        return ((v * (v - 1) * (v + 1)) ** 2 / 7).sum()

    assert torch.autograd.gradcheck(p, (x,))


def test_module_as_func():
    torch.manual_seed(11)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 10), torch.nn.Tanh(), torch.nn.Linear(10, 2), torch.nn.Softplus()
    ).double()
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,), eps=1e-6, atol=1e-4)


@dataclasses.dataclass
class PinholeCamera:
    focal: float
    centre: tuple[float, float]


def project(
    points: torch.Tensor,
    depth_scale: int,
    normalise: bool,
    camera: PinholeCamera,
    shift: torch.Tensor,
) -> torch.Tensor:
    z = points[..., 2:] * depth_scale + 2.0
    uv = camera.focal * points[..., :2] / z + torch.tensor(camera.centre, dtype=points.dtype)
    if normalise:
        uv = uv / camera.focal
    return uv + shift


def test_list_of_mixed_inputs():
    torch.manual_seed(12)
    points = torch.rand(7, 3, dtype=torch.float64, requires_grad=True)
    shift = torch.rand(2, dtype=torch.float64, requires_grad=True)
    camera = PinholeCamera(focal=50.0, centre=(32.0, 24.0))
    inputs = [points, 2, True, camera, shift]
    assert torch.autograd.gradcheck(project, inputs, eps=1e-6, atol=1e-4, fast_mode=True)


def test_cross_entropy_with_int64_targets():
    torch.manual_seed(13)
    logits = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 4, (6,), dtype=torch.int64)
    weight = torch.rand(4, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        F.cross_entropy, (logits, target, weight), eps=1e-6, atol=1e-5, check_forward_ad=False
    )


def rgb_to_hue_like(z: torch.Tensor) -> torch.Tensor:
    # a branch whose value jumps at z = 2e-8, just beside the test point z = 0
    return torch.where(z > 2e-8, 2 * z + 1e-3, 2 * z).sum() + (z**3).sum()


def test_eps_small_next_to_a_discontinuity():
    z = torch.tensor([0.0, 0.0, 0.5, -0.25], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rgb_to_hue_like, (z,), eps=1e-8, atol=1e-5, fast_mode=True)


def validated_area(corners: torch.Tensor) -> torch.Tensor:
    """Area of boxes given as 4 corners each, after a validity check as geometry libraries do."""
    width = corners[:, 1, 0] - corners[:, 0, 0]
    width_bottom = corners[:, 2, 0] - corners[:, 3, 0]
    height = corners[:, 3, 1] - corners[:, 0, 1]
    height_right = corners[:, 2, 1] - corners[:, 1, 1]
    if not (
        torch.allclose(width, width_bottom, rtol=1e-5, atol=0)
        and torch.allclose(height, height_right, rtol=1e-5, atol=0)
    ):
        raise ValueError("boxes must be rectangles: opposite edges differ")
    return width * height


def _boxes() -> torch.Tensor:
    x0 = torch.tensor([10.0, 40.0, 5.0], dtype=torch.float64)
    y0 = torch.tensor([20.0, 8.0, 30.0], dtype=torch.float64)
    w = torch.tensor([30.0, 12.0, 50.0], dtype=torch.float64)
    h = torch.tensor([15.0, 40.0, 25.0], dtype=torch.float64)
    return torch.stack(
        [
            torch.stack([x0, y0], -1),
            torch.stack([x0 + w, y0], -1),
            torch.stack([x0 + w, y0 + h], -1),
            torch.stack([x0, y0 + h], -1),
        ],
        dim=1,
    )


def test_box_validity_check_with_tight_rtol():
    corners = _boxes().requires_grad_(True)
    assert torch.autograd.gradcheck(validated_area, (corners,), fast_mode=True)


def test_invalid_boxes_raise_the_libraries_own_error():
    corners = _boxes()
    corners[0, 2, 0] += 1.0
    with pytest.raises(ValueError, match="rectangles"):
        torch.autograd.gradcheck(validated_area, (corners.requires_grad_(True),))

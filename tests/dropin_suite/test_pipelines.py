"""Pipelines of many small torch ops, as a computer-vision library's suite checks them: colour
conversions, filters, warps, losses, keypoints, camera models. One call of each function runs
tens of ops (0.1 to 1 ms), so the number of evaluations dominates a check's cost, not the
checker's own Python. Every gradient here is autograd of smooth code: each test should pass.

The inputs keep clear of the few kinks the code has (channel ties in max/min, clamps, sRGB
thresholds, bilinear interpolation at integer sample coordinates), as these suites' inputs do.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

# ---------------------------------------------------------------------------------------------
# colour


def rgb_to_hsv(image: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Hue in radians, as kornia.color.rgb_to_hsv computes it: one formula per max channel."""
    max_rgb, argmax_rgb = image.max(-3)
    min_rgb, _ = image.min(-3)
    delta = max_rgb - min_rgb
    s = delta / (max_rgb + eps)
    delta = torch.where(delta == 0, torch.ones_like(delta), delta)
    rc, gc, bc = torch.unbind(max_rgb.unsqueeze(-3) - image, dim=-3)
    h1 = bc - gc
    h2 = (rc - bc) + 2.0 * delta
    h3 = (gc - rc) + 4.0 * delta
    h = torch.stack((h1, h2, h3), dim=-3) / delta.unsqueeze(-3)
    h = torch.gather(h, dim=-3, index=argmax_rgb.unsqueeze(-3)).squeeze(-3)
    h = 2 * math.pi * ((h / 6.0) % 1.0)
    return torch.stack((h, s, max_rgb), dim=-3)


def hsv_to_rgb(image: torch.Tensor) -> torch.Tensor:
    h = image[..., 0, :, :] / (2 * math.pi)
    s, v = image[..., 1, :, :], image[..., 2, :, :]
    sector = torch.floor(h * 6) % 6
    f = (h * 6) % 6 - sector
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    index = sector.long()
    table = torch.stack((v, q, p, p, t, v, t, v, v, q, p, p, p, p, t, v, v, q), dim=-3)
    return torch.gather(table, -3, torch.stack([index, index + 6, index + 12], dim=-3))


def adjust_hue_saturation(
    image: torch.Tensor, hue: torch.Tensor, saturation: torch.Tensor
) -> torch.Tensor:
    """rgb -> hsv, hue rotated and saturation scaled per batch element, -> rgb."""
    h, s, v = torch.unbind(rgb_to_hsv(image), dim=-3)
    h = (h + hue[:, None, None]) % (2 * math.pi)
    s = torch.clamp(s * saturation[:, None, None], 0.0, 1.0)
    return hsv_to_rgb(torch.stack((h, s, v), dim=-3))


def test_hsv_hue_and_saturation_adjustment():
    torch.manual_seed(20)
    image = (0.1 + 0.8 * torch.rand(2, 3, 8, 8, dtype=torch.float64)).requires_grad_(True)
    hue = torch.tensor([0.4, -1.3], dtype=torch.float64, requires_grad=True)
    saturation = torch.tensor([0.8, 1.1], dtype=torch.float64, requires_grad=True)
    assert gradcheck(
        adjust_hue_saturation, (image, hue, saturation), raise_exception=True, fast_mode=True
    )


_RGB_TO_XYZ = [
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
]
_WHITE = [0.950456, 1.0, 1.088754]


def rgb_to_lab(image: torch.Tensor) -> torch.Tensor:
    lin = torch.where(
        image > 0.04045, ((image.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4, image / 12.92
    )
    matrix = torch.tensor(_RGB_TO_XYZ, dtype=image.dtype)
    xyz = torch.einsum("ij,bjhw->bihw", matrix, lin)
    xyz = xyz / torch.tensor(_WHITE, dtype=image.dtype)[:, None, None]
    f = torch.where(xyz > 0.008856, xyz.clamp(min=0.008856) ** (1 / 3), 7.787 * xyz + 4 / 29)
    x, y, z = torch.unbind(f, dim=-3)
    return torch.stack((116 * y - 16, 500 * (x - y), 200 * (y - z)), dim=-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    L, a, b = torch.unbind(lab, dim=-3)
    fy = (L + 16) / 116
    f = torch.stack((fy + a / 500, fy, fy - b / 200), dim=-3)
    xyz = torch.where(f > 0.2068966, f**3, (f - 4 / 29) / 7.787)
    xyz = xyz * torch.tensor(_WHITE, dtype=lab.dtype)[:, None, None]
    inverse = torch.linalg.inv(torch.tensor(_RGB_TO_XYZ, dtype=lab.dtype))
    lin = torch.einsum("ij,bjhw->bihw", inverse, xyz)
    rgb = torch.where(
        lin > 0.0031308, 1.055 * lin.clamp(min=0.0031308) ** (1 / 2.4) - 0.055, 12.92 * lin
    )
    return rgb.clamp(0.0, 1.0)


def rotate_lch_hue(image: torch.Tensor, angle: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """rgb -> Lab -> LCh (chroma with an eps guard, hue by atan2), hue rotated, -> rgb."""
    L, a, b = torch.unbind(rgb_to_lab(image), dim=-3)
    chroma = torch.sqrt(a * a + b * b + eps)
    hue = torch.atan2(b, a) + angle
    return lab_to_rgb(torch.stack((L, chroma * torch.cos(hue), chroma * torch.sin(hue)), dim=-3))


def test_lch_hue_rotation():
    torch.manual_seed(21)
    # well inside the gamut: a small rotation keeps every pixel clear of the final clamp
    image = (0.3 + 0.4 * torch.rand(1, 3, 6, 6, dtype=torch.float64)).requires_grad_(True)
    angle = torch.tensor(0.15, dtype=torch.float64, requires_grad=True)
    assert gradcheck(rotate_lch_hue, (image, angle), eps=1e-6, atol=1e-4, fast_mode=True)


# ---------------------------------------------------------------------------------------------
# filters


def gaussian_kernel1d(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size) kernels, one per sigma in (B,), normalised to sum 1; differentiable in sigma."""
    x = torch.arange(size, dtype=sigma.dtype) - (size - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * sigma[:, None] ** 2))
    return kernel / kernel.sum(-1, keepdim=True)


def gaussian_blur2d(image: torch.Tensor, sigma: torch.Tensor, size: int = 5) -> torch.Tensor:
    """Separable blur with reflect padding; sigma is (B, 2): (sigma_x, sigma_y) per image."""
    b, c, h, w = image.shape
    kx = gaussian_kernel1d(sigma[:, 0], size).repeat_interleave(c, 0)
    ky = gaussian_kernel1d(sigma[:, 1], size).repeat_interleave(c, 0)
    pad = size // 2
    x = F.pad(image, (pad, pad, pad, pad), mode="reflect").reshape(1, b * c, h + 2 * pad, -1)
    x = F.conv2d(x, kx[:, None, None, :], groups=b * c)
    x = F.conv2d(x, ky[:, None, :, None], groups=b * c)
    return x.reshape(b, c, h, w)


def test_gaussian_blur_with_differentiated_sigma():
    torch.manual_seed(22)
    image = torch.rand(2, 3, 10, 10, dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor([[1.0, 1.5], [0.7, 1.2]], dtype=torch.float64, requires_grad=True)
    assert gradcheck(gaussian_blur2d, (image, sigma), raise_exception=True, fast_mode=True)


def rgb_to_grayscale(image: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype)
    return (image * weights[:, None, None]).sum(-3, keepdim=True)


def spatial_gradient(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel derivatives per channel, replicate padding, normalised by the kernel's L1 norm."""
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=image.dtype)
    kernels = torch.stack((sobel, sobel.T))[:, None] / 8
    c = image.shape[1]
    padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
    out = F.conv2d(padded, kernels.repeat(c, 1, 1, 1), groups=c)
    return out[:, 0::2], out[:, 1::2]


def canny_gradients(image: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """The first stage of Canny: blur, Sobel, magnitude sqrt(gx^2 + gy^2 + eps), and the edge
    orientation as (cos 2theta, sin 2theta), which is smooth where theta = atan2 wraps."""
    gray = rgb_to_grayscale(image)
    sigma = torch.ones(image.shape[0], 2, dtype=image.dtype)
    gx, gy = spatial_gradient(gaussian_blur2d(gray, sigma))
    magnitude = torch.sqrt(gx * gx + gy * gy + eps)
    theta = torch.atan2(gy, gx)
    return magnitude, torch.cat((torch.cos(2 * theta), torch.sin(2 * theta)), dim=1)


def test_canny_gradient_magnitude_and_orientation():
    torch.manual_seed(23)
    image = torch.rand(1, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    assert gradcheck(canny_gradients, (image,), eps=1e-6, atol=1e-4, fast_mode=True)


def harris_response(image: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """det(M) - k trace(M)^2 of the Gaussian-weighted structure tensor M."""
    dx, dy = spatial_gradient(image)
    sigma = torch.ones(image.shape[0], 2, dtype=image.dtype)
    dx2 = gaussian_blur2d(dx * dx, sigma, 7)
    dy2 = gaussian_blur2d(dy * dy, sigma, 7)
    dxy = gaussian_blur2d(dx * dy, sigma, 7)
    det = dx2 * dy2 - dxy * dxy
    trace = dx2 + dy2
    return det - k[:, None, None, None] * trace**2


def test_harris_corner_response():
    torch.manual_seed(24)
    image = torch.rand(2, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    k = torch.tensor([0.04, 0.06], dtype=torch.float64, requires_grad=True)
    assert gradcheck(harris_response, (image, k), raise_exception=True, fast_mode=True)


# ---------------------------------------------------------------------------------------------
# warps


def warp_perspective(image: torch.Tensor, homography: torch.Tensor) -> torch.Tensor:
    """Each output pixel p samples the input at H^-1 p (pixel coordinates), bilinearly."""
    b, _, h, w = image.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=image.dtype), torch.arange(w, dtype=image.dtype), indexing="ij"
    )
    dst = torch.stack((xs, ys, torch.ones_like(xs)), dim=-1).reshape(1, -1, 3)
    src = dst @ torch.linalg.inv(homography).transpose(1, 2)
    z = src[..., 2:]
    scale = torch.where(z.abs() > 1e-8, 1.0 / (z + 1e-8), torch.ones_like(z))
    xy = src[..., :2] * scale
    size = torch.tensor([w - 1, h - 1], dtype=image.dtype)
    grid = (2 * xy / size - 1).reshape(b, h, w, 2)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _homographies() -> torch.Tensor:
    """Rotations by a few degrees, scalings and sub-pixel shifts, with a little perspective; the
    shifts were chosen so that no sample of a 9 x 9 image lands within 0.02 pixel of an integer."""
    out = []
    warps = ((0.05, 0.97, -0.15, 0.43, 2e-3), (-0.08, 1.04, 0.03, -0.38, -1e-3))
    for angle, scale, tx, ty, px in warps:
        cos, sin = math.cos(angle), math.sin(angle)
        out.append(
            [[scale * cos, -scale * sin, tx], [scale * sin, scale * cos, ty], [px, -px / 2, 1.0]]
        )
    return torch.tensor(out, dtype=torch.float64)


def _distance_to_nearest_integer(values: torch.Tensor) -> float:
    return float((values - values.round()).abs().min())


def test_homography_warp():
    torch.manual_seed(25)
    image = torch.rand(2, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    homography = _homographies().requires_grad_(True)
    # bilinear sampling has kinks where a sample coordinate is an integer: these warps keep every
    # sample at least 0.02 pixel from one (checked here, so the test stays what it says)
    ys, xs = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    dst = torch.stack((xs, ys, torch.ones_like(xs)), dim=-1).reshape(1, -1, 3).double()
    src = dst @ torch.linalg.inv(homography.detach()).transpose(1, 2)
    assert _distance_to_nearest_integer(src[..., :2] / src[..., 2:]) > 0.02
    assert gradcheck(warp_perspective, (image, homography), fast_mode=True)


def undistort_points(
    points: torch.Tensor, camera: torch.Tensor, distortion: torch.Tensor, iterations: int = 5
) -> torch.Tensor:
    """Inverts the Brown-Conrady model (k1, k2, p1, p2, k3) by fixed-point iteration, as
    OpenCV's undistortPoints does, and maps the result back to pixels with the same camera."""
    fx, fy = camera[:, 0:1, 0], camera[:, 1:2, 1]
    cx, cy = camera[:, 0:1, 2], camera[:, 1:2, 2]
    k1, k2, p1, p2, k3 = (distortion[:, i : i + 1] for i in range(5))
    x0 = (points[..., 0] - cx) / fx
    y0 = (points[..., 1] - cy) / fy
    x, y = x0, y0
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x = (x0 - dx) / radial
        y = (y0 - dy) / radial
    return torch.stack((fx * x + cx, fy * y + cy), dim=-1)


def test_lens_undistortion_by_fixed_point_iteration():
    torch.manual_seed(26)
    points = torch.rand(2, 12, 2, dtype=torch.float64) * torch.tensor([320.0, 240.0])
    points.requires_grad_(True)
    camera = torch.tensor(
        [[[200.0, 0.0, 160.0], [0.0, 210.0, 120.0], [0.0, 0.0, 1.0]]] * 2, dtype=torch.float64
    )
    camera[1, :2, 2] += torch.tensor([3.0, -2.0], dtype=torch.float64)
    camera.requires_grad_(True)
    distortion = torch.tensor(
        [[-0.2, 0.05, 1e-3, -2e-3, 0.01], [0.1, -0.02, -1e-3, 1e-3, 0.0]], dtype=torch.float64
    ).requires_grad_(True)
    assert gradcheck(
        undistort_points,
        (points, camera, distortion),
        eps=1e-6,
        atol=1e-4,
        raise_exception=True,
        fast_mode=True,
    )


def quaternion_to_rotation_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    """(B, 4) quaternions (w, x, y, z), normalised first, to (B, 3, 3) rotations."""
    w, x, y, z = torch.unbind(F.normalize(quaternion, dim=-1, eps=1e-12), dim=-1)
    tx, ty, tz = 2 * x, 2 * y, 2 * z
    twx, twy, twz = tx * w, ty * w, tz * w
    txx, txy, txz = tx * x, ty * x, tz * x
    tyy, tyz, tzz = ty * y, tz * y, tz * z
    one = torch.ones_like(w)
    rows = (
        one - (tyy + tzz), txy - twz, txz + twy,
        txy + twz, one - (txx + tzz), tyz - twx,
        txz - twy, tyz + twx, one - (txx + tyy),
    )  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(-1, 3, 3)


def project_points(
    quaternion: torch.Tensor,
    points: torch.Tensor,
    translation: torch.Tensor,
    intrinsics: torch.Tensor,
    near: float,
) -> torch.Tensor:
    rotation = quaternion_to_rotation_matrix(quaternion)
    camera_points = points @ rotation.transpose(1, 2) + translation[:, None, :]
    z = camera_points[..., 2:].clamp(min=near)
    uv = camera_points[..., :2] / z
    return uv * intrinsics[:, None, [0, 1], [0, 1]] + intrinsics[:, None, [0, 1], [2, 2]]


def test_quaternion_rotation_projection_with_a_list_of_inputs():
    torch.manual_seed(27)
    quaternion = torch.tensor([[0.9, 0.1, -0.2, 0.3], [0.7, -0.3, 0.4, 0.1]], dtype=torch.float64)
    quaternion.requires_grad_(True)
    points = torch.rand(2, 6, 3, dtype=torch.float64) - 0.5
    points.requires_grad_(True)
    translation = torch.tensor([[0.1, -0.2, 4.0], [-0.3, 0.1, 5.0]], dtype=torch.float64)
    translation.requires_grad_(True)
    intrinsics = torch.tensor([[[300.0, 0.0, 64.0], [0.0, 300.0, 48.0], [0.0, 0.0, 1.0]]] * 2)
    inputs = [quaternion, points, translation, intrinsics.double(), 0.1]
    assert gradcheck(project_points, inputs, eps=1e-6, atol=1e-4, rtol=1e-3)


# ---------------------------------------------------------------------------------------------
# losses and keypoints


def _charbonnier(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt(x * x + eps * eps)


def edge_aware_smoothness(disparity: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Total variation of the mean-normalised disparity, first and second order, down-weighted
    across image edges."""
    disparity = disparity / (disparity.mean(dim=(2, 3), keepdim=True) + 1e-7)
    dx = disparity[..., :, 1:] - disparity[..., :, :-1]
    dy = disparity[..., 1:, :] - disparity[..., :-1, :]
    dxx = dx[..., :, 1:] - dx[..., :, :-1]
    dyy = dy[..., 1:, :] - dy[..., :-1, :]
    image_dx = _charbonnier(image[..., :, 1:] - image[..., :, :-1]).mean(1, keepdim=True)
    image_dy = _charbonnier(image[..., 1:, :] - image[..., :-1, :]).mean(1, keepdim=True)
    weight_x, weight_y = torch.exp(-image_dx), torch.exp(-image_dy)
    first = (_charbonnier(dx) * weight_x).mean() + (_charbonnier(dy) * weight_y).mean()
    second = (_charbonnier(dxx) * weight_x[..., :, 1:]).mean()
    second = second + (_charbonnier(dyy) * weight_y[..., 1:, :]).mean()
    return first + 0.5 * second


def test_edge_aware_total_variation():
    torch.manual_seed(28)
    disparity = (0.5 + torch.rand(1, 1, 5, 5, dtype=torch.float64)).requires_grad_(True)
    image = torch.rand(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(edge_aware_smoothness, (disparity, image), raise_exception=True)


def local_ncc(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """1 - mean local normalised cross-correlation, local moments under a Gaussian window."""
    sigma = torch.full((a.shape[0], 2), 1.5, dtype=a.dtype)

    def local_mean(x: torch.Tensor) -> torch.Tensor:
        return gaussian_blur2d(x, sigma, 7)

    mu_a, mu_b = local_mean(a), local_mean(b)
    var_a = local_mean(a * a) - mu_a**2
    var_b = local_mean(b * b) - mu_b**2
    cov = local_mean(a * b) - mu_a * mu_b
    return 1 - (cov / torch.sqrt(var_a * var_b + eps)).mean()


def test_normalised_cross_correlation():
    torch.manual_seed(29)
    a = torch.rand(2, 1, 10, 10, dtype=torch.float64, requires_grad=True)
    noise = torch.rand(2, 1, 10, 10, dtype=torch.float64)
    b = (0.6 * a.detach() + 0.4 * noise).requires_grad_(True)
    assert gradcheck(local_ncc, (a, b), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


def spatial_soft_argmax2d(heatmap: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Per channel, under softmax(temperature * heatmap): the expected (x, y) in [-1, 1], the
    spread sqrt(var_x + var_y) and the blob's orientation 0.5 atan2(2 cov_xy, var_x - var_y):
    (B, K, 4)."""
    b, k, h, w = heatmap.shape
    probs = torch.softmax(temperature * heatmap.reshape(b, k, -1), dim=-1).reshape(b, k, h, w)
    ys, xs = torch.meshgrid(
        torch.linspace(-1, 1, h, dtype=heatmap.dtype),
        torch.linspace(-1, 1, w, dtype=heatmap.dtype),
        indexing="ij",
    )
    mean_x = (probs * xs).sum((-2, -1))
    mean_y = (probs * ys).sum((-2, -1))
    cx = xs - mean_x[..., None, None]
    cy = ys - mean_y[..., None, None]
    var_x = (probs * cx * cx).sum((-2, -1))
    var_y = (probs * cy * cy).sum((-2, -1))
    cov_xy = (probs * cx * cy).sum((-2, -1))
    spread = torch.sqrt(var_x + var_y + 1e-10)
    orientation = 0.5 * torch.atan2(2 * cov_xy, var_x - var_y)
    return torch.stack((mean_x, mean_y, spread, orientation), dim=-1)


def test_spatial_soft_argmax():
    torch.manual_seed(30)
    heatmap = torch.randn(2, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    temperature = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(spatial_soft_argmax2d, (heatmap, temperature), fast_mode=True)

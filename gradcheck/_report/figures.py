"""Render: the HTML report's pictures, drawn by matplotlib's Agg canvas as PNG bytes.

The overview of every row, the step-size sweeps, the heat maps of failing gradients and the loss
curves of descent cases; also the sweep plot of ``gradcheck sweep``. matplotlib is optional (the
``html`` extra) and imported only when a picture is drawn (:func:`have_matplotlib`,
:func:`install_hint`). User text reaches matplotlib through :func:`_plain`.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradcheck._cases.runner import CaseResult, RunResult
from gradcheck._cases.sweep import Sweep
from gradcheck._judge.verdict import InputComparison
from gradcheck._report import sweep_note as _sweep_note
from gradcheck._report.escape import printable

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DTYPE_COLOURS = {"float64": "#2563eb", "float32": "#ea580c", "float16": "#16a34a"}
OTHER_COLOUR = "#7c3aed"
INK, GRID, MUTED = "#1f2937", "#e5e7eb", "#6b7280"
WARNING = "#b00020"  # the note across a sweep drawn against a failing gradient


def install_hint() -> str:
    """How to get matplotlib, as this gradcheck was installed (``gradcheck._cases.install``)."""
    from gradcheck._cases.install import hint

    return hint("html")


def have_matplotlib() -> bool:
    """Whether plots can be drawn here."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float, constrained: bool = False) -> Figure:
    """A figure on its own Agg canvas: pyplot's global state and backend are left alone.

    Constrained layout costs about as much as drawing; figures of a known layout set their
    margins themselves.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained" if constrained else None)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # No Software/date metadata, so the same results give the same bytes.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _style(axes: Axes) -> None:
    axes.grid(True, which="major", color=GRID, linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        axes.spines[side].set_color(MUTED)
    axes.tick_params(colors=INK, labelsize=8)
    axes.xaxis.label.set_color(INK)
    axes.yaxis.label.set_color(INK)


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _power_of_ten(value: float, _position: object = None) -> str:
    """10⁻⁶ as plain text: matplotlib's default mathtext labels cost most of a figure's time."""
    if value <= 0:
        return ""
    exponent = int(np.round(np.log10(value)))
    if not np.isclose(value, 10.0**exponent, rtol=1e-6):
        return ""
    return "1" if exponent == 0 else "10" + str(exponent).translate(SUPERSCRIPT)


def _log_axis(axis: Any) -> None:
    """Label a log axis's decades as plain text, its minor ticks not at all."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(_power_of_ten))
    axis.set_minor_formatter(NullFormatter())


def _colour(dtype: str, index: int) -> str:
    return DTYPE_COLOURS.get(dtype, OTHER_COLOUR if index == 0 else MUTED)


def sweep_png(sweep: Sweep, failing: bool = False) -> bytes:
    """The V: error of the central difference against h, one curve per dtype, log-log.

    The engine's step is a dashed line with a star at the error of its extrapolated estimate and
    a bar up to its error estimate; the steps lost to rounding (x + h == x) are shaded; exact
    zeros sit on the floor as open circles. ``failing``: the reference gradient fails its
    check, so the curve's floor is that gradient's error, and the plot says so across it.
    """
    figure = _figure(6.6, 4.0)
    figure.subplots_adjust(left=0.12, right=0.97, top=0.92, bottom=0.27)
    axes = figure.add_subplot()
    floor, top = _sweep_limits(sweep)
    for index, curve in enumerate(sweep.curves):
        _sweep_curve(axes, sweep.steps, curve, _colour(curve.dtype, index), floor)
    axes.set_xscale("log")
    axes.set_yscale("log")
    _log_axis(axes.xaxis)
    _log_axis(axes.yaxis)
    axes.set_xlim(sweep.steps.min() / 2, sweep.steps.max() * 2)
    axes.set_ylim(floor / 3, top)
    axes.set_xlabel("relative step h   (element i moves by h·max(1, |xᵢ|))", fontsize=9)
    axes.set_ylabel("error / max |gradient|", fontsize=9)
    _style(axes)
    axes.set_title("← rounding ∝ ε/h", loc="left", fontsize=8, color=MUTED)
    axes.set_title("truncation ∝ h² →", loc="right", fontsize=8, color=MUTED)
    _sweep_legend(figure, axes)
    if failing:
        note = _sweep_note.plot_note(_plain(sweep.reference))
        box = {"facecolor": "white", "alpha": 0.85, "edgecolor": WARNING}
        axes.text(0.5, 0.5, note, transform=axes.transAxes, ha="center", va="center", fontsize=9,
                  color=WARNING, bbox=box)  # fmt: skip
    return _png(figure)


def _sweep_limits(sweep: Sweep) -> tuple[float, float]:
    """(floor where exact zeros are drawn, top of the axes)."""
    values = np.concatenate([c.errors for c in sweep.curves] + [_engine_points(sweep)])
    positive = values[np.isfinite(values) & (values > 0)]
    low = float(positive.min()) if positive.size else 1e-16
    high = float(positive.max()) if positive.size else 1.0
    has_zero = any(np.any(c.errors == 0) for c in sweep.curves)
    return (low / 10 if has_zero else low / 2), max(high, 1.0) * 5


def _engine_points(sweep: Sweep) -> np.ndarray:
    return np.array([v for c in sweep.curves for v in (c.engine_error, c.engine_estimate)])


def _sweep_curve(axes: Axes, steps: np.ndarray, curve: Any, colour: str, floor: float) -> None:
    # The line joins the non-zero errors; exact zeros (common for quadratics, whose truncation
    # error is nil) would drag it to the floor and back, so they are open circles on the floor.
    zero = curve.errors == 0
    nonzero = np.isfinite(curve.errors) & ~zero
    axes.plot(
        steps[nonzero], curve.errors[nonzero], "-o", color=colour, ms=3, lw=1.8, label=curve.dtype
    )
    if np.any(zero):
        axes.plot(
            steps[zero], np.full(int(zero.sum()), floor), "o", color=colour, mfc="white", ms=5
        )
    if np.any(curve.lost):
        axes.axvspan(steps.min() / 2, steps[curve.lost].max(), color=colour, alpha=0.07, lw=0)
    axes.axvline(curve.chosen_step, color=colour, linestyle="--", linewidth=1, alpha=0.8)
    if np.isfinite(curve.engine_error):
        star = max(curve.engine_error, floor)
        bar = max(curve.engine_estimate, star)
        axes.plot([curve.chosen_step] * 2, [star, bar], "-", color=colour, lw=1, marker="_", ms=9)
        axes.plot([curve.chosen_step], [star], "*", color=colour, ms=13, mec="white", zorder=5)


def _sweep_legend(figure: Figure, axes: Axes) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, labels = axes.get_legend_handles_labels()
    extra = [
        (Line2D([], [], color=MUTED, linestyle="--"), "engine's step ε^(1/3)"),
        (Line2D([], [], color=MUTED, marker="*", ls="", ms=10), "engine's estimate"),
        (Line2D([], [], color=MUTED, marker="_", ls="-", ms=9, lw=1), "… and its error bar"),
        (Patch(color=MUTED, alpha=0.2, lw=0), "step lost: x + h == x"),
        (Line2D([], [], color=MUTED, marker="o", mfc="white", ls=""), "exactly 0"),
    ]
    figure.legend(
        handles + [h for h, _ in extra],
        labels + [t for _, t in extra],
        fontsize=7.5,
        frameon=False,
        loc="lower center",
        ncol=4,
    )


def heatmap_png(comparison: InputComparison, title: str = "") -> bytes:
    """Per-element relative error of a gradient, log colour scale: a matrix for two or more
    axes, a one-row strip for a vector.

    Each cell shows its relative error; cells that are not a pass are outlined and say so. The
    colour bar marks rtol, the relative tolerance in force.
    """
    from matplotlib.colors import LogNorm

    rel = _matrix(relative_errors(comparison))
    rows, cols = rel.shape
    figure = _figure(min(1.9 + 0.85 * cols, 8.0), min(1.0 + 0.55 * rows, 6.5), constrained=True)
    axes = figure.add_subplot()
    positive = rel[np.isfinite(rel) & (rel > 0)]
    low = min(float(positive.min()) if positive.size else 1e-16, comparison.rtol / 10)
    high = max(float(positive.max()) if positive.size else 1.0, comparison.rtol * 10)
    shown = np.where(np.isfinite(rel), np.clip(rel, low, None), high)
    norm = LogNorm(low, high)
    image = axes.imshow(shown, cmap="YlOrRd", norm=norm, aspect="auto")
    colourbar = figure.colorbar(image, ax=axes, shrink=0.95, pad=0.02)
    colourbar.set_label("relative error", fontsize=8)
    # The rtol note runs along the bottom, where a one-row strip has the width for it; on the
    # colour bar (as tall as the strip) it was clipped.
    axes.set_xlabel(f"the line on the colour bar: rtol = {comparison.rtol:.1e}", fontsize=7)
    colourbar.ax.tick_params(labelsize=7)
    _log_axis(colourbar.ax.yaxis)
    colourbar.ax.axhline(comparison.rtol, color=INK, linewidth=1.5)
    _heatmap_cells(axes, rel, _matrix(comparison.element_verdicts), norm)
    axes.set_xticks(range(cols))
    axes.set_yticks(range(rows))
    axes.tick_params(labelsize=7, length=0)
    if title:
        axes.set_title(_plain(title), fontsize=9, color=INK)
    return _png(figure)


def _heatmap_cells(axes: Axes, rel: np.ndarray, verdicts: np.ndarray, norm: Any) -> None:
    from matplotlib.patches import Rectangle

    small = rel.size <= 64
    for (r, c), value in np.ndenumerate(rel):
        verdict = str(verdicts[r, c])
        if verdict != "pass":
            axes.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec=INK, lw=2.2))
        if not small:
            continue
        dark = np.isfinite(value) and norm(max(value, norm.vmin)) > 0.6
        text = f"{value:.1e}" if np.isfinite(value) else "n/a"
        label = text if verdict == "pass" else f"{text}\n{verdict}"
        axes.text(
            c,
            r,
            label,
            ha="center",
            va="center",
            fontsize=7,
            color="white" if dark else INK,
            fontweight="normal" if verdict == "pass" else "bold",
        )


def relative_errors(comparison: InputComparison) -> np.ndarray:
    """|a - n| / max(|n|, |a|, atol) per element: the report's relative error."""
    abs_err = np.abs(comparison.analytic - comparison.numeric)
    denominator = np.maximum(
        np.maximum(np.abs(comparison.numeric), np.abs(comparison.analytic)), comparison.atol
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(abs_err == 0, 0.0, abs_err / denominator), dtype=np.float64)


def has_heat_map(comparison: InputComparison) -> bool:
    """A gradient worth a heat map: one axis or more, more than one element, every element
    held (a screen holds only the elements it located)."""
    size = int(np.prod(comparison.shape))
    return len(comparison.shape) >= 1 and size > 1 and comparison.analytic.size == size


def _matrix(values: np.ndarray) -> np.ndarray:
    """Rows and columns to draw: a vector is one row (a heat strip), more axes fold into
    columns after the first."""
    array = np.asarray(values)
    return array.reshape(1, -1) if array.ndim == 1 else array.reshape(array.shape[0], -1)


def loss_curves_png(curves: Mapping[str, Sequence[float]], title: str = "") -> bytes:
    """Loss per epoch of a descent, one line per gradient that drove it (analytic, numerical)."""
    figure = _figure(6.4, 3.2)
    figure.subplots_adjust(left=0.11, right=0.97, top=0.9, bottom=0.16)
    axes = figure.add_subplot()
    styles = [("-", 2.4, 0.55), ("--", 1.4, 1.0), (":", 1.4, 1.0)]
    palette = ["#2563eb", "#ea580c", "#16a34a", OTHER_COLOUR]
    all_values = []
    for index, (label, values) in enumerate(curves.items()):
        ys = np.asarray(values, dtype=np.float64)
        all_values.append(ys)
        line, width, alpha = styles[min(index, len(styles) - 1)]
        axes.plot(
            np.arange(ys.size),
            ys,
            linestyle=line,
            linewidth=width,
            alpha=alpha,
            color=palette[index % len(palette)],
            label=_plain(label),
        )
    joined = np.concatenate(all_values) if all_values else np.zeros(0)
    if joined.size and np.all(joined[np.isfinite(joined)] > 0):
        axes.set_yscale("log")
        _log_axis(axes.yaxis)
    axes.set_xlabel("epoch", fontsize=9)
    axes.set_ylabel("loss", fontsize=9)
    if title:
        axes.set_title(_plain(title), fontsize=9, color=INK)
    _style(axes)
    axes.legend(fontsize=8, frameon=False)
    return _png(figure)


def write_png(path: str | Path, png: bytes) -> None:
    """Write a picture so that readers see the old file or the new one, never half of it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(png)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def default_sweep_path(case: str) -> str:
    """reports/sweep-<case>.png, the case name reduced to characters safe in a file name."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", case).strip("-.") or "case"
    return f"reports/sweep-{safe}.png"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _plain(text: str) -> str:
    """User text for matplotlib: a '$' would otherwise start mathtext (and may not parse); a
    lone surrogate cannot be drawn (nor encoded): it shows as an escape, as in the text report."""
    return printable(text).replace("$", r"\$")


OUTCOME_COLOURS = {
    "passed": "#16a34a",
    "xfailed": "#7c3aed",
    "failed": "#dc2626",
    "xpassed": "#dc2626",
    "error": INK,
}
DTYPE_MARKERS = {"float64": "o", "float32": "^"}


def tolerance_ratio(row: CaseResult) -> float | None:
    """The worst ``|a - n| / tolerance`` of a row: above 1 is a fail. None without numbers."""
    if row.check is not None:
        ratios = [
            np.max(np.abs(c.analytic - c.numeric) / c.tolerance, initial=0.0)
            for c in row.check.inputs
            if c.tolerance.size
        ]
        finite = [float(r) for r in ratios if np.isfinite(r)]
        return max(finite) if finite else None
    if row.descent is not None and row.descent.tolerance > 0:
        return row.descent.max_abs_error / row.descent.tolerance
    return None


def overview_png(result: RunResult) -> bytes:
    """Every row at a glance: its worst error as a multiple of its tolerance, one line a case."""
    names = list(dict.fromkeys(r.case for r in result.rows if r.kind != "load"))
    figure = _figure(10.0, 1.1 + 0.27 * max(len(names), 1))
    figure.subplots_adjust(
        left=0.3,
        right=0.98,
        top=1 - 0.45 / figure.get_figheight(),
        bottom=0.6 / figure.get_figheight(),
    )
    axes = figure.add_subplot()
    points = [(r, tolerance_ratio(r)) for r in result.rows if r.kind != "load"]
    finite = [v for _, v in points if v is not None and v > 0]
    low = min([1e-6, *finite]) / 3
    high = max([100.0, *finite]) * 3
    axes.axvspan(low, 1, color="#dcfce7", alpha=0.6, lw=0)
    axes.axvspan(1, high, color="#fee2e2", alpha=0.6, lw=0)
    axes.axvline(1, color=INK, lw=1.2)
    sources: dict[str, list[str]] = {}
    for row, ratio in points:
        order = sources.setdefault(row.case, [])
        if row.source not in order:
            order.append(row.source)
        y = names.index(row.case) + 0.22 * (order.index(row.source) - 0.5)
        x = high / 1.5 if ratio is None else min(max(ratio, low * 1.5), high / 1.5)
        marker = "X" if ratio is None else DTYPE_MARKERS.get(row.dtype, "s")
        axes.plot([x], [y], marker, color=OUTCOME_COLOURS[row.outcome], ms=6, mec="white", mew=0.6)
    axes.set_xscale("log")
    _log_axis(axes.xaxis)
    axes.set_xlim(low, high)
    axes.set_ylim(len(names) - 0.5, -0.5)
    axes.set_yticks(range(len(names)), [_plain(n) for n in names], fontsize=8, family="monospace")
    axes.set_xlabel("worst |analytic − numerical| / tolerance   (right of 1: fail)", fontsize=9)
    _style(axes)
    axes.grid(False, axis="y")
    _overview_legend(axes)
    return _png(figure)


def _overview_legend(axes: Axes) -> None:
    from matplotlib.lines import Line2D

    def dot(colour: str, marker: str = "o") -> Line2D:
        return Line2D([], [], color=colour, marker=marker, ls="", ms=6)

    entries = [
        (dot(OUTCOME_COLOURS["passed"]), "as expected"),
        (dot(OUTCOME_COLOURS["xfailed"]), "known-bad, caught"),
        (dot(OUTCOME_COLOURS["failed"]), "NOT as expected"),
        (dot(MUTED, "o"), "float64"),
        (dot(MUTED, "^"), "float32"),
    ]
    axes.legend(
        [h for h, _ in entries],
        [t for _, t in entries],
        fontsize=7.5,
        ncol=5,
        frameon=False,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
    )

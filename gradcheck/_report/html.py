"""Render: run results -> one self-contained HTML page with tables and plots.

The page is a pure function of the results (and of any step-size sweeps the caller computed): no
network, no scripts, no timestamps. Pictures are PNGs drawn by matplotlib's Agg canvas and
embedded as base64 ``data:`` URIs. matplotlib is optional (the ``html`` extra) and imported
only when a picture is drawn; without it the page still has every table and says how to get
the plots (:func:`install_hint`, as this gradcheck was installed). Every string that came
from the user (case names, sources, messages) goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradcheck._cases.runner import NUMERICAL, CaseResult, RunResult
from gradcheck._cases.sweep import Sweep
from gradcheck._judge.verdict import WORST_ELEMENT_COLUMNS, InputComparison
from gradcheck._report import sweep_note as _sweep_note
from gradcheck._report.text import (
    HEADERS,
    failed_parts,
    input_name,
    resolution_line,
    summary_line,
    table_rows,
)

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
    """User text for matplotlib: a '$' would otherwise start mathtext (and may not parse)."""
    return text.replace("$", r"\$")


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


# -- the page ---------------------------------------------------------------------------------

OUTCOME_TEXT = {
    "passed": "as expected",
    "xfailed": "known-bad, caught",
    "failed": "NOT as expected",
    "xpassed": "known-bad, NOT caught",
    "error": "error",
}
HOW_TO_READ = (
    (
        "Step-size sweeps",
        "the error of the central difference (f(x+h) − f(x−h)) / 2h against the relative step "
        "h, as a fraction of the gradient's largest element, one curve per dtype. Right of the "
        "bottom of the V truncation dominates (∝ h²), left of it rounding (∝ ε/h); in the shaded "
        "band x + h rounds back to x and the step is lost (a step such as h = 1e-50 lies far left "
        "of it). Against a gradient that fails its check the curve never comes down to rounding: "
        "its floor is the gradient's error, at every step. The dashed line is the step the "
        "engine takes, ε^(1/3); the star is the error of its Richardson-extrapolated estimate "
        "there, the bar above it the error bar it reported.",
    ),
    (
        "Heat maps",
        "for gradients that fail or are inconclusive (a strip for a vector, a grid for a "
        "matrix): the relative error "
        "|a − n| / max(|a|, |n|, atol) of every element, outlined where the element is not a "
        "pass; the line on the colour bar is rtol.",
    ),
    (
        "Loss curves",
        "for descent cases: the loss per epoch, descending once with each analytic gradient and "
        "once with the numerical one. Right gradients give lines that coincide.",
    ),
)


def esc(value: object) -> str:
    """Any value as HTML text: everything a user wrote passes through here."""
    return html.escape(str(value), quote=True)


def render_html(
    result: RunResult,
    *,
    sweeps: Mapping[str, Sweep | str] | None = None,
    plots: bool | None = None,
) -> str:
    """The report as one self-contained HTML page.

    Args:
        result: the run.
        sweeps: case name -> its :class:`~gradcheck._cases.sweep.Sweep`, or a sentence saying why
            there is none. Cases not in the mapping get no sweep.
        plots: draw the pictures; None: when matplotlib is installed. Without them the page
            says how to get them.
    """
    draw = have_matplotlib() if plots is None else plots
    sweeps = sweeps or {}
    groups = _group_rows(result)
    anchors = {name: f"case-{i}" for i, name in enumerate(groups)}
    opened = first_failing(result)
    body = [
        _header(result, draw),
        '<main class="wrap">',
        _overview(result, draw),
        _summary_table(result, anchors),
        _how_to_read() if draw else "",
        *(
            _case_section(rows, anchors[name], sweeps.get(name), draw, opened)
            for name, rows in groups.items()
        ),
        "</main>",
        _footer(result),
    ]
    title = f"gradcheck report: {summary_line(result)}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _group_rows(result: RunResult) -> dict[str, list[CaseResult]]:
    groups: dict[str, list[CaseResult]] = {}
    for row in result.rows:
        groups.setdefault(row.case, []).append(row)
    return groups


def _case_outcome(rows: Sequence[CaseResult]) -> str:
    """The worst outcome among a case's rows."""
    order = ("error", "xpassed", "failed", "xfailed", "passed")
    return next(o for o in order if any(r.outcome == o for r in rows))


def _name_html(name: str) -> str:
    """A case name, escaped, that may wrap after its underscores."""
    return esc(name).replace("_", "_<wbr>")


def _badge(outcome: str, text: str) -> str:
    return f'<span class="badge {esc(outcome)}">{esc(text)}</span>'


def _overview(result: RunResult, draw: bool) -> str:
    if not draw or not any(r.kind != "load" for r in result.rows):
        return ""
    return (
        '<section class="card" id="overview"><h2>At a glance</h2>'
        '<p class="hint">Each mark is a row: a case checked with one gradient source in one '
        "dtype, placed at its worst error as a multiple of its tolerance. Known-bad cases belong "
        "right of the line, everything else left of it.</p>"
        + _figure_html(overview_png(result), "every row's error against its tolerance", "")
        + "</section>"
    )


def _how_to_read() -> str:
    items = "".join(f"<li><b>{esc(t)}</b>: {esc(text)}</li>" for t, text in HOW_TO_READ)
    heading = '<section class="card" id="how-to-read"><h2>Reading the plots</h2>'
    return f"{heading}<ul>{items}</ul></section>"


def _header(result: RunResult, draw: bool) -> str:
    counts = result.counts
    status = "Every row as expected" if result.ok else "Some rows are NOT as expected"
    tiles = "".join(
        f'<div class="tile {o}{" zero" if not counts[o] else ""}"><b>{counts[o]}</b>'
        f"<span>{esc(OUTCOME_TEXT[o])}</span></div>"
        for o in counts
    )
    notice = (
        ""
        if draw
        else '<p class="notice">Plots are not included: matplotlib is not installed. '
        f"Install it with <code>{esc(install_hint())}</code> and run the report again.</p>"
    )
    return (
        '<header class="top"><div class="wrap">'
        "<h1>gradcheck <span>report</span></h1>"
        f'<p class="status {"ok" if result.ok else "bad"}">{esc(status)}</p>'
        f'<p class="line">{esc(summary_line(result))}</p>'
        f'<div class="tiles">{tiles}</div>{notice}</div></header>'
    )


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric: Sequence[int],
    *,
    groups: Sequence[int] = (),
) -> str:
    """An HTML table; cells are HTML already (escape before), numeric columns right-aligned.

    ``groups`` splits the rows into consecutive bodies of those sizes whose first cell, the
    same for the whole body, is shown once (a case name over its sources and dtypes).
    """
    head = "".join(
        f"<th{' class=num' if i in numeric else ''}>{esc(h)}</th>" for i, h in enumerate(headers)
    )
    bodies, start = [], 0
    for size in groups or [len(rows)]:
        lines = []
        for k, row in enumerate(rows[start : start + size]):
            cells = [
                f"<td{' class=num' if i in numeric else ''}>{c}</td>" for i, c in enumerate(row)
            ]
            if groups:
                cells[0] = f'<td rowspan="{size}" class="group">{row[0]}</td>' if k == 0 else ""
            lines.append("<tr>" + "".join(cells) + "</tr>")
        bodies.append("<tbody>" + "".join(lines) + "</tbody>")
        start += size
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>{"".join(bodies)}</table></div>'
    )


NUMERIC_COLUMNS = (3, 4, 5, 6, 7)


def _row_cells(row: CaseResult, cells: Sequence[str]) -> list[str]:
    """One table row: escaped cells, the verdict as a badge."""
    return [esc(c) for c in cells[:-1]] + [_badge(row.outcome, cells[-1])]


def _summary_table(result: RunResult, anchors: Mapping[str, str]) -> str:
    rows = []
    for row, cells in zip(result.rows, table_rows(result), strict=True):
        line = _row_cells(row, cells)
        line[0] = f'<a href="#{anchors[row.case]}">{_name_html(row.case)}</a>'
        rows.append(line)
    sizes = [len(group) for group in _group_rows(result).values()]
    return (
        '<section class="card" id="summary"><h2>Summary</h2>'
        '<p class="hint">One row per case × gradient source × dtype. Errors compare the analytic '
        "gradient with the numerical one; the tolerance is atol + rtol·|n| + the numerical error "
        "estimate, at the worst element.</p>"
        f"{_table(HEADERS, rows, NUMERIC_COLUMNS, groups=sizes)}</section>"
    )


def first_failing(result: RunResult) -> CaseResult | None:
    """The row whose details the page shows open: the first not as expected, else the first
    that fails (a known-bad case), else none. What failed and where, at first sight."""
    for wanted in (lambda r: not r.ok, lambda r: r.verdict == "fail"):
        for row in result.rows:
            if row.kind != "load" and wanted(row):
                return row
    return None


def _case_section(
    rows: Sequence[CaseResult],
    anchor: str,
    sweep: Sweep | str | None,
    draw: bool,
    opened: CaseResult | None = None,
) -> str:
    first = rows[0]
    outcome = _case_outcome(rows)
    meta = [first.kind, f"{first.file}:{first.line}" if first.file else ""]
    meta += [f"tags: {', '.join(first.tags)}" if first.tags else "", f"seed {first.seed}"]
    table = _table(
        HEADERS[1:],
        [_row_cells(r, cells)[1:] for r, cells in zip(rows, _rows_table(rows), strict=True)],
        [i - 1 for i in NUMERIC_COLUMNS],
    )
    parts = [
        f'<section class="card case" id="{anchor}">',
        f'<h2><a href="#{anchor}">{_name_html(first.case)}</a> '
        f"{_badge(outcome, OUTCOME_TEXT[outcome])}</h2>",
        f'<p class="desc">{esc(first.description)}</p>' if first.description else "",
        f'<p class="meta">{" · ".join(esc(m) for m in meta if m)}</p>',
        table,
        *(_row_details(r, opened=r is opened) for r in rows),
        _figures(rows, sweep, draw),
        "</section>",
    ]
    return "\n".join(p for p in parts if p)


def _rows_table(rows: Sequence[CaseResult]) -> list[list[str]]:
    return table_rows(RunResult(seed=0, rows=tuple(rows)))


def _row_details(row: CaseResult, *, opened: bool = False) -> str:
    """What a reader needs beyond the table: reasons, the worst elements, an error."""
    lines = []
    if row.error is not None:
        lines.append(f"<pre class=error>{esc(row.error)}</pre>")
    lines += [f"<li>{esc(reason)}</li>" for reason in row.reasons]
    if row.check is not None and row.verdict != "pass":
        lines.append(f"<li>{esc(resolution_line(row))}</li>")
        lines.append(_worst_elements(row))
    if row.descent is not None:
        lines.append(_descent_table(row))
    if not lines:
        return ""
    summary = f"{esc(row.source)} · {esc(row.dtype)}: {esc(row.verdict)}"
    failed_in = failed_parts(row)
    if failed_in:
        summary += f" (failed: {esc(', '.join(failed_in))})"
    attribute = " open" if opened else ""
    return (
        f'<details class="row"{attribute}><summary>{summary}</summary>'
        f"<ul>{''.join(lines)}</ul></details>"
    )


def _worst_elements(row: CaseResult) -> str:
    assert row.check is not None
    rows = []
    for comparison in row.check.inputs:
        if comparison.verdict == "pass":
            continue
        name = input_name(row, comparison.position)
        for element in comparison.worst_elements(5):
            rows.append(
                [esc(name)]
                + [
                    _num(element[key]) if isinstance(element[key], float) else esc(element[key])
                    for _, key in WORST_ELEMENT_COLUMNS
                ]
            )
    headers = ("input", *(header for header, _ in WORST_ELEMENT_COLUMNS))
    return "<li>the worst elements:" + _table(headers, rows, (2, 3, 4, 5, 6)) + "</li>"


def _num(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else esc(value)


def _descent_table(row: CaseResult) -> str:
    assert row.descent is not None
    headers = ["run", "final parameters", "readout", "final loss"]
    rows = [
        [
            esc(run.gradient),
            esc(
                ", ".join(
                    f"{n} = {', '.join(f'{v:.6g}' for v in vs)}" for n, vs in run.params.items()
                )
            ),
            esc(", ".join(f"{n} = {v:.6g}" for n, v in run.readout.items())),
            _num(run.losses[-1]) if run.losses else "-",
        ]
        for run in (row.descent.analytic, row.descent.numerical)
    ]
    return "<li>the two runs:" + _table(headers, rows, (3,)) + "</li>"


def _figures(rows: Sequence[CaseResult], sweep: Sweep | str | None, draw: bool) -> str:
    figures = []
    if draw:
        figures += [_figure_html(png, alt, caption) for png, alt, caption in _pictures(rows, sweep)]
    if isinstance(sweep, str):
        figures.append(f'<p class="hint">No step-size sweep: {esc(sweep)}</p>')
    elif isinstance(sweep, Sweep):
        figures.append(_sweep_text(sweep, _sweep_note.against_failing(rows, sweep)))
    return f'<div class="figures">{"".join(figures)}</div>' if figures else ""


def _pictures(
    rows: Sequence[CaseResult], sweep: Sweep | str | None
) -> list[tuple[bytes, str, str]]:
    """(png, alt text, caption) for every picture of a case."""
    pictures = []
    for row in rows:
        if row.check is None or row.verdict not in ("fail", "inconclusive"):
            continue
        for comparison in row.check.inputs:
            if has_heat_map(comparison) and comparison.verdict != "pass":
                name = input_name(row, comparison.position)
                shape = "×".join(str(n) for n in comparison.shape)
                title = f"d/d{name} ({shape}) · {row.source} · {row.dtype}"
                kind = "heat strip" if len(comparison.shape) == 1 else "heat map"
                caption = (
                    f"{kind.capitalize()}: relative error per element of the gradient of {name}."
                )
                pictures.append((heatmap_png(comparison, title), f"{kind} {title}", caption))
    for dtype, curves in _loss_curves(rows).items():
        title = f"{rows[0].case} · {dtype}"
        caption = f"Loss curves in {dtype}: analytic and numerical gradients should coincide."
        pictures.append((loss_curves_png(curves, title), f"loss curves {title}", caption))
    if isinstance(sweep, Sweep):
        failing = _sweep_note.against_failing(rows, sweep)
        caption = _sweep_note.caption(sweep, failing)
        pictures.append((sweep_png(sweep, failing), f"step-size sweep {sweep.name}", caption))
    return pictures


def _loss_curves(rows: Sequence[CaseResult]) -> dict[str, dict[str, Sequence[float]]]:
    """dtype -> {run label: losses}: each analytic source's run and the numerical run."""
    by_dtype: dict[str, dict[str, Sequence[float]]] = {}
    for row in rows:
        if row.descent is None:
            continue
        curves = by_dtype.setdefault(row.dtype, {})
        curves[f"{row.descent.analytic.gradient} (analytic)"] = row.descent.analytic.losses
        curves[NUMERICAL] = row.descent.numerical.losses
    for curves in by_dtype.values():
        curves[NUMERICAL] = curves.pop(NUMERICAL)  # drawn last, on top
    return by_dtype


def _figure_html(png: bytes, alt: str, caption: str) -> str:
    return (
        f'<figure><img src="{data_uri(png)}" alt="{esc(alt)}">'
        + (f"<figcaption>{esc(caption)}</figcaption>" if caption else "")
        + "</figure>"
    )


def _sweep_text(sweep: Sweep, failing: bool = False) -> str:
    lines = _sweep_note.summary_lines(sweep, failing)
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    failures = "".join(f"<li>{esc(c.failure)}</li>" for c in sweep.curves if c.failure)
    return (
        f'<div class="sweep-text"><p>Step-size sweep against {esc(sweep.reference)}, worst of '
        f"{sweep.elements} element(s):</p><ul>{items}{failures}</ul></div>"
    )


def _footer(result: RunResult) -> str:
    return (
        '<footer class="wrap"><p>Replay this run with '
        f"<code>gradcheck run --seed {result.seed} --format html --output gradcheck.html</code>. "
        "Sweep one case with <code>gradcheck sweep CASE</code>. Verdicts: fail when "
        "|a − n| &gt; atol + rtol·|n| + e; inconclusive when the error bar e is wider than 1% of "
        "the gradient.</p></footer>"
    )


CSS = """
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f3f4f6; --card:#fff;
  --pass:#15803d; --pass-bg:#dcfce7; --xfail:#6d28d9; --xfail-bg:#ede9fe;
  --fail:#b91c1c; --fail-bg:#fee2e2; --error:#7f1d1d; --error-bg:#fecaca; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; }
.wrap { max-width:1180px; margin:0 auto; padding:0 24px; }
header.top { background:linear-gradient(120deg,#0f172a,#1e3a8a); color:#f8fafc;
  padding:28px 0 24px; margin-bottom:24px; }
header.top h1 { margin:0; font-size:28px; letter-spacing:.5px; }
header.top h1 span { font-weight:300; opacity:.8; }
.status { font-size:18px; font-weight:600; margin:10px 0 2px; }
.status.ok::before { content:"\\2714  "; color:#4ade80; }
.status.bad::before { content:"\\2716  "; color:#f87171; }
.line { margin:0 0 16px; opacity:.85; font-size:13px; font-family:"DejaVu Sans Mono",monospace; }
.tiles { display:flex; gap:12px; flex-wrap:wrap; }
.tile { background:rgba(255,255,255,.1); border-radius:10px; padding:8px 16px; min-width:120px; }
.tile b { display:block; font-size:24px; }
.tile span { font-size:12px; text-transform:uppercase; letter-spacing:.6px; opacity:.85; }
.tile.failed b, .tile.xpassed b, .tile.error b { color:#fca5a5; }
.tile.passed b { color:#86efac; } .tile.xfailed b { color:#c4b5fd; }
.tile.zero { opacity:.45; } .tile.zero b { color:inherit; }
.notice { background:#fef3c7; color:#78350f; border-radius:8px; padding:10px 14px;
  margin:16px 0 0; }
.card { background:var(--card); border-radius:12px; padding:18px 22px; margin:0 0 20px;
  box-shadow:0 1px 2px rgba(0,0,0,.06),0 1px 8px rgba(0,0,0,.04); }
h2 { margin:0 0 6px; font-size:19px; display:flex; align-items:center; gap:10px; flex-wrap:wrap; }
h2 a { color:inherit; text-decoration:none; font-family:"DejaVu Sans Mono",monospace; }
.desc { margin:2px 0; } .meta, .hint { color:var(--muted); font-size:13px; margin:2px 0 10px; }
table { border-collapse:collapse; width:100%; font-size:13px; margin:6px 0; }
th { text-align:left; font-weight:600; color:var(--muted); border-bottom:2px solid var(--line);
  padding:6px 8px; white-space:nowrap; }
td { padding:5px 8px; border-bottom:1px solid var(--line); }
tbody + tbody { border-top:2px solid var(--line); }
tbody:nth-of-type(even) { background:#f9fafb; }
td.group { vertical-align:top; overflow-wrap:break-word; }
.scroll { overflow-x:auto; }
td a { color:#1d4ed8; text-decoration:none; font-family:"DejaVu Sans Mono",monospace; }
.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
.badge { display:inline-block; border-radius:999px; padding:1px 10px; font-size:12px;
  font-weight:600; white-space:nowrap; }
.badge.passed { color:var(--pass); background:var(--pass-bg); }
.badge.xfailed { color:var(--xfail); background:var(--xfail-bg); }
.badge.failed, .badge.xpassed { color:var(--fail); background:var(--fail-bg); }
.badge.error { color:var(--error); background:var(--error-bg); }
details.row { margin:6px 0; }
details.row summary { cursor:pointer; color:var(--muted); font-size:13px; }
details.row ul { margin:4px 0; font-size:13px; }
pre.error { background:var(--fail-bg); color:var(--error); padding:8px; border-radius:6px;
  white-space:pre-wrap; }
.figures { display:grid; grid-template-columns:repeat(auto-fill,minmax(460px,1fr)); gap:16px;
  margin-top:12px; align-items:start; }
figure { margin:0; border:1px solid var(--line); border-radius:10px; padding:10px;
  background:#fff; }
figure img { width:100%; height:auto; display:block; }
figcaption { color:var(--muted); font-size:12px; margin-top:6px; }
.sweep-text { font-size:13px; } .sweep-text ul { padding-left:18px; margin:4px 0; }
code { background:rgba(127,127,127,.15); padding:1px 5px; border-radius:4px; font-size:90%; }
footer { color:var(--muted); font-size:13px; padding-bottom:32px; }
"""

"""Render: run results -> one self-contained HTML page with tables and plots.

The page is a pure function of the results (and of any step-size sweeps the caller computed): no
network, no scripts, no timestamps. Pictures are PNGs that ``gradcheck._report.figures`` draws
with matplotlib's Agg canvas, embedded as base64 ``data:`` URIs. matplotlib is optional (the
``html`` extra) and imported only when a picture is drawn; without it the page still has every
table and says how to get the plots (:func:`install_hint`, as this gradcheck was installed).
Every string that came from the user (case names, sources, messages) goes through
:func:`html.escape`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from gradcheck._cases.descent import NUMERICAL
from gradcheck._cases.runner import CaseResult, RunResult
from gradcheck._cases.sweep import Sweep
from gradcheck._judge.verdict import WORST_ELEMENT_COLUMNS
from gradcheck._report import sweep_note as _sweep_note
from gradcheck._report.escape import no_surrogates
from gradcheck._report.figures import (
    data_uri,
    has_heat_map,
    have_matplotlib,
    heatmap_png,
    install_hint,
    loss_curves_png,
    overview_png,
    sweep_png,
)
from gradcheck._report.text import (
    HEADERS,
    failed_parts,
    input_name,
    resolution_line,
    summary_line,
    table_rows,
)

if TYPE_CHECKING:
    pass

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
    return no_surrogates(html.escape(str(value), quote=True))


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

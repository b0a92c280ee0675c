"""`--browserml-html`: one self-contained HTML page (pictures inlined as data URIs).

The test x EP matrix; for each failure its message, the error statistics per
output, the error of each node along the graph when the failure was localised,
a histogram of the errors (with axes) and a picture of every output: a line plot
of expected, obtained and their difference for vectors, else expected, obtained
and a heatmap of the difference side by side (3-D such as sequence x hidden as
rows x hidden, 4-D NCHW/NHWC per channel);
and the p50 latency of every test on every EP as a small chart.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np

from ..budget.limits import format_value
from ..golden import store as goldens
from .rows import TestRow

PICTURE_SIDE = 160
HISTOGRAM_BINS = 24

STYLE = """
body { font: 14px system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 20px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
td.passed, td.xpassed { background: #dff5e1; } td.failed, td.error, td.interrupted { background: #fbe0e0; }
td.skipped, td.xfailed { background: #f4f0d8; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; max-height: 320px; }
.pictures { display: flex; gap: 16px; } .pictures figure { margin: 0; text-align: center; }
.pictures img { image-rendering: pixelated; border: 1px solid #ccc; }
section.failure { border-top: 2px solid #d33; margin-top: 24px; }
"""


def write_html(path: Path, rows: list[TestRow], environment: dict, rootdir: Path) -> None:
    eps = sorted({row.ep for row in rows})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>pytest-browserml report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>pytest-browserml report</h1>",
        f"<p id='environment'>onnxruntime-web {_e(environment['ort_web_version'])} "
        f"EPs {_e(', '.join(f'{ep} ({bundle})' for ep, bundle in environment['ort_web_bundles'].items()))}, "
        f"webgpu adapter {_e(environment['webgpu_adapter'] or '-')}, "
        f"pytest-browserml {_e(environment['plugin_version'])}, {_e(environment['created'])}</p>",
        "<h2>Tests x EPs</h2>", _matrix(rows, eps),
        "<h2>Latency (p50) per EP</h2>", _latency_chart(rows),
    ]
    failures = [row for row in rows if row.verdict in ("failed", "error", "interrupted")]
    if failures:
        parts.append("<h2>Failures</h2>")
        parts += [_failure(row, rootdir) for row in failures]
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")


def _matrix(rows: list[TestRow], eps: list[str]) -> str:
    by_test: dict[str, dict[str, TestRow]] = {}
    for row in rows:
        by_test.setdefault(row.test, {})[row.ep] = row
    lines = ["<table id='matrix'><tr><th>test</th>" + "".join(f"<th>{_e(ep)}</th>" for ep in eps) + "</tr>"]
    for test, per_ep in by_test.items():
        cells = []
        for ep in eps:
            row = per_ep.get(ep)
            if row is None:
                cells.append("<td></td>")
                continue
            details = [row.verdict]
            if row.p50_ms is not None:
                details.append(f"p50 {format_value(row.p50_ms, 'time')}")
            if row.worst_abs is not None:
                details.append(f"max abs {row.worst_abs:.3g}")
            if row.fallback_nodes:
                details.append(f"{row.fallback_nodes} fallback nodes")
            cells.append(f"<td class='{row.verdict}'>{'<br>'.join(map(_e, details))}</td>")
        lines.append(f"<tr><td>{_e(test)}</td>{''.join(cells)}</tr>")
    return "\n".join([*lines, "</table>"])


def _latency_chart(rows: list[TestRow]) -> str:
    """Horizontal bars on a log scale: the figures span microseconds to seconds."""
    timed = [row for row in rows if row.p50_ms]
    if not timed:
        return "<p>No timed runs.</p>"
    low = math.log10(min(row.p50_ms for row in timed)) - 0.5
    high = math.log10(max(row.p50_ms for row in timed)) + 0.2
    bar, label_width, height = 18, 360, 22 * len(timed) + 10
    shapes = []
    for i, row in enumerate(timed):
        width = 300 * (math.log10(row.p50_ms) - low) / (high - low)
        y = 5 + 22 * i
        shapes.append(f"<text x='0' y='{y + 13}' font-size='12'>{_e(row.test[-40:])} [{_e(row.ep)}]</text>")
        shapes.append(f"<rect x='{label_width}' y='{y}' width='{width:.1f}' height='{bar}' fill='#4a7fc1'/>")
        shapes.append(f"<text x='{label_width + width + 4:.1f}' y='{y + 13}' font-size='12'>"
                      f"{_e(format_value(row.p50_ms, 'time'))}</text>")
    return (f"<svg id='latency-chart' xmlns='http://www.w3.org/2000/svg' width='{label_width + 400}' "
            f"height='{height}'>{''.join(shapes)}</svg>")


def _failure(row: TestRow, rootdir: Path) -> str:
    parts = [f"<section class='failure'><h3>{_e(row.test)} [{_e(row.ep)}]: {_e(row.verdict)}</h3>",
             f"<pre>{_e(row.message or '')}</pre>"]
    for golden in row.goldens:
        parts.append(f"<h4>golden {_e(_relative(golden['path'], rootdir))}</h4>")
        parts.append("<table class='stats'><tr><th>output</th><th>passed</th><th>shape</th><th>out of tolerance</th>"
                     "<th>max abs</th><th>max ULP</th><th>tolerance</th><th>diagnosis</th></tr>")
        for output in golden["outputs"]:
            parts.append(
                f"<tr><td>{_e(output['name'])}</td><td>{output['passed']}</td><td>{_e(str(output['shape']))}</td>"
                f"<td>{output['mismatched_percent']:.2f}%</td><td>{_number(output['max_abs_error'])}</td>"
                f"<td>{_number(output['max_ulp'])}</td><td>{_e(output['tolerance'])}</td>"
                f"<td>{_e(output['diagnosis'])}</td></tr>")
        parts.append("</table>")
        if golden.get("localisation"):
            parts.append(_divergence_plot(golden["localisation"]))
        parts += _pictures(golden)
    parts.append("</section>")
    return "\n".join(parts)


def _divergence_plot(localisation: dict) -> str:
    """Max abs error of each node's outputs against its position in the graph (log scale), the first
    divergences marked: where the error is born and how it grows."""
    nodes = localisation["nodes"]
    first = {divergence["index"] for divergence in localisation["divergences"]}
    errors = [node["max_abs_error"] for node in nodes if node["max_abs_error"] and math.isfinite(node["max_abs_error"])]
    low = math.log10(min(errors)) - 0.5 if errors else -8.0
    high = math.log10(max(errors)) + 0.5 if errors else 0.0
    width, height, left = max(240, 8 * len(nodes)), 140, 48
    step = (width - 12) / max(1, len(nodes) - 1)

    def y(error) -> float:
        level = low if not error else high if not math.isfinite(error) else math.log10(error)
        return 10 + (height - 20) * (high - level) / (high - low)

    shapes = [f"<text x='0' y='14' font-size='11'>{10 ** high:.2g}</text>",
              f"<text x='0' y='{height - 6}' font-size='11'>{10 ** low:.2g}</text>"]
    for position, node in enumerate(nodes):
        x = left + 6 + step * position
        if node["index"] in first:
            shapes.append(f"<line class='first-divergence' x1='{x:.1f}' x2='{x:.1f}' y1='0' y2='{height}' "
                          f"stroke='#d33' stroke-dasharray='3 2'/><text x='{x + 3:.1f}' y='{height + 12}' "
                          f"font-size='11' fill='#d33'>{_e(node['op_type'])} {_e(node['name'])}</text>")
        if node["status"] == "not compared" or node["max_abs_error"] is None:
            continue
        colour = "#c14a4a" if node["status"] == "out" else "#4a7fc1"
        shapes.append(f"<circle cx='{x:.1f}' cy='{y(node['max_abs_error']):.1f}' r='3' fill='{colour}'>"
                      f"<title>node {node['index'] + 1} {_e(node['op_type'])} {_e(node['name'])}: max abs error "
                      f"{node['max_abs_error']:.3g} ({node['status']})</title></circle>")
    divergences = "; ".join(f"{d['op_type']} {d['name']!r}: {d['kind']}" for d in localisation["divergences"])
    return (f"<h5>error along the graph (max abs error per node, log scale; {_e(localisation['method'])})"
            f"{': first divergence ' + _e(divergences) if divergences else ''}</h5>"
            f"<svg class='divergence-plot' xmlns='http://www.w3.org/2000/svg' width='{left + width + 160}' "
            f"height='{height + 16}'>{''.join(shapes)}</svg>")


def _pictures(golden: dict) -> list[str]:
    """Histogram of errors and image views for each output that failed, from the files on disk."""
    if not golden.get("obtained") or not Path(golden["path"]).is_file():  # reference= outputs are not stored
        return []
    try:
        expected = goldens.read_golden(Path(golden["path"]))
        obtained = goldens.read_golden(Path(golden["obtained"]))
    except goldens.GoldenError as error:
        return [f"<p>pictures unavailable: {_e(str(error))}</p>"]
    parts = []
    for output in golden["outputs"]:
        name = output["name"]
        if output["passed"] or name not in expected or name not in obtained:
            continue
        parts += output_pictures(name, expected[name], obtained[name])
    return parts


def output_pictures(name: str, want: np.ndarray, got: np.ndarray) -> list[str]:
    """A histogram of the errors and a picture for any shape: a line plot of expected, obtained and their
    difference for vectors; expected, obtained and a heatmap of the difference for everything else
    (2-D as is, 3-D such as sequence x hidden as rows x last axis, 4-D NCHW/NHWC per channel)."""
    if want.shape != got.shape or want.dtype.kind not in "fiub" or want.size < 2:
        return []
    difference = np.abs(got.astype(np.float64) - want.astype(np.float64))
    parts = [f"<h5>output {_e(name)}: absolute errors</h5>{_histogram(difference)}"]
    if sum(size > 1 for size in want.shape) == 1:
        return [*parts, f"<h5>output {_e(name)}: values along the index</h5>"
                        f"{_line_plot(want.reshape(-1), got.reshape(-1))}"]
    channel = _worst_channel(difference)
    image = _as_image(want, channel)
    if image is None:
        return parts
    views = [("expected", image), ("obtained", _as_image(got, channel)),
             ("|difference|", _as_image(difference, channel))]
    where = (f" (channel {channel}, where the largest error is)" if want.ndim == 4 and image.ndim == 2
             else f" (as {image.shape[0]} rows x {image.shape[1]})" if want.ndim != 2 and image.ndim == 2 else "")
    parts.append(f"<h5>output {_e(name)}{where}</h5>")
    figures = [
        f"<figure><img class='picture' alt='{label} {_e(name)}' src='{_png(view, heat=label.startswith('|'))}'>"
        f"<figcaption>{label}</figcaption></figure>" for label, view in views
    ]
    parts.append(f"<div class='pictures'>{''.join(figures)}</div>")
    return parts


LINE_POINTS = 400


def _line_plot(want: np.ndarray, got: np.ndarray) -> str:
    """Expected (blue) and obtained (red, dashed) over the index, and obtained - expected below, with axes;
    at most LINE_POINTS points each (every n-th element of longer vectors)."""
    step = max(1, math.ceil(want.size / LINE_POINTS))
    index = np.arange(0, want.size, step)
    expected, obtained = (np.nan_to_num(v[::step].astype(np.float64)) for v in (want, got))
    panels = [("values", [(expected, "#4a7fc1", ""), (obtained, "#c14a4a", "4 2")]),
              ("obtained - expected", [(obtained - expected, "#444", "")])]
    width, height, left, gap = 420, 90, 56, 28
    shapes = []
    for number, (title, lines) in enumerate(panels):
        top = number * (height + gap) + 14
        low = min(float(line.min()) for line, _, _ in lines)
        high = max(float(line.max()) for line, _, _ in lines)
        high = high if high > low else low + 1.0
        shapes += _axes(left, top, width, height, f"{low:.3g}", f"{high:.3g}", "0", f"{want.size - 1}", title)
        for values, colour, dash in lines:
            x = left + width * index / max(1, want.size - 1)
            y = top + height * (high - values) / (high - low)
            points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y))
            shapes.append(f"<polyline points='{points}' fill='none' stroke='{colour}' stroke-width='1'"
                          + (f" stroke-dasharray='{dash}'" if dash else "") + "/>")
    total = len(panels) * (height + gap) + 10
    return (f"<svg class='line-plot' xmlns='http://www.w3.org/2000/svg' width='{left + width + 20}' "
            f"height='{total}'>{''.join(shapes)}</svg>")


def _axes(left: float, top: float, width: float, height: float, y_low: str, y_high: str, x_low: str, x_high: str,
          title: str) -> list[str]:
    """Two axis lines with their end values and a title above."""
    bottom = top + height
    return [f"<line class='axis' x1='{left}' y1='{top}' x2='{left}' y2='{bottom}' stroke='#222'/>",
            f"<line class='axis' x1='{left}' y1='{bottom}' x2='{left + width}' y2='{bottom}' stroke='#222'/>",
            f"<text x='{left - 4}' y='{top + 8}' font-size='10' text-anchor='end'>{_e(y_high)}</text>",
            f"<text x='{left - 4}' y='{bottom}' font-size='10' text-anchor='end'>{_e(y_low)}</text>",
            f"<text x='{left}' y='{bottom + 12}' font-size='10'>{_e(x_low)}</text>",
            f"<text x='{left + width}' y='{bottom + 12}' font-size='10' text-anchor='end'>{_e(x_high)}</text>",
            f"<text x='{left}' y='{top - 4}' font-size='11'>{_e(title)}</text>"]


def _as_image(array: np.ndarray, channel: int = 0) -> np.ndarray | None:
    """A 2-D (or RGB) view of an output: 2-D as is; 4-D NCHW or NHWC, first image, its RGB channels
    when there are three, else the given channel; any other rank as rows x its last axis."""
    if array.ndim == 2 and min(array.shape) >= 2:
        return array.astype(np.float64)
    if array.ndim != 4:
        rows = array.reshape(-1, array.shape[-1]) if array.ndim else array.reshape(1, 1)
        return rows.astype(np.float64) if min(rows.shape) >= 2 else None
    first = _channels_last(array)[0]
    if min(first.shape[:2]) < 2:
        return None
    return (first if first.shape[2] == 3 else first[..., channel]).astype(np.float64)


def _channels_last(array: np.ndarray) -> np.ndarray:
    nhwc = array.shape[3] in (1, 3) and array.shape[1] not in (1, 3)
    return array if nhwc else array.transpose(0, 2, 3, 1)


def _worst_channel(difference: np.ndarray) -> int:
    """The channel of a 4-D output where the largest error is, so the pictures show it."""
    if difference.ndim != 4:
        return 0
    per_channel = np.nan_to_num(_channels_last(difference)[0], nan=np.inf).max(axis=(0, 1))
    return int(np.argmax(per_channel))


def _png(values: np.ndarray, heat: bool = False) -> str:
    from PIL import Image

    finite = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    if heat and finite.ndim == 3:  # an RGB difference: the largest of its channels
        finite = finite.max(axis=2)
    low, high = float(finite.min()), float(finite.max())
    scaled = (finite - low) / (high - low) if high > low else np.zeros_like(finite)
    if heat:  # black -> red -> yellow: where the differences are
        pixels = np.stack([np.clip(2 * scaled, 0, 1), np.clip(2 * scaled - 1, 0, 1), np.zeros_like(scaled)], -1)
    else:
        pixels = scaled if scaled.ndim == 3 else np.repeat(scaled[..., None], 3, -1)
    image = Image.fromarray((pixels * 255).astype(np.uint8))
    factor = max(1, PICTURE_SIDE // max(image.size))
    image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _histogram(difference: np.ndarray) -> str:
    values = difference[np.isfinite(difference)].ravel()
    if values.size == 0:
        return "<p>no finite differences</p>"
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
    # counts on a log scale: a few large errors stay visible beside many tiny ones
    width, height, top, left, above = 12, 100, math.log1p(int(counts.max())), 56, 16
    bars = "".join(
        f"<rect x='{left + i * width}' y='{above + height - height * math.log1p(c) / top:.1f}' width='{width - 1}' "
        f"height='{height * math.log1p(c) / top:.1f}' fill='#c14a4a'>"
        f"<title>{edges[i]:.3g} to {edges[i + 1]:.3g}: {c}</title></rect>"
        for i, c in enumerate(counts))
    axes = _axes(left, above, HISTOGRAM_BINS * width, height, "0", f"{int(counts.max())}", f"{edges[0]:.3g}",
                 f"{edges[-1]:.3g}", "elements (log scale) per |obtained - expected|")
    return (f"<svg class='histogram' xmlns='http://www.w3.org/2000/svg' width='{left + HISTOGRAM_BINS * width + 40}' "
            f"height='{above + height + 16}'>{bars}{''.join(axes)}</svg>")


def _relative(path: str, rootdir: Path) -> str:
    try:
        return str(Path(path).relative_to(rootdir))
    except ValueError:
        return path


def _number(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def _e(text) -> str:
    return html.escape(str(text), quote=True)

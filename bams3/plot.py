"""Cohort coverage pictures, in the spirit of goleft indexcov: each sample's binned depth
divided by its own median, so 1.0 is "as deep as usual", a single-copy X reads 0.5,
and a drop-out falls to 0. HTML is self-contained SVG (no plotting library); PNG uses
matplotlib when it is installed."""

from __future__ import annotations

import html
import math

import numpy as np

from .errors import UsageError

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf"]
Y_MAX = 2.0


def normalised(df):
    """sample -> reference -> (bin starts, depth / the sample's median over bins with reads);
    and sample -> reference -> mean normalised depth."""
    curves, means = {}, {}
    ok = df[df["error"].fillna("") == ""]
    for sample, g in ok.groupby("sample", sort=False):
        depth = g["mean_depth"].astype(float).to_numpy()
        med = float(np.median(depth[depth > 0])) if (depth > 0).any() else 1.0
        curves[sample], means[sample] = {}, {}
        for ref, r in g.groupby("reference", sort=False):
            y = r["mean_depth"].astype(float).to_numpy() / med
            curves[sample][ref] = (r["start"].astype(float).to_numpy(), y)
            means[sample][ref] = float(np.average(y, weights=(r["end"] - r["start"]).astype(float).to_numpy()))
    return curves, means


def check_plot_path(path: str) -> str:
    """The plot's kind from its extension (html or png); UsageError otherwise, before any work."""
    ext = path.rsplit(".", 1)[-1].lower()
    if ext in ("html", "htm"):
        return "html"
    if ext == "png":
        return "png"
    raise UsageError(f"--plot writes .html or .png, not .{ext}")


def coverage_plot(df, path: str) -> None:
    """Written as bams3 writes every output (bams3.output): a link or FIFO in place, a file
    replaced only when complete."""
    from .output import Output

    kind = check_plot_path(path)
    with Output(path) as f:
        if kind == "html":
            f.write(_html(df).encode())
        else:
            _png(df, f)


def _refs_in_order(df) -> list[str]:
    return list(dict.fromkeys(df["reference"].dropna()))


def _html(df) -> str:
    curves, means = normalised(df)
    refs = _refs_in_order(df)
    samples = list(curves)
    failed = df[df["error"].fillna("") != ""][["sample", "error"]].drop_duplicates()
    parts = ["<!doctype html><meta charset=utf-8><title>bams3 cohort coverage</title>",
             "<style>body{font:13px sans-serif;margin:20px}svg{margin:4px}td,th{padding:2px 6px;"
             "text-align:right}th{font-weight:normal;color:#555}</style>",
             f"<h2>Coverage of {len(samples)} samples, normalised by each sample's median</h2>",
             "<p>1.0: as deep as the sample usually is; 0.5: one copy of two (e.g. chrX in a male); "
             "0: a drop-out.</p>"]
    # the dosage table: mean normalised depth per sample and reference
    parts.append("<table><tr><th>sample</th>" + "".join(f"<th>{html.escape(r)}</th>" for r in refs) + "</tr>")
    for s in samples:
        cells = []
        for r in refs:
            v = means[s].get(r)
            if v is None or math.isnan(v):
                cells.append("<td></td>")
                continue
            shade = max(0, min(255, int(255 * min(v, Y_MAX) / Y_MAX)))
            colour = f"rgb({255 - shade // 2},{200 + shade // 5},{255 - shade // 3})" if v < 0.75 or v > 1.25 \
                else "#fff"
            cells.append(f'<td style="background:{colour}">{v:.2f}</td>')
        parts.append(f"<tr><th>{html.escape(str(s))}</th>{''.join(cells)}</tr>")
    parts.append("</table>")
    if len(failed):
        parts.append("<p>Failed: " + "; ".join(html.escape(f"{a}: {b}") for a, b in failed.itertuples(index=False))
                     + "</p>")
    # one panel per reference, a line per sample
    w, h, pad = 420, 150, 30
    for r in refs:
        xs = [curves[s][r][0] for s in samples if r in curves[s]]
        xmax = max((float(x.max()) for x in xs if len(x)), default=1.0) or 1.0
        svg = [f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}"><rect width="{w}" height="{h}" fill="#fafafa"/>',
               f'<text x="{pad}" y="14">{html.escape(r)}</text>']
        for level in (0.5, 1.0, 1.5):
            y = h - pad / 2 - level / Y_MAX * (h - pad)
            svg.append(f'<line x1="{pad}" x2="{w - 5}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ccc"/>'
                       f'<text x="2" y="{y + 4:.1f}" font-size="10">{level}</text>')
        for i, s in enumerate(samples):
            if r not in curves[s]:
                continue
            x, y = curves[s][r]
            px = pad + x / xmax * (w - pad - 5)
            py = h - pad / 2 - np.clip(y, 0, Y_MAX) / Y_MAX * (h - pad)
            pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py))
            svg.append(f'<polyline fill="none" stroke="{_PALETTE[i % len(_PALETTE)]}" stroke-width="1" '
                       f'points="{pts}"><title>{html.escape(str(s))}</title></polyline>')
        svg.append("</svg>")
        parts.append("".join(svg))
    return "\n".join(parts) + "\n"


def _png(df, out) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot out.png needs matplotlib (pip install matplotlib), or use --plot out.html") from None
    curves, means = normalised(df)
    refs = _refs_in_order(df)
    cols = min(4, max(1, len(refs)))
    rows = -(-len(refs) // cols) + 1
    fig = plt.figure(figsize=(4 * cols, 2.2 * rows))
    ax = fig.add_subplot(rows, 1, 1)
    samples = list(curves)
    mat = np.array([[means[s].get(r, np.nan) for r in refs] for s in samples]) if samples else np.zeros((0, 0))
    if mat.size:
        ax.imshow(mat, aspect="auto", vmin=0, vmax=Y_MAX, cmap="RdBu")
        ax.set_xticks(range(len(refs)), refs, rotation=90, fontsize=6)
        ax.set_yticks(range(len(samples)), samples, fontsize=6)
    ax.set_title("mean normalised depth (1.0 = the sample's median)", fontsize=8)
    for k, r in enumerate(refs):
        a = fig.add_subplot(rows, cols, cols + k + 1)
        for i, s in enumerate(samples):
            if r in curves[s]:
                x, y = curves[s][r]
                a.plot(x, np.clip(y, 0, Y_MAX), lw=0.7, color=_PALETTE[i % len(_PALETTE)])
        a.set_ylim(0, Y_MAX)
        a.set_title(r, fontsize=8)
        a.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=100, format="png")
    plt.close(fig)

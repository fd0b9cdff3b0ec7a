"""report.html: one self-contained page (images embedded) per run folder, rebuilt from its files."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from attndiff.fsutil import write_text
from attndiff.report import figures
from attndiff.run import Run

PLOTS = [  # (metric, title, log scale)
    ("loss", "training loss", True),
    ("fid", "FID (lower is better)", False),
    ("kid", "KID", False),
]


def _img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    figures.plt.close(fig)
    return buf.getvalue()


def fig_tag(fig, alt: str) -> str:
    """A matplotlib figure as an embedded <img> (the figure is closed)."""
    return _img_tag(_fig_png(fig), alt)


def table(records: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """An HTML table of records; columns are (key, header, format spec)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in columns)
    rows = "".join("<tr>" + "".join(
        f"<td>{'' if r.get(k) is None else format(r[k], spec)}</td>" for k, _, spec in columns) + "</tr>"
        for r in records)
    return f"<table><tr>{head}</tr>{rows}</table>"


def write_report(run_dir: str | Path, *, title: str | None = None, extra_sections: list[str] = ()) -> Path:
    run = Run(run_dir)
    records = run.metrics()
    title = title or run.path.name
    parts = [f"<h1>{html.escape(title)}</h1>"]

    finals = [r for r in records if r.get("fid") is not None]
    if finals:
        parts.append("<h2>Sample quality</h2>" + table(finals, [
            ("tag", "phase", "s"), ("step", "step", "d"), ("fid", "FID", ".2f"), ("fid_n", "N", "d"),
            ("kid", "KID", ".4f")]))

    plots = []
    for key, label, logy in PLOTS:
        fig = figures.curves([r for r in records if not r.get("tag", "").endswith("-eval")] if key == "loss"
                             else records, key, title=label, logy=logy)
        if fig is not None:
            plots.append(fig_tag(fig, label))
    if plots:
        parts.append("<h2>Curves</h2>" + "".join(plots))

    parts.extend(extra_sections)

    pngs = sorted(run.samples.glob("*.png"), key=lambda p: p.stat().st_mtime, reverse=True)[:12]
    if pngs:
        parts.append("<h2>Samples</h2>" + "".join(
            f"<figure>{_img_tag(p.read_bytes(), p.name)}<figcaption>{html.escape(p.name)}</figcaption></figure>"
            for p in pngs))

    config = run.path / "config.toml"
    if config.exists():
        parts.append(f"<h2>Config</h2><pre>{html.escape(config.read_text())}</pre>")
    if records:
        last = json.dumps(records[-1], indent=1)
        parts.append(f"<h2>Last metrics record</h2><pre>{html.escape(last)}</pre>")

    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
img{{max-width:100%;margin:4px}}figure{{display:inline-block;margin:6px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
pre{{background:#f6f6f6;padding:8px;overflow-x:auto}}</style></head><body>
{''.join(parts)}</body></html>"""
    path = run.path / "report.html"
    write_text(path, page)
    return path

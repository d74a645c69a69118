"""The self-contained HTML report: the table, and per experiment its OOF threshold curves and a few prediction
overlays, as PNGs embedded in base64 (no file next to it is needed to view it).

Threshold curves come from ``tune.csv``: per class, the best score at each threshold over the other parameters,
and the score at each threshold with nothing else (min size 0, no gates). Overlays: the first images of the
lowest fold's OOF with a true mask, the image with the truth's outline (green) and the OOF prediction at 0.5
(red), read from the experiment's data folder (left out when it is not there).
"""

from __future__ import annotations

import base64
import html
import io
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from kseg.atomic import atomic_write_text
from kseg.layout import RunLayout
from kseg.report.table import COLUMNS, ExperimentRow, row_cells

log = logging.getLogger(__name__)

STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:13px}"
    "td,th{border:1px solid #bbb;padding:3px 6px;vertical-align:top}th{background:#eee}img{margin:4px}"
)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def threshold_curves(tune_csv: Path, title: str) -> bytes | None:
    """PNG of score vs threshold per class from a ``tune.csv`` (None when absent or unreadable)."""
    if not tune_csv.is_file():
        return None
    df = pd.read_csv(tune_csv)
    if not {"class", "threshold", "score"} <= set(df.columns):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plain = pd.Series(True, index=df.index)
    for col in ("min_size", "min_area", "max_prob_gate", "aux_gate"):
        if col in df:
            plain &= df[col].fillna(0) == 0
    if "top_threshold" in df:
        plain &= df["top_threshold"].isna()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for name, part in df.groupby("class", sort=False):
        best = part.groupby("threshold")["score"].max()
        line = ax.plot(best.index, best.to_numpy(), marker="o", ms=3, label=f"{name}: best over other params")
        alone = part[plain[part.index]].groupby("threshold")["score"].max()
        ax.plot(alone.index, alone.to_numpy(), ls="--", color=line[0].get_color(), label=f"{name}: threshold only")
    ax.set(title=title, xlabel="threshold", ylabel="OOF score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> bytes:
    """PNG of ``image`` uint8 [H, W, 3] with the outline of ``truth`` bool [H, W] in green and ``pred`` in red."""
    out = image.copy()
    red = np.zeros_like(out)
    red[..., 0] = 255
    out[pred] = (0.55 * out[pred] + 0.45 * red[pred]).astype(np.uint8)
    contours, _ = cv2.findContours(truth.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (0, 255, 0), 1)
    ok, png = cv2.imencode(".png", cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode the overlay as PNG")
    return png.tobytes()


def overlays(runs_dir: Path, name: str, count: int = 3) -> list[bytes]:
    """Overlays of the first ``count`` OOF images with a true mask in the lowest fold ([] without OOF or data)."""
    from kseg.config import read_saved_config
    from kseg.data.images import read_image
    from kseg.train.oof_store import read_oof
    from kseg.train.truth import TruthTable

    layout = RunLayout(runs_dir, name)
    folds = [f for f, d in layout.folds() if layout.oof(f).probs.is_file()]
    if not folds:
        return []
    try:
        cfg = read_saved_config(layout.config)
        probs, ids = read_oof(layout.fold(folds[0]))
        size = tuple(probs.shape[2:])
        truth = TruthTable(cfg).masks(ids[: 8 * count], size)
        spec = cfg.competition
        out = []
        for i in [i for i in range(len(truth)) if truth[i].any()][:count]:
            c = int(np.argmax(truth[i].reshape(truth.shape[1], -1).sum(axis=1)))
            img = read_image(cfg.data_root / spec.train_images / spec.image_file(ids[i]))  # float RGB [0, 1]
            img = cv2.resize((img * 255).round().astype(np.uint8), size[::-1], interpolation=cv2.INTER_AREA)
            out.append(overlay(img, truth[i, c], np.asarray(probs[i, c]) > 127))
        return out
    except (OSError, ValueError, KeyError) as e:
        log.warning("%s: no prediction overlays (%s)", name, e)
        return []


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{png_data_uri(png)}">'


def report_html(rows: list[ExperimentRow], runs_dir: Path, commands: list[str] | None = None) -> str:
    """The whole HTML document."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row_cells(r)) + "</tr>" for r in rows)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>kseg report</title><style>{STYLE}</style>"]
    parts.append(f"</head><body><h1>kseg report: {html.escape(str(runs_dir))}</h1>")
    parts.append(f"<table><tr>{head}</tr>{body}</table>")
    if commands:
        parts.append("<h2>Commands</h2><pre>" + html.escape("\n".join(commands)) + "</pre>")
    for r in rows:
        parts.append(f"<h2>{html.escape(r.name)} ({r.kind})</h2>")
        curve = threshold_curves(RunLayout(runs_dir, r.name).tune_csv, r.name)
        parts.append(_img(curve, "OOF threshold curves") if curve else "<p>no tune.csv: run kseg tune</p>")
        parts += [_img(png, "prediction overlay") for png in overlays(runs_dir, r.name)]
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report_html(path: Path, rows: list[ExperimentRow], runs_dir: Path, commands: list[str] | None = None) -> Path:
    """Write ``report_html`` to ``path`` atomically."""
    atomic_write_text(path, report_html(rows, runs_dir, commands))
    return path

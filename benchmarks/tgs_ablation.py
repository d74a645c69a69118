"""Score the TGS config ablation (``tgs_ablation.sh``): each variant tuned with the same grid on the same OOF images.

Usage: python benchmarks/tgs_ablation.py -c configs/tgs-salt/unet-r34.yaml key=value ...  (the training overrides)
Writes results/tgs_ablation.json: one record per variant, ratio = its cross-validated tuned iou_ap / the
baseline's (goal 1.0: the change does not hurt), with the default (thr 0.5), optimistic and CV scores, the
chosen parameters and the per-fold best validation score. Prints a markdown table for quality.md.
"""

from __future__ import annotations

import csv
import logging
import os
import platform
import sys
from pathlib import Path

import numpy as np

from kseg.config import Config, load_config
from kseg.metrics import per_item_scores
from kseg.postprocess import apply_postprocess_batch
from kseg.train.truth import TruthTable
from kseg.tune.oof_set import load_oof
from kseg.tune.run import TuneResult, tune

from _common import write_results

GATES = "tune.aux_gates=[0,0.3,0.4,0.5,0.6,0.7,0.8,0.9]"
NO_GATE = "tune.aux_gates=[0]"

# (variant, experiment, tune overrides, what differs from the baseline)
VARIANTS = [
    (
        "baseline",
        "unet-r18-cpu",
        ["tune.oof_tta=", NO_GATE],
        "BCE+lovasz from the start, reflect pad 101->128, aux head, no TTA, no gate",
    ),
    ("aux_gate", "unet-r18-cpu", ["tune.oof_tta=none", GATES], "+ empty-mask gate on the aux head (tuned)"),
    ("hflip_tta", "unet-r18-cpu", ["tune.oof_tta=hflip", NO_GATE], "+ hflip TTA on the OOF"),
    ("hflip_tta_aux_gate", "unet-r18-cpu", ["tune.oof_tta=hflip", GATES], "+ hflip TTA + aux gate (shipped config)"),
    ("resize", "r18-cpu-resize", ["tune.oof_tta=", NO_GATE], "bilinear resize 101->128 instead of reflect pad"),
    ("resize_hflip_aux_gate", "r18-cpu-resize", ["tune.oof_tta=hflip", GATES], "resize + hflip TTA + aux gate"),
    ("bce_only", "r18-cpu-bce", ["tune.oof_tta=", NO_GATE], "BCE alone for 7 epochs"),
    ("bce_only_hflip_aux_gate", "r18-cpu-bce", ["tune.oof_tta=hflip", GATES], "BCE alone + hflip TTA + aux gate"),
    (
        "bce_then_lovasz",
        "r18-cpu-bce-lovasz",
        ["tune.oof_tta=", NO_GATE],
        "BCE 7 epochs, then lovasz hinge 3 epochs (lr 1e-4)",
    ),
    (
        "bce_then_bce",
        "r18-cpu-bce-more",
        ["tune.oof_tta=", NO_GATE],
        "control: BCE 7 epochs, then BCE 3 more epochs (lr 1e-4)",
    ),
    (
        "bce_then_lovasz_hflip_aux_gate",
        "r18-cpu-bce-lovasz",
        ["tune.oof_tta=hflip", GATES],
        "lovasz fine-tuned + hflip TTA + aux gate",
    ),
    (
        "bce_then_bce_hflip_aux_gate",
        "r18-cpu-bce-more",
        ["tune.oof_tta=hflip", GATES],
        "control + hflip TTA + aux gate",
    ),
]


# (change, variant, reference): the pairs that differ in exactly one thing
COMPARISONS = [
    ("aux gate", "aux_gate", "baseline"),
    ("hflip TTA", "hflip_tta", "baseline"),
    ("hflip TTA, with the aux gate", "hflip_tta_aux_gate", "aux_gate"),
    ("resize instead of pad", "resize", "baseline"),
    ("resize instead of pad, with TTA + gate", "resize_hflip_aux_gate", "hflip_tta_aux_gate"),
    ("BCE alone instead of BCE + lovasz (7 epochs)", "bce_only", "baseline"),
    ("BCE alone instead of BCE + lovasz, with TTA + gate", "bce_only_hflip_aux_gate", "hflip_tta_aux_gate"),
    ("lovasz fine-tuning vs 3 more BCE epochs", "bce_then_lovasz", "bce_then_bce"),
    (
        "lovasz fine-tuning vs 3 more BCE epochs, with TTA + gate",
        "bce_then_lovasz_hflip_aux_gate",
        "bce_then_bce_hflip_aux_gate",
    ),
]


def best_per_fold(run: Path) -> list[float]:
    out = []
    for fold_dir in sorted(run.glob("fold*")):
        rows = list(csv.DictReader(open(fold_dir / "metrics.csv")))
        out.append(round(max(float(r["val_metric"]) for r in rows), 4))
    return out


def per_image_cv(cfg: Config, result: TuneResult) -> dict[str, float]:
    """Each OOF image's score (mean over classes) under the parameters chosen on the other folds.

    Their mean is the CV score; paired with another variant's they give the standard error of a difference.
    """
    oof = load_oof(cfg, [cfg.name])
    truth = TruthTable(cfg)
    fold_pos = {f: i for i, f in enumerate(result.folds)}
    out: dict[str, float] = {}
    for chunk in oof.chunks(256):
        params = [result.grid.params(ch.cv_cells[fold_pos[chunk.fold]]) for ch in result.choices]
        aux = None if chunk.aux is None else chunk.aux.astype(np.float32) / np.float32(255)
        masks = apply_postprocess_batch(chunk.q, params, aux).astype(bool)
        scores = per_item_scores(masks, truth.masks(chunk.ids, oof.shape[1:]), cfg.competition.metric).mean(axis=1)
        out.update(zip(chunk.ids, scores.tolist(), strict=True))
    mean = float(np.mean(list(out.values())))
    if abs(mean - result.score_cv) > 1e-6:
        raise AssertionError(f"{cfg.name}: per-image CV mean {mean:.6f} != tune's CV {result.score_cv:.6f}")
    return out


def paired_delta(a: dict[str, float], base: dict[str, float]) -> tuple[float, float]:
    """(mean difference, its standard error) over the images both variants scored."""
    ids = sorted(set(a) & set(base))
    d = np.array([a[i] - base[i] for i in ids])
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    if len(argv) < 2 or argv[0] != "-c":
        raise SystemExit(__doc__)
    config, overrides = argv[1], [a for a in argv[2:] if not a.startswith("name=")]
    records, base_cv, base_images, per_variant = [], None, None, {}
    print(
        "| variant | change | folds (best val, thr 0.5) | OOF thr 0.5 | tuned | CV "
        "| CV vs baseline (± 1.96 SE) | params |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for variant, exp, tune_ov, what in VARIANTS:
        cfg = load_config(config, [*overrides, f"name=tgs-salt/{exp}", *tune_ov])
        try:
            result = tune(cfg, progress=False)
        except FileNotFoundError as e:
            print(f"| {variant} | {what} | not run: {e} |")
            continue
        images = per_image_cv(cfg, result)
        base_cv = result.score_cv if base_cv is None else base_cv
        base_images = images if base_images is None else base_images
        delta, se = paired_delta(images, base_images)
        per_variant[variant] = images
        p = result.params[0]
        params = f"thr {p.threshold:g}, min_size {p.min_size}" + (f", aux_gate {p.aux_gate:g}" if p.aux_gate else "")
        folds = best_per_fold(cfg.run_dir)
        records.append(
            {
                "name": f"tgs_ablation_{variant}",
                "ratio": result.score_cv / base_cv,
                "goal": 1.0,
                "change": what,
                "experiment": cfg.name,
                "oof_tta": cfg.tune.oof_tta or "(training OOF)",
                "oof_images": result.n_images,
                "folds_best_val_thr05": folds,
                "oof_default_thr05": result.score_default,
                "oof_tuned_optimistic": result.score_tuned,
                "oof_tuned_cv": result.score_cv,
                "params": params,
                "cv_delta_vs_baseline": delta,
                "cv_delta_standard_error": se,
                "hardware": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}",
            }
        )
        print(
            f"| {variant} | {what} | {', '.join(f'{v:.4f}' for v in folds)} | {result.score_default:.4f} | "
            f"{result.score_tuned:.4f} | {result.score_cv:.4f} | {delta:+.4f} ± {1.96 * se:.4f} | {params} |"
        )
    print("\n| change (one thing differs) | variant | reference | CV difference (± 1.96 SE, paired over images) |")
    print("|---|---|---|---|")
    by_name = {r["name"]: r for r in records}
    for change, variant, ref in COMPARISONS:
        if variant in per_variant and ref in per_variant:
            delta, se = paired_delta(per_variant[variant], per_variant[ref])
            by_name[f"tgs_ablation_{variant}"].setdefault("comparisons", []).append(
                {"change": change, "reference": ref, "cv_delta": delta, "standard_error": se}
            )
            print(f"| {change} | {variant} | {ref} | {delta:+.4f} ± {1.96 * se:.4f} |")
    write_results("tgs_ablation", records)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main(sys.argv[1:])

"""Finding the fold checkpoints of one or several experiments (``runs/<exp>/fold<K>/best.pt``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kseg.layout import BEST, RunLayout


def parse_folds(text: str | Sequence[int] | None) -> tuple[int, ...]:
    """``"0,1,2"`` (or a sequence of ints) -> (0, 1, 2); ``""`` / None -> () meaning every fold found."""
    if text is None:
        return ()
    if not isinstance(text, str):
        return tuple(int(f) for f in text)
    out = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if not part.isdigit():
            raise ValueError(f"--folds: {part!r} is not a fold number (expected e.g. 0,1,2)")
        out.append(int(part))
    if len(set(out)) != len(out):
        raise ValueError(f"--folds: {text!r} lists a fold twice")
    return tuple(out)


def find_checkpoints(
    runs_dir: str | Path, exp: str, folds: Sequence[int] = (), name: str = BEST
) -> list[tuple[int, Path]]:
    """(fold, path) of ``runs_dir/exp/fold<K>/name`` sorted by fold; every fold found when ``folds`` is empty.

    Raises FileNotFoundError naming the missing file (or the run folder when no fold has one).
    """
    layout = RunLayout(Path(runs_dir), exp)
    run = layout.root
    if folds:
        found = [(int(k), layout.checkpoint(int(k), name)) for k in folds]
        missing = [str(p) for _, p in found if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"checkpoint not found: {missing[0]}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + f"; train it with `kseg train -c <config> --fold {found[0][0]}` or choose other --folds"
            )
        return sorted(found)
    found = [(k, d / name) for k, d in layout.folds() if (d / name).is_file()]
    if not found:
        raise FileNotFoundError(f"no checkpoint {run}/fold*/{name}: train the experiment first (`kseg train`)")
    return sorted(found)

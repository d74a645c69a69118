"""TTA pairs: round trips on asymmetric probes, each view really moves pixels, hand-checked geometry."""

from __future__ import annotations

import pytest
import torch

from kseg.registry import RegistryError
from kseg.tta import PAIRS, get_tta, swaps_hw, tta_names


def probe(n: int = 2, c: int = 3, h: int = 4, w: int = 6) -> torch.Tensor:
    """All values distinct: no symmetry of the square or of the rectangle maps it to itself."""
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w)


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("shape", [(2, 3, 4, 6), (1, 2, 5, 5), (3, 1, 7, 2)])
def test_pair_round_trips_on_asymmetric_probe(name: str, shape: tuple[int, int, int, int]) -> None:
    pair = PAIRS[name]
    x = probe(*shape)
    y = pair.augment(x)
    expected_hw = (shape[3], shape[2]) if pair.swaps_hw else (shape[2], shape[3])
    assert tuple(y.shape) == shape[:2] + expected_hw
    back = pair.deaugment(y)
    assert torch.equal(back, x)
    if name != "identity":
        if y.shape == x.shape:
            assert not torch.equal(y, x), f"{name} left the probe unchanged"
    # the view acts on each (item, channel) plane alone: never mixes batch items or channels
    for i in range(shape[0]):
        for c in range(shape[1]):
            assert torch.equal(y[i, c], pair.augment(x[i : i + 1, c : c + 1])[0, 0])


def test_views_are_distinct_on_a_square_probe() -> None:
    x = probe(1, 1, 5, 5)
    views = {name: p.augment(x) for name, p in PAIRS.items()}
    names = sorted(views)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.equal(views[a], views[b]), f"{a} and {b} give the same view"


def test_hand_checked_geometry() -> None:
    x = torch.tensor([[1, 2, 3], [4, 5, 6]]).reshape(1, 1, 2, 3)  # H=2, W=3
    out = {n: p.augment(x)[0, 0].tolist() for n, p in PAIRS.items()}
    assert out["hflip"] == [[3, 2, 1], [6, 5, 4]]
    assert out["vflip"] == [[4, 5, 6], [1, 2, 3]]
    assert out["rot180"] == [[6, 5, 4], [3, 2, 1]]
    assert out["rot90"] == [[3, 6], [2, 5], [1, 4]]  # counter-clockwise
    assert out["rot270"] == [[4, 1], [5, 2], [6, 3]]  # clockwise
    assert out["transpose"] == [[1, 4], [2, 5], [3, 6]]
    assert out["antitranspose"] == [[6, 3], [5, 2], [4, 1]]


def test_modes() -> None:
    assert [p.name for p in get_tta("none")] == ["identity"]
    assert [p.name for p in get_tta("hflip")] == ["identity", "hflip"]
    assert [p.name for p in get_tta("vflip")] == ["identity", "vflip"]
    assert [p.name for p in get_tta("HVflip")] == ["identity", "hflip", "vflip", "rot180"]
    assert sorted(p.name for p in get_tta("d4")) == sorted(PAIRS)
    assert len(get_tta("d4")) == 8
    assert tta_names() == ["d4", "hflip", "hvflip", "none", "vflip"]
    assert swaps_hw("d4") and not swaps_hw("hvflip")
    with pytest.raises(RegistryError, match="d4"):
        get_tta("rot")


def test_deaugmented_views_average_back_to_a_d4_invariant_result() -> None:
    """A 'model' that is a pointwise function: deaugmented views all agree with the plain output."""
    x = probe(1, 2, 4, 4)
    for p in get_tta("d4"):
        assert torch.equal(p.deaugment(torch.sigmoid(p.augment(x))), torch.sigmoid(x))


def test_works_on_cuda_like_dtypes() -> None:
    x = probe(1, 1, 3, 4).to(torch.float16)
    for p in get_tta("d4"):
        assert p.deaugment(p.augment(x)).dtype == torch.float16

"""Item 7: RLE codec properties over many seeded random masks, and rejection of malformed strings.

tests/test_rle.py has the hand-computed strings, a 200-shape round trip against the classic Kaggle
codec, and one example per malformed-string rule. Here (seeded numpy loops, no hypothesis): the
canonical-form invariants of every encoded string, masks touching each border, and random *mutations*
of valid strings, every one of which must be rejected by ``validate_rle`` and ``decode`` alike.
"""

from __future__ import annotations

import numpy as np
import pytest

from kseg.data.rle import decode, encode, rle_area, validate_rle

N_MASKS = 400


def _random_mask(rng: np.random.Generator) -> np.ndarray:
    h, w = (int(v) for v in rng.integers(1, 97, size=2))
    kind = rng.integers(0, 5)
    if kind == 0:  # noise of random density
        return (rng.random((h, w)) < rng.random()).astype(np.uint8)
    if kind == 1:  # rectangles (long runs crossing columns)
        m = np.zeros((h, w), np.uint8)
        for _ in range(rng.integers(1, 4)):
            r0, c0 = rng.integers(0, h), rng.integers(0, w)
            m[r0 : r0 + rng.integers(1, h + 1), c0 : c0 + rng.integers(1, w + 1)] = 1
        return m
    if kind == 2:  # one border line (top, bottom, left or right)
        m = np.zeros((h, w), np.uint8)
        [
            lambda: m.__setitem__((0, slice(None)), 1),
            lambda: m.__setitem__((-1, slice(None)), 1),
            lambda: m.__setitem__((slice(None), 0), 1),
            lambda: m.__setitem__((slice(None), -1), 1),
        ][rng.integers(0, 4)]()
        return m
    if kind == 3:  # corners only
        m = np.zeros((h, w), np.uint8)
        m[[0, 0, -1, -1], [0, -1, 0, -1]] = rng.integers(0, 2, size=4)
        return m
    return np.full((h, w), int(rng.integers(0, 2)), np.uint8)  # empty or full


def _pairs(rle: str) -> np.ndarray:
    return np.array(rle.split(), dtype=np.int64).reshape(-1, 2)


def test_canonical_form_and_round_trips():
    rng = np.random.default_rng(90210)
    for _ in range(N_MASKS):
        mask = _random_mask(rng)
        h, w = mask.shape
        rle = encode(mask)
        where = f"mask {h}x{w} sum {mask.sum()}"
        if not mask.any():
            assert rle == "", where
        else:
            assert rle == rle.strip() and "  " not in rle, where  # single spaces, no padding
            runs = _pairs(rle)
            starts, lengths = runs[:, 0], runs[:, 1]
            assert (starts >= 1).all() and (lengths >= 1).all(), where
            assert (starts[1:] > starts[:-1] + lengths[:-1]).all(), where  # sorted, never touching: canonical
            assert starts[-1] + lengths[-1] - 1 <= h * w, where
        assert rle_area(rle) == mask.sum(), where
        assert validate_rle(rle, (h, w)) == [], where
        assert np.array_equal(decode(rle, (h, w)), mask), where
        assert encode(decode(rle, (h, w))) == rle, where  # canonical strings are fixed points
        # column-major: the transposed mask's runs are the row-major runs of the original
        flat = np.concatenate([[0], mask.ravel(order="C"), [0]])
        edges = np.flatnonzero(np.diff(flat)) + 1
        assert encode(mask.T) == " ".join(f"{a} {b - a}" for a, b in zip(edges[::2], edges[1::2], strict=True)), where


@pytest.mark.parametrize("h, w", [(1, 1), (1, 7), (7, 1), (5, 4)])
def test_full_empty_and_borders_by_hand(h, w):
    n = h * w
    assert encode(np.ones((h, w), np.uint8)) == f"1 {n}"
    assert encode(np.zeros((h, w), np.uint8)) == ""
    left = np.zeros((h, w), np.uint8)
    left[:, 0] = 1
    assert encode(left) == f"1 {h}"
    right = np.zeros((h, w), np.uint8)
    right[:, -1] = 1
    assert encode(right) == f"{n - h + 1} {h}"
    bottom_right = np.zeros((h, w), np.uint8)
    bottom_right[-1, -1] = 1
    assert encode(bottom_right) == f"{n} 1"
    assert validate_rle(f"{n} 1", (h, w)) == [] and validate_rle(f"{n} 2", (h, w)) != []


# --------------------------------------------------------------------------- malformed strings


def _mutations(runs: np.ndarray, n: int, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """(name, mutated string, words the problem must contain) for a valid run table [K, 2] of an n-pixel image."""

    def s(table) -> str:
        return " ".join(str(int(v)) for v in np.asarray(table).ravel())

    k = int(rng.integers(0, len(runs)))
    out = [("odd", s(runs)[: s(runs).rfind(" ")], "odd number")]
    r = runs.copy()
    r[k, 0] = 0  # noqa: E702
    out.append(("start0", s(r), "start < 1"))
    r = runs.copy()
    r[k, 1] = 0  # noqa: E702
    out.append(("len0", s(r), "length < 1"))
    r = runs.copy()
    r[-1, 1] = n - r[-1, 0] + 2  # noqa: E702 - ends one pixel past the image
    out.append(("past", s(r), "past the image end"))
    bad = str(rng.choice(["1.5", "x", "1e3", "+3", "0x10", "½", "nan"]))
    tokens = s(runs).split()
    tokens[2 * k + int(rng.integers(0, 2))] = bad
    out.append(("token", " ".join(tokens), "non-integer"))
    r = runs.copy()
    r[k, 1] = -r[k, 1]  # noqa: E702
    out.append(("negative", s(r), "length < 1"))
    out.append(("comma", s(runs).replace(" ", ",", 1), "non-integer"))
    if len(runs) >= 2:
        r = runs.copy()
        r[[0, 1]] = r[[1, 0]]  # noqa: E702
        out.append(("unsorted", s(r), "sorted"))
        r = runs.copy()
        r[0, 1] = r[1, 0] - r[0, 0] + 1  # noqa: E702 - run 0 now covers run 1's first pixel
        out.append(("overlap", s(r), "overlaps"))
    return out


def test_random_mutations_of_valid_strings_are_all_rejected():
    rng = np.random.default_rng(4242)
    seen: dict[str, int] = {}
    trials = 0
    while trials < 250:
        mask = _random_mask(rng)
        if mask.sum() == 0 or mask.size < 4:
            continue
        trials += 1
        h, w = mask.shape
        runs = _pairs(encode(mask))
        for name, bad, words in _mutations(runs, h * w, rng):
            problems = validate_rle(bad, (h, w))
            assert problems, f"{name}: {bad!r} accepted for {h}x{w}"
            if bad.strip() in ("-1", "1 0"):  # another dialect's empty-mask token gets its own message
                words = "is how other competitions write an empty mask"
            assert any(words in p for p in problems), f"{name}: {bad!r} -> {problems}"
            with pytest.raises(ValueError) as e:
                decode(bad, (h, w))
            assert str(e.value) == problems[0]  # decode raises the first problem validate_rle reports
            seen[name] = seen.get(name, 0) + 1
    assert set(seen) == {"odd", "start0", "len0", "past", "token", "negative", "comma", "unsorted", "overlap"}
    assert min(seen.values()) >= 50  # every rule exercised many times

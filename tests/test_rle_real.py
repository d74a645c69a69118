"""Real competitions' published RLE strings (tests/fixtures/rle_real.json) decode to the published pixels and
re-encode byte for byte in their dialect, and every shipped spec names the dialect its competition uses.

Each fixture holds a string found in public material (a train csv's row, or its first runs: a prefix of an RLE is
an RLE), the image size and the pixels it lights as ``[line, first, last]`` (0-based, inclusive; line = row in row
order, column in column order), computed from the published rule, not by kseg. Gigapixel slides (HuBMAP) are
checked on the crop of the lines the runs touch: shifting the starts by whole lines keeps the string's meaning.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from kseg.data.rle import RleDialect, decode, encode, rle_area, validate_rle

from conftest import REPO

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "rle_real.json").read_text())
WITH_STRING = [f for f in FIXTURES if f["rle"]]
IDS = [f["name"] for f in WITH_STRING]


def dialect_of(fact: dict) -> RleDialect:
    return RleDialect(order=fact["order"], starts=fact["starts"], base=fact["base"], empty=fact["empty"])


def crop(fact: dict) -> tuple[str, tuple[int, int], int]:
    """(string, shape, first line) of the crop to the lines the runs touch."""
    h, w = fact["shape"]
    line_len = w if fact["order"] == "row" else h
    lines = [r[0] for r in fact["runs"]]
    lo, n_lines = min(lines), max(lines) - min(lines) + 1
    values = [int(v) for v in fact["rle"].split()]
    values[0] -= lo * line_len  # relative strings: only the first start is absolute
    if fact["starts"] == "absolute":
        for j in range(2, len(values), 2):
            values[j] -= lo * line_len
    shape = (n_lines, w) if fact["order"] == "row" else (h, n_lines)
    return " ".join(map(str, values)), shape, lo


def expected_mask(fact: dict, shape: tuple[int, int], lo: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    for line, first, last in fact["runs"]:
        if fact["order"] == "row":
            mask[line - lo, first : last + 1] = 1
        else:
            mask[first : last + 1, line - lo] = 1
    return mask


def test_fixtures_cover_the_shipped_specs_and_three_more() -> None:
    slugs = {f["competition"] for f in WITH_STRING}
    shipped = {yaml.safe_load(p.read_text()).get("kaggle") for p in (REPO / "configs/competitions").glob("*.yaml")}
    shipped.discard(None)
    assert shipped <= slugs  # every shipped Kaggle competition has a real string
    assert len(slugs - shipped) >= 3
    assert all(f["source"] for f in FIXTURES)


@pytest.mark.parametrize("fact", WITH_STRING, ids=IDS)
def test_real_string_lights_the_published_pixels(fact: dict) -> None:
    dialect = dialect_of(fact)
    rle, shape, lo = crop(fact)
    want = expected_mask(fact, shape, lo)
    got = decode(rle, shape, dialect)
    np.testing.assert_array_equal(got, want)
    assert encode(want, dialect) == rle  # byte for byte
    assert rle_area(fact["rle"], dialect) == want.sum() == sum(r[2] - r[1] + 1 for r in fact["runs"])


@pytest.mark.parametrize("fact", WITH_STRING, ids=IDS)
def test_real_string_at_full_size(fact: dict) -> None:
    """Valid at the image's size in its dialect; decoded and re-encoded whole where the image is small."""
    dialect = dialect_of(fact)
    shape = tuple(fact["shape"])
    assert validate_rle(fact["rle"], shape, dialect) == []
    if shape[0] * shape[1] <= 4_000_000:
        mask = decode(fact["rle"], shape, dialect)
        assert encode(mask, dialect) == fact["rle"]
        line, first, last = fact["runs"][0]
        row, col = (line, first) if fact["order"] == "row" else (first, line)
        assert mask[row, col] == 1 and mask.sum() == rle_area(fact["rle"], dialect)


@pytest.mark.parametrize(
    "fact",
    [f for f in WITH_STRING if f["shape"][0] != f["shape"][1]],
    ids=[f["name"] for f in WITH_STRING if f["shape"][0] != f["shape"][1]],
)
def test_the_other_order_does_not_light_the_published_pixels(fact: dict) -> None:
    """A non-square image tells the orders apart: the wrong one lights other pixels (or does not fit)."""
    other = "column" if fact["order"] == "row" else "row"
    dialect = dialect_of(fact)
    wrong = RleDialect(order=other, starts=dialect.starts, base=dialect.base, empty=dialect.empty)
    rle, shape, lo = crop(fact)
    try:
        got = decode(rle, shape, wrong)
    except ValueError:
        return  # in the wrong order the crop's runs fall outside it
    assert not np.array_equal(got, expected_mask(fact, shape, lo))


def test_every_shipped_spec_names_its_competitions_dialect() -> None:
    by_slug = {f["competition"]: f for f in WITH_STRING}
    checked = 0
    for path in sorted((REPO / "configs/competitions").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        assert "rle" in spec, f"{path.name} names no RLE dialect"
        fact = by_slug.get(spec.get("kaggle"))
        if fact is None:
            continue  # our own layouts
        assert RleDialect(**spec["rle"]) == dialect_of(fact), path.name
        checked += 1
    assert checked >= 4  # severstal, carvana, clouds, tgs-salt

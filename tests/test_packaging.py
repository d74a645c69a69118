"""pyproject.toml and requirements.txt agree; every third-party import is declared; the kernel's wheel says so."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "kseg"
# Imported without being a dependency: the kernel script falls back to pip's vendored packaging.
UNDECLARED_OK = {"pip"}


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def runtime() -> dict[str, Requirement]:
    """Canonical name -> requirement of ``[project] dependencies``."""
    reqs = [Requirement(r) for r in project()["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


def extras() -> dict[str, dict[str, Requirement]]:
    """Extra -> {canonical name -> requirement}, kseg's own extras (``kseg[wandb]``) left out."""
    out = {}
    for extra, specs in project()["optional-dependencies"].items():
        reqs = [Requirement(r) for r in specs]
        out[extra] = {canonicalize_name(r.name): r for r in reqs if canonicalize_name(r.name) != "kseg"}
    return out


def declared() -> dict[str, Requirement]:
    """Runtime and extra requirements by canonical name."""
    out = dict(runtime())
    for reqs in extras().values():
        for name, req in reqs.items():
            assert name not in out, f"{name} is declared twice in pyproject.toml"
            out[name] = req
    return out


def pinned() -> dict[str, Requirement]:
    """Canonical name -> requirement of every requirements.txt line."""
    out = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            req = Requirement(text)
            assert canonicalize_name(req.name) not in out, f"requirements.txt names {req.name} twice"
            out[canonicalize_name(req.name)] = req
    return out


def pin_of(req: Requirement) -> str:
    pins = [s.version for s in req.specifier if s.operator == "=="]
    assert len(pins) == 1 and len(req.specifier) == 1 and req.marker is None, (
        f"requirements.txt: {req} is not an exact pin (name==version)"
    )
    return pins[0]


def test_requirements_pin_exactly_what_pyproject_declares() -> None:
    have, want = set(pinned()), set(declared())
    assert have - want == set(), "in requirements.txt but not declared in pyproject.toml (runtime or an extra)"
    assert want - have == set(), "declared in pyproject.toml but not pinned in requirements.txt"


def test_pins_satisfy_the_lower_bounds() -> None:
    bounds = declared()
    for name, req in pinned().items():
        version = pin_of(req)
        assert bounds[name].specifier, f"pyproject.toml: {bounds[name]} has no lower bound"
        assert bounds[name].specifier.contains(version, prereleases=True), (
            f"requirements.txt pins {req}, outside pyproject.toml's {bounds[name]}"
        )


def test_extras_reach_the_dev_extra() -> None:
    """``pip install -e .[dev]`` (make) installs the test tools and every other extra."""
    specs = [Requirement(r) for r in project()["optional-dependencies"]["dev"]]
    own = {e for r in specs if canonicalize_name(r.name) == "kseg" for e in r.extras}
    assert own == set(extras()) - {"dev"}
    assert {"pytest", "ruff"} <= set(extras()["dev"])


def imports(path: Path) -> tuple[set[str], set[str]]:
    """Top-level module names imported by ``path``: (at module level, inside functions)."""
    tree = ast.parse(path.read_text(), str(path))
    functions = [f for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inner = {id(n) for f in functions for n in ast.walk(f)}
    top: set[str] = set()
    lazy: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        (lazy if id(node) in inner else top).update(n.split(".")[0] for n in names)
    return top, lazy


def test_every_third_party_import_is_declared() -> None:
    """Module-level imports need a runtime dependency; an extra's package may only be imported lazily."""
    dists = importlib.metadata.packages_distributions()
    run, every = set(runtime()), set(declared())
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        top, lazy = imports(path)
        for module, eager in [(m, True) for m in top] + [(m, False) for m in lazy - top]:
            if module in sys.stdlib_module_names or module == "kseg" or module in UNDECLARED_OK:
                continue
            names = {canonicalize_name(d) for d in dists.get(module, [])}
            rel = path.relative_to(REPO)
            if not names:
                problems.append(f"{rel}: imports {module}, which no installed distribution provides")
            elif not names & (run if eager else every):
                need = "a runtime dependency (module-level import)" if eager else "a dependency or an extra"
                problems.append(f"{rel}: imports {module} ({', '.join(sorted(names))}): not {need} in pyproject.toml")
    assert not problems, "\n".join(problems)


def test_the_kernel_wheel_declares_the_runtime_dependencies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kseg wheel a kernel ships lists pyproject's dependencies; the kernel's check skips the extras."""
    from kseg.kernel import script_template
    from kseg.kernel.wheels import build_kseg_wheel

    wheel = build_kseg_wheel(tmp_path, source=REPO)
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        requires = HeaderParser().parsestr(z.read(meta).decode()).get_all("Requires-Dist") or []
    reqs = [Requirement(r) for r in requires]
    plain = {canonicalize_name(r.name): str(r.specifier) for r in reqs if r.marker is None}
    assert plain == {name: str(req.specifier) for name, req in runtime().items()}
    optional = {n for reqs_of in extras().values() for n in reqs_of}
    assert {canonicalize_name(r.name) for r in reqs if r.marker is not None} == optional | {"kseg"}

    real = importlib.metadata.requires
    monkeypatch.setattr(importlib.metadata, "requires", lambda d: requires if d == "kseg" else real(d))
    script_template.check_requirements(["kseg"])  # this environment stands in for the Kaggle image
    monkeypatch.setattr(importlib.metadata, "requires", lambda d: ["torch>=99"] if d == "kseg" else real(d))
    with pytest.raises(SystemExit, match="kseg needs torch>=99"):
        script_template.check_requirements(["kseg"])

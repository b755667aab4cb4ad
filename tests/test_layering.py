"""Imports run one way: the layers and rules written as import-linter contracts in
pyproject.toml, no import cycles anywhere; only the executors (and the Ray Data loader)
import Ray; only the catalog's store opens DuckDB; pyproject lists every package."""

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_mmdata_never_imports_annotation_or_train():
    for path in _files("mmdata"):
        if "train" in path.relative_to(ROOT / "mmdata").parts:
            continue
        bad = {
            n
            for n in _imports(path)
            if n.split(".")[0] == "annotation" or n.startswith("mmdata.train")
        }
        assert not bad, f"{path} imports {bad}"


def test_only_executors_import_ray():
    for path in _files("mmdata") + _files("annotation"):
        if path.parent.name == "executors" or path.name == "ray_data.py":
            continue
        assert not {n for n in _imports(path) if n.split(".")[0] == "ray"}, path


def test_only_the_catalog_imports_duckdb():
    users = {
        p.relative_to(ROOT).as_posix()
        for p in _files("mmdata") + _files("annotation")
        if any(n.split(".")[0] == "duckdb" for n in _imports(p))
    }
    assert users <= {"mmdata/catalog/store.py"}


def test_import_linter_contracts_hold():
    importlinter = pytest.importorskip("importlinter.cli")
    assert importlinter.lint_imports(config_filename=str(ROOT / "pyproject.toml")) == 0


def test_no_import_cycles():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("mmdata", "annotation")
    cycles = [
        (a, b)
        for a in graph.modules
        for b in graph.find_modules_directly_imported_by(a)
        if b in graph.modules and b != a and graph.chain_exists(importer=b, imported=a)
    ]
    assert not cycles, cycles[:5]


def test_pyproject_lists_every_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in [
            *(ROOT / "mmdata").rglob("__init__.py"),
            *(ROOT / "annotation").rglob("__init__.py"),
        ]
    }
    mapped = set(config["package-dir"])  # data folders installed inside mmdata
    assert set(config["packages"]) == found | mapped

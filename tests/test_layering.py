"""Imports run one way: annotation -> mmdata, mmdata.train -> mmdata (DESIGN.md section 1);
only the executors import Ray; only catalog.py opens DuckDB read-write."""

import ast
from pathlib import Path

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
        if path.parent.name == "executors":
            continue
        assert not {n for n in _imports(path) if n.split(".")[0] == "ray"}, path


def test_only_the_catalog_imports_duckdb():
    users = {
        p.relative_to(ROOT).as_posix()
        for p in _files("mmdata") + _files("annotation")
        if any(n.split(".")[0] == "duckdb" for n in _imports(p))
    }
    assert users <= {"mmdata/catalog.py"}

"""The Julia sources, checked where no Julia is installed: every .jl file parses with
tree-sitter-julia (a syntax error fails the default suite), and the Julia environment is
one list (julia/Project.toml) that the top-level Project.toml only points at."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JL_FILES = sorted(p for p in ROOT.rglob("*.jl") if ".venv" not in p.parts)


def _parser():
    tree_sitter = pytest.importorskip("tree_sitter")
    tree_sitter_julia = pytest.importorskip("tree_sitter_julia")
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_julia.language()))


def _errors(node, out):
    if node.is_error or node.is_missing:
        out.append((node.start_point[0] + 1, node.start_point[1] + 1, node.type))
    for child in node.children:
        _errors(child, out)
    return out


def test_the_julia_package_has_its_sources_and_check():
    names = {p.relative_to(ROOT).as_posix() for p in JL_FILES}
    assert {"julia/src/NesterovNODEJulia.jl", "julia/check.jl", "julia/test/runtests.jl"} <= names


@pytest.mark.parametrize("path", JL_FILES, ids=[p.relative_to(ROOT).as_posix() for p in JL_FILES])
def test_every_julia_file_parses_without_syntax_errors(path):
    tree = _parser().parse(path.read_bytes())
    errors = _errors(tree.root_node, [])
    assert not tree.root_node.has_error and not errors, f"{path}: syntax errors at {errors[:5]}"


def test_the_parser_sees_a_syntax_error():
    tree = _parser().parse(b"function f(x)\n    x +* 1\nend end\n")
    assert tree.root_node.has_error


def _project(path):
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads(path.read_text())


def test_every_package_the_julia_sources_use_is_a_dependency_with_a_compat_bound():
    project = _project(ROOT / "julia" / "Project.toml")
    deps, compat = set(project["deps"]), set(project["compat"])
    stdlib_ok = {"Random", "LinearAlgebra"}  # stdlibs: loadable without a compat entry
    used = set()
    for path in (ROOT / "julia").rglob("*.jl"):
        for line in path.read_text().splitlines():
            m = re.match(r"\s*(?:using|import)\s+([A-Za-z0-9_.]+)", line)
            if m:
                used.add(m.group(1).split(".")[0])
    used -= {project["name"]}
    assert used <= deps | stdlib_ok, used - deps
    assert (deps - {"LinearAlgebra"}) <= compat, deps - compat
    assert "julia" in compat


def test_the_top_level_project_points_at_julia_and_lists_nothing_else():
    top = _project(ROOT / "Project.toml")
    package = _project(ROOT / "julia" / "Project.toml")
    assert set(top["deps"]) == {package["name"], "PythonCall"}
    assert top["deps"][package["name"]] == package["uuid"]
    assert top["sources"][package["name"]]["path"] == "julia"

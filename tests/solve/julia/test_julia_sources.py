"""The Julia sources, checked where no Julia is installed (tree-sitter-julia over the .jl
files, tomllib over the TOML files): every .jl file parses; every package a file loads is
declared for its context (the package's [deps], an extension's weak dependencies, the test
target for test/ and check.jl) and every dependency is used; every name taken from
OrdinaryDiffEq, SciMLSensitivity, SciMLBase and ADTypes exists in those packages' sources
at both ends of the [compat] bounds (julia_upstream_names.json); algorithm specs are never
evaluated; and julia/Project.toml, the top-level Project.toml, juliapkg.json and the
Python extra agree."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import REPO

ROOT = REPO
JULIA = ROOT / "julia"
JL_FILES = sorted({p.resolve() for p in JULIA.rglob("*.jl")})
PACKAGE = ROOT / "python" / "nesterovnode"
NAMES = json.loads((PACKAGE / "solve" / "engines" / "julia_upstream_names.json").read_text())
UPSTREAM = tuple(NAMES["packages"])  # OrdinaryDiffEq, SciMLSensitivity, SciMLBase, ADTypes
#: modules every Julia file reaches without declaring them
BUILTIN = {"Base", "Core", "Main"}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _parser():
    tree_sitter = pytest.importorskip("tree_sitter")
    tree_sitter_julia = pytest.importorskip("tree_sitter_julia")
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_julia.language()))


def _tree(path: Path):
    return _parser().parse(path.read_bytes()).root_node


def _walk(node):
    yield node
    for child in node.children:
        yield from _walk(child)


def _errors(node, out):
    if node.is_error or node.is_missing:
        out.append((node.start_point[0] + 1, node.start_point[1] + 1, node.type))
    for child in node.children:
        _errors(child, out)
    return out


def _text(node) -> str:
    return node.text.decode()


def _loads(root):
    """(module, names or None for a bare `using M`, line) of every using/import."""
    out = []
    for node in _walk(root):
        if node.type not in ("using_statement", "import_statement"):
            continue
        for part in node.children:
            line = part.start_point[0] + 1
            if part.type == "selected_import":
                ids = [c for c in part.children if c.type not in (":", ",")]
                module = _text(ids[0]).split(".")[0]
                names = []
                for c in ids[1:]:
                    names.append(_text(c.children[0]) if c.type == "import_alias" else _text(c))
                out.append((module, names, line))
            elif part.type in ("identifier", "scoped_identifier"):
                out.append((_text(part).split(".")[0], None, line))
    return out


def _qualified(root):
    """(module, name, line) of every `Module.name` for the upstream packages."""
    out = []
    for node in _walk(root):
        if node.type == "field_expression" and node.children[0].type == "identifier":
            module = _text(node.children[0])
            if module in UPSTREAM:
                out.append((module, _text(node.children[-1]), node.start_point[0] + 1))
    return out


def _project(path):
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads(path.read_text())


def _declared(path: Path) -> set[str]:
    """The packages a file may load: its context's declarations."""
    project = _project(JULIA / "Project.toml")
    own = {project["name"]} | BUILTIN
    deps = set(project["deps"])
    rel = path.relative_to(JULIA).as_posix()
    if rel.startswith("src/"):
        return deps | own
    if rel.startswith("ext/"):
        triggers = project["extensions"][path.stem]
        return deps | own | set([triggers] if isinstance(triggers, str) else triggers)
    if rel == "check_gpu.jl":
        # run in the environment juliapkg manages (with the GPU packages), not in Pkg.test's
        # sandbox: there standard libraries load from the default load path
        return deps | own | set(project["weakdeps"]) | {"Random"}
    # test/*.jl and check.jl run in Pkg.test's sandbox: deps plus the test target
    return deps | own | set(project["targets"]["test"])


# -- syntax ------------------------------------------------------------------------------------
def test_the_julia_package_has_its_sources_extension_and_check():
    names = {_rel(p) for p in JL_FILES}
    assert {
        "julia/src/NesterovNODEJulia.jl",
        "julia/ext/NesterovNODEJuliaGPUExt.jl",
        "julia/check.jl",
        "julia/check_gpu.jl",
        "julia/test/runtests.jl",
    } <= names


@pytest.mark.parametrize("path", JL_FILES, ids=[_rel(p) for p in JL_FILES])
def test_every_julia_file_parses_without_syntax_errors(path):
    tree = _parser().parse(path.read_bytes())
    errors = _errors(tree.root_node, [])
    assert not tree.root_node.has_error and not errors, f"{path}: syntax errors at {errors[:5]}"


def test_the_parser_sees_a_syntax_error():
    tree = _parser().parse(b"function f(x)\n    x +* 1\nend end\n")
    assert tree.root_node.has_error


# -- loads and dependencies ----------------------------------------------------------------------
@pytest.mark.parametrize("path", JL_FILES, ids=[_rel(p) for p in JL_FILES])
def test_every_package_a_file_loads_is_declared_for_its_context(path):
    allowed = _declared(path)
    undeclared = [(m, line) for m, _, line in _loads(_tree(path)) if m not in allowed]
    assert not undeclared, f"{_rel(path)} loads packages its context does not declare: {undeclared}"


def test_the_declaration_check_sees_a_test_only_package_loaded_by_the_package():
    tree = _parser().parse(b"module M\nusing Random: MersenneTwister\nusing JSON\nend\n")
    assert {m for m, _, _ in _loads(tree.root_node)} == {"Random", "JSON"}
    assert "Random" not in _declared(JULIA / "src" / "NesterovNODEJulia.jl")
    assert "Random" in _declared(JULIA / "check.jl")


def test_every_dependency_is_loaded_by_the_package_and_has_a_compat_bound():
    project = _project(JULIA / "Project.toml")
    loaded = {m for p in JL_FILES if "src" in p.parts for m, _, _ in _loads(_tree(p))}
    unused = set(project["deps"]) - loaded
    assert not unused, f"dependencies julia/src never loads: {sorted(unused)}"
    every = set(project["deps"]) | set(project.get("weakdeps", {})) | set(project["extras"])
    assert every <= set(project["compat"]), every - set(project["compat"])
    assert "julia" in project["compat"]


def test_test_only_packages_are_in_the_test_target_not_in_the_dependencies():
    project = _project(JULIA / "Project.toml")
    for name in ("Random", "SpecialFunctions", "Test"):
        assert name not in project["deps"] and name in project["targets"]["test"]
        assert name in project["extras"]
    for name in ("Enzyme", "ReverseDiff"):  # SciMLSensitivity's own dependencies
        assert name not in project["deps"]


def test_the_gpu_packages_are_weak_dependencies_of_one_extension_that_loads_them():
    from nesterovnode.solve.engines.julia import GPU_PACKAGES

    project = _project(JULIA / "Project.toml")
    assert set(project["weakdeps"]) == set(GPU_PACKAGES)
    assert project["extensions"] == {"NesterovNODEJuliaGPUExt": sorted(GPU_PACKAGES)}
    for name, (uuid, version) in GPU_PACKAGES.items():
        assert project["weakdeps"][name] == uuid and project["compat"][name] == version
    loaded = {m for m, _, _ in _loads(_tree(JULIA / "ext" / "NesterovNODEJuliaGPUExt.jl"))}
    assert set(GPU_PACKAGES) <= loaded


# -- names from the upstream packages -------------------------------------------------------------
def _accessible(package: str) -> set[str]:
    bounds = NAMES["packages"][package]
    return set(bounds["lower"]["accessible"]) & set(bounds["upper"]["accessible"])


def test_the_upstream_name_lists_cover_both_compat_bounds():
    project = _project(JULIA / "Project.toml")
    for package in UPSTREAM:
        lower = NAMES["packages"][package]["lower"]["version"]
        assert project["compat"][package].split(",")[0].strip() == ".".join(lower.split(".")[:2])
        assert NAMES["packages"][package]["upper"]["accessible"]


@pytest.mark.parametrize("path", JL_FILES, ids=[_rel(p) for p in JL_FILES])
def test_every_name_taken_from_the_upstream_packages_exists_at_both_compat_bounds(path):
    root = _tree(path)
    missing = []
    for module, names, line in _loads(root):
        if module not in UPSTREAM:
            continue
        assert names is not None, (
            f"{_rel(path)}:{line}: `using {module}` takes every name; list the names used"
        )
        missing += [
            (module, n, line) for n in names if n != module and n not in _accessible(module)
        ]
    missing += [q for q in _qualified(root) if q[1] not in _accessible(q[0])]
    assert not missing, f"{_rel(path)}: names not in the packages at both bounds: {missing}"


def test_the_name_check_sees_a_name_an_upstream_package_lacks():
    tree = _parser().parse(
        b"using SciMLBase: successful_retcode, no_such_name\nSciMLBase.nope(1)\n"
    )
    loads = _loads(tree.root_node)
    assert loads == [("SciMLBase", ["successful_retcode", "no_such_name"], 1)]
    assert "successful_retcode" in _accessible("SciMLBase")
    assert "no_such_name" not in _accessible("SciMLBase")
    assert _qualified(tree.root_node) == [("SciMLBase", "nope", 2)]


# -- what the code does with them ---------------------------------------------------------------
def _calls(path: Path, callee: str):
    for node in _walk(_tree(path)):
        if node.type == "call_expression" and _text(node.children[0]) == callee:
            yield node


def _keywords(call) -> set[str]:
    """The keyword arguments of a call: ``f(a, k=1)``, ``f(a; k=1)``, ``f(a; k)``."""
    out, keywords = set(), False
    for arg in call.children[1].children:
        if arg.type == ";":
            keywords = True
        elif arg.type == "named_argument":
            out.add(_text(arg.children[0]))
        elif keywords and arg.type == "identifier":
            out.add(_text(arg))
    return out


def test_algorithm_specs_are_parsed_and_never_evaluated():
    for path in JL_FILES:
        for node in _walk(_tree(path)):
            if node.type == "call_expression":
                assert _text(node.children[0]) not in ("eval", "Core.eval", "include_string"), (
                    f"{_rel(path)}:{node.start_point[0] + 1}"
                )
            assert not (node.type == "macro_identifier" and _text(node) == "@eval")
    source = (JULIA / "src" / "algorithms.jl").read_text()
    assert "c <: SciMLBase.AbstractODEAlgorithm" in source
    assert "c <: ADTypes.AbstractADType" in source
    assert "Base.isexported(OrdinaryDiffEq, name)" in source


def test_quadrature_adjoint_gets_the_solves_tolerances():
    calls = list(_calls(JULIA / "src" / "algorithms.jl", "QuadratureAdjoint"))
    assert calls, "algorithms.jl never builds a QuadratureAdjoint"
    for call in calls:
        assert {"reltol", "abstol"} <= _keywords(call), _text(call)
    (call,) = _calls(JULIA / "src" / "solve.jl", "NesterovNODEJulia.sensealg")
    assert {"reltol", "abstol"} <= _keywords(call), _text(call)


def test_retcodes_are_judged_by_successful_retcode_not_by_a_list_of_names():
    qualified = {(m, n) for p in JL_FILES if "src" in p.parts for m, n, _ in _qualified(_tree(p))}
    assert ("SciMLBase", "successful_retcode") in qualified
    engine = (PACKAGE / "solve" / "engines" / "julia.py").read_text()
    assert '"Default"' not in engine and "'Default'" not in engine


def test_finite_differencing_comes_from_adtypes_not_from_ordinarydiffeq():
    source = (JULIA / "src" / "algorithms.jl").read_text()
    assert "ADTypes.AutoFiniteDiff()" in source
    assert ":AutoFiniteDiff" not in source  # OrdinaryDiffEq v6 never defines it


def _constant(source: str, name: str) -> float:
    m = re.search(rf"^const {name} = ([0-9.e\-]+)", source, re.MULTILINE)
    assert m, f"check.jl defines no const {name}"
    return float(m.group(1))


def test_the_finite_difference_check_has_margins_that_do_not_flake():
    """The finite-difference error (truncation of the 4th-order stencil, h^4, plus the
    solve's error amplified by 1/h) must sit far below the pass threshold."""
    source = (JULIA / "check.jl").read_text()
    h, tol, limit = (
        _constant(source, "FD_STEP"),
        _constant(source, "FD_TOL"),
        _constant(source, "FD_PASS"),
    )
    noise = tol / h + h**4
    assert noise * 100 <= limit, (h, tol, limit)


# -- the files that declare the installation agree --------------------------------------------
def test_juliapkg_json_declares_the_julia_package_of_this_repository():
    spec = json.loads((PACKAGE / "juliapkg.json").read_text())
    project = _project(JULIA / "Project.toml")
    entry = spec["packages"][project["name"]]
    assert entry["uuid"] == project["uuid"] and entry["dev"] is True
    path = (PACKAGE / entry["path"]).resolve()
    assert path == JULIA.resolve()
    assert _project(path / "Project.toml")["uuid"] == project["uuid"]
    assert spec["julia"] == project["compat"]["julia"]


def test_the_wheel_ships_the_julia_package_juliapkg_json_points_at():
    pyproject = _project(ROOT / "pyproject.toml")
    data = pyproject["tool"]["setuptools"]["package-data"]["nesterovnode"]
    entry = json.loads((PACKAGE / "juliapkg.json").read_text())["packages"]["NesterovNODEJulia"]
    assert "juliapkg.json" in data
    shipped = {f for pattern in data for f in PACKAGE.glob(pattern)}
    for path in JL_FILES + [JULIA / "Project.toml"]:
        inside = PACKAGE / entry["path"] / path.relative_to(JULIA)
        assert inside in shipped, f"{inside} is not in the wheel"
    assert (
        "julia_upstream_names.json"
        in pyproject["tool"]["setuptools"]["package-data"]["nesterovnode.solve.engines"]
    )


def test_pythoncall_is_pinned_to_the_juliacall_the_extra_installs():
    pyproject = _project(ROOT / "pyproject.toml")
    (pin,) = [d for d in pyproject["project"]["optional-dependencies"]["julia"] if "juliacall" in d]
    version = pin.split("==")[1]
    top = _project(ROOT / "Project.toml")
    assert top["compat"]["PythonCall"] == f"={version}"


def test_the_top_level_project_points_at_julia_and_lists_nothing_else():
    top = _project(ROOT / "Project.toml")
    package = _project(JULIA / "Project.toml")
    assert set(top["deps"]) == {package["name"], "PythonCall"}
    assert top["deps"][package["name"]] == package["uuid"]
    assert top["sources"][package["name"]]["path"] == "julia"


def test_the_documented_check_instantiates_julia_and_runs_in_the_test_sandbox():
    command = "julia --project=julia -e 'using Pkg; Pkg.instantiate(); Pkg.test()'"
    for doc in (ROOT / "README.md", ROOT / "docs" / "julia.md", JULIA / "check.jl"):
        text = doc.read_text()
        assert command in text, doc
        assert "julia --project=julia julia/check.jl" not in text, doc
    runtests = (JULIA / "test" / "runtests.jl").read_text()
    assert 'include(joinpath(@__DIR__, "..", "check.jl"))' in runtests

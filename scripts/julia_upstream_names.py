"""Write python/nesterovnode/solve/engines/julia_upstream_names.json: the names that
OrdinaryDiffEq, SciMLSensitivity, SciMLBase and ADTypes define, import or export in their
sources at the lower and the upper end of the [compat] bounds of julia/Project.toml.

The tests check every name julia/src calls from those packages against these lists
(tests/solve/julia/test_julia_sources.py), and the julia engine refuses, in Python, an
algorithm spec whose constructors OrdinaryDiffEq or ADTypes do not export
(solve/engines/julia_spec.py).

    python scripts/julia_upstream_names.py REPO_DIR...

Each REPO_DIR is a git clone (bare or not) of one of the four packages, with its release
tags; the tags read are TAGS below (OrdinaryDiffEq's repository holds several packages'
tags, so its v6 release is named by the commit that set version 6.111.0). Nothing is
downloaded. Needs tree-sitter and tree-sitter-julia (the dev extra).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import tree_sitter
import tree_sitter_julia

OUT = (
    Path(__file__).resolve().parents[1]
    / "python/nesterovnode/solve/engines/julia_upstream_names.json"
)

#: package -> (lower bound, upper bound) as git revisions of its repository
TAGS = {
    "OrdinaryDiffEq": ("v6.89.0", "e10591b2f5c369afc9498e1fab92fbb49911ddb8"),
    "SciMLSensitivity": ("v7.68.0", "v7.106.0"),
    "SciMLBase": ("v2.50.0", "v2.155.0"),
    "ADTypes": ("v1.16.0", "v1.22.1"),
}
VERSIONS = {
    "OrdinaryDiffEq": ("6.89.0", "6.111.0"),
    "SciMLSensitivity": ("7.68.0", "7.106.0"),
    "SciMLBase": ("2.50.0", "2.155.0"),
    "ADTypes": ("1.16.0", "1.22.1"),
}

PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_julia.language()))


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def _name(node) -> str | None:
    """The defined name of a definition's head (``S{T} <: A`` -> S, ``f(x)`` -> f)."""
    while node is not None:
        if node.type in ("identifier", "macro_identifier"):
            return node.text.decode()
        if node.type in (
            "type_head",
            "signature",
            "binary_expression",
            "typed_expression",
            "parametrized_type_expression",
            "call_expression",
            "where_expression",
        ):
            node = node.children[0] if node.children else None
            continue
        return None
    return None


def _identifiers(node):
    for child in node.children:
        if child.type == "identifier":
            yield child.text.decode()
        elif child.type == "macro_identifier":
            yield child.text.decode()
        elif child.type == "import_alias":
            yield child.children[-1].text.decode()
        elif child.type in ("open_tuple", "macro_argument_list"):
            yield from _identifiers(child)


def names_in(source: bytes) -> tuple[set[str], set[str], set[str]]:
    """(exported names, every name a module of this file makes accessible, the names of
    modules it imports as ``import M: M``)."""
    exported: set[str] = set()
    defined: set[str] = set()
    modules: set[str] = set()

    def visit(node, top: bool):
        t = node.type
        if t == "export_statement":
            found = set(_identifiers(node))
            exported.update(found)
            defined.update(found)
        elif t == "macrocall_expression" and node.children[0].text == b"@public":
            defined.update(_identifiers(node.children[1]) if len(node.children) > 1 else ())
        elif t in ("using_statement", "import_statement"):
            for sel in node.children:
                if sel.type == "selected_import":
                    first, *rest = list(_identifiers(sel))
                    defined.update(rest)
                    if first in rest:
                        modules.add(first)
                elif sel.type == "identifier":
                    defined.add(sel.text.decode())
        elif t in ("struct_definition", "abstract_definition", "primitive_definition"):
            head = next((c for c in node.children if c.type == "type_head"), None)
            if (name := _name(head)) is not None:
                defined.add(name)
        elif t in ("function_definition", "macro_definition"):
            head = next((c for c in node.children if c.type == "signature"), None)
            if (name := _name(head)) is not None:
                defined.add(name if t == "function_definition" else "@" + name)
        elif t == "assignment" and top:
            lhs = node.children[0]
            if lhs.type == "call_expression" or lhs.type == "identifier":
                if (name := _name(lhs)) is not None:
                    defined.add(name)
        elif t == "const_statement":
            for c in node.children:
                if c.type == "assignment" and (name := _name(c.children[0])) is not None:
                    defined.add(name)
        if t in (
            "module_definition",
            "source_file",
            "block",
            "macrocall_expression",
            "macro_argument_list",
            "if_statement",
            "let_statement",
        ):
            for child in node.children:
                visit(child, top)

    visit(PARSER.parse(source).root_node, True)
    return exported, defined, modules


def package_names(repo: Path, rev: str) -> dict[str, list[str]]:
    files = [
        p
        for p in _git(repo, "ls-tree", "-r", "--name-only", rev, "src").split()
        if p.endswith(".jl")
    ]
    exported: set[str] = set()
    defined: set[str] = set()
    modules: set[str] = set()
    for path in files:
        e, d, m = names_in(_git(repo, "show", f"{rev}:{path}").encode())
        exported |= e
        defined |= d
        modules |= m
    return {
        "exported": sorted(exported),
        "accessible": sorted(defined | exported),
        "modules": sorted(modules),
    }


def _package_of(repo: Path) -> str:
    for line in _git(repo, "show", "HEAD:Project.toml").splitlines():
        if line.startswith("name"):
            return line.split("=")[1].strip().strip('"')
    raise SystemExit(f"{repo}: no package name in Project.toml")


def main(repos: list[str]) -> None:
    found = {_package_of(Path(r)): Path(r) for r in repos}
    missing = set(TAGS) - set(found)
    if missing:
        raise SystemExit(f"give a clone of each of {', '.join(sorted(missing))}")
    out = {
        "about": (
            "Names each package defines, imports or exports in its src/ (tree-sitter-julia "
            "over the git sources) at the lower and upper end of julia/Project.toml's "
            "[compat] bound; written by scripts/julia_upstream_names.py from the "
            "revisions listed. 'exported' is what `using Package` brings in; "
            "'accessible' is what `Package.name` reaches; 'modules' are the modules it "
            "imports by name (`import M: M`)."
        ),
        "packages": {},
    }
    for package, revs in TAGS.items():
        entry = {}
        for bound, rev, version in zip(("lower", "upper"), revs, VERSIONS[package]):
            entry[bound] = {
                "version": version,
                "revision": rev,
                **package_names(found[package], rev),
            }
        out["packages"][package] = entry
    OUT.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(sys.argv[1:])

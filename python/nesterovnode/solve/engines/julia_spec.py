"""What the julia engine accepts as an algorithm spec, checked in Python before Julia is
looked for.

A spec names an OrdinaryDiffEq algorithm (``"Tsit5"``, ``"Rodas5P()"``) or calls one with
literal arguments: ``"KenCarp4(autodiff=AutoFiniteDiff())"``,
``"AutoTsit5(Rosenbrock23())"``, ``"Rodas5P(autodiff=false)"``. The grammar::

    spec  := NAME | call
    call  := NAME "(" [arg {"," arg}] [";" kwarg {"," kwarg}] ")"
    arg   := kwarg | value
    kwarg := KEY "=" value
    value := NUMBER | "true" | "false" | "nothing" | ":" KEY | call

Every NAME must be an algorithm OrdinaryDiffEq exports (outermost and nested) or an
automatic-differentiation type ADTypes exports (nested only), in the lists of
``julia_upstream_names.json`` (taken from those packages' sources at the [compat] bounds
of julia/Project.toml). Anything else — Base's functions (``exit()``, ``rm(…)``,
``run(…)``), strings, operators, bare names as values, unknown constructors — raises
``AlgorithmSpecError`` naming the offending part, whether or not Julia is installed.
Julia checks again before it calls anything (julia/src/algorithms.jl): each constructor
must be a type ``<: SciMLBase.AbstractODEAlgorithm`` or ``<: ADTypes.AbstractADType``.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

NAMES_FILE = Path(__file__).with_name("julia_upstream_names.json")

#: the longest spec taken (a nested call of a few algorithms and options is far shorter)
MAX_LENGTH = 200
#: the deepest nesting of calls taken (AutoTsit5(Rosenbrock23(autodiff=AutoFiniteDiff())))
MAX_DEPTH = 4

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![A-Za-z_0-9.]))"
    r"|(?P<name>[A-Za-z_][A-Za-z_0-9]*)"
    r"|(?P<punct>[(),;=:])"
    r")"
)


class AlgorithmSpecError(ValueError):
    """A julia algorithm spec outside the grammar of this module's docstring."""


@lru_cache(maxsize=1)
def upstream_names() -> dict:
    """``julia_upstream_names.json``: per package, the names at each compat bound."""
    return json.loads(NAMES_FILE.read_text())


@lru_cache(maxsize=1)
def algorithm_names() -> frozenset[str]:
    """Algorithm constructors OrdinaryDiffEq exports at either compat bound (its other
    exports — functions, modules — are left out)."""
    ode = upstream_names()["packages"]["OrdinaryDiffEq"]
    out = set()
    for bound in ode.values():
        modules = set(bound["modules"])
        out |= {n for n in bound["exported"] if n[:1].isupper() and n not in modules}
    return frozenset(out)


@lru_cache(maxsize=1)
def ad_type_names() -> frozenset[str]:
    """The ``Auto…`` automatic-differentiation types ADTypes exports at either bound."""
    ad = upstream_names()["packages"]["ADTypes"]
    return frozenset(n for b in ad.values() for n in b["exported"] if n.startswith("Auto"))


def _tokens(spec: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    text = spec.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            bad = text[pos:].lstrip()[:1]
            raise AlgorithmSpecError(
                f"julia algorithm spec {spec!r}: {bad!r} at position {pos + 1} is not allowed"
                f"{_GRAMMAR}"
            )
        kind = m.lastgroup
        out.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


_GRAMMAR = (
    " (a spec is an OrdinaryDiffEq algorithm, optionally called with numbers, true, "
    "false, nothing, :symbols and nested algorithm or ADTypes specs as arguments, e.g. "
    "'Rodas5P', 'KenCarp4(autodiff=AutoFiniteDiff())', 'AutoTsit5(Rosenbrock23())')"
)


class _Parser:
    def __init__(self, spec: str):
        self.spec = spec
        self.tokens = _tokens(spec)
        self.i = 0

    def fail(self, message: str):
        raise AlgorithmSpecError(f"julia algorithm spec {self.spec!r}: {message}{_GRAMMAR}")

    def peek(self, offset: int = 0):
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else (None, None, len(self.spec))

    def take(self, kind: str, value: str | None = None):
        tok = self.peek()
        if tok[0] != kind or (value is not None and tok[1] != value):
            want = repr(value) if value else kind
            got = "the end" if tok[0] is None else repr(tok[1])
            self.fail(f"expected {want} at position {tok[2] + 1}, found {got}")
        self.i += 1
        return tok

    def constructor(self, name: str, outer: bool) -> None:
        if name in algorithm_names():
            return
        if name in ad_type_names():
            if outer:
                self.fail(f"{name} is an automatic-differentiation type, not an algorithm")
            return
        self.fail(
            f"{name} is not an algorithm OrdinaryDiffEq exports"
            + ("" if outer else " nor an ADTypes type")
        )

    def call(self, depth: int, outer: bool) -> None:
        if depth > MAX_DEPTH:
            self.fail(f"calls nested deeper than {MAX_DEPTH}")
        _, name, _ = self.take("name")
        self.constructor(name, outer)
        if outer and self.peek()[0] is None:
            return  # a bare name: "Tsit5"
        self.take("punct", "(")
        keywords = False
        while not (self.peek()[0] == "punct" and self.peek()[1] == ")"):
            if self.peek()[1] == ";" and not keywords:
                self.take("punct", ";")
                keywords = True
                continue
            if self.peek()[0] == "name" and self.peek(1)[1] == "=":
                self.take("name")
                self.take("punct", "=")
                keywords = True
            elif keywords:
                self.fail(f"a positional argument after keywords at position {self.peek()[2] + 1}")
            self.value(depth)
            if self.peek()[1] == ",":
                self.take("punct", ",")
            elif not (self.peek()[0] == "punct" and self.peek()[1] in (")", ";")):
                tok = self.peek()
                got = "the end" if tok[0] is None else repr(tok[1])
                self.fail(f"expected ',' or ')' at position {tok[2] + 1}, found {got}")
        self.take("punct", ")")

    def value(self, depth: int) -> None:
        kind, text, pos = self.peek()
        if kind == "number":
            self.i += 1
        elif kind == "name" and text in ("true", "false", "nothing"):
            self.i += 1
        elif kind == "punct" and text == ":":
            self.i += 1
            self.take("name")
        elif kind == "name" and self.peek(1)[1] == "(":
            self.call(depth + 1, outer=False)
        elif kind == "name":
            self.constructor(text, outer=False)
            self.fail(f"{text} at position {pos + 1} must be called: write {text}()")
        else:
            got = "the end" if kind is None else repr(text)
            self.fail(f"expected a value at position {pos + 1}, found {got}")


def check_algorithm_spec(spec: str) -> str:
    """``spec`` stripped, when it is in the grammar of the module docstring; otherwise
    ``AlgorithmSpecError`` saying what is wrong with it."""
    if not isinstance(spec, str):
        raise AlgorithmSpecError(f"a julia algorithm spec is a string, got {spec!r}")
    text = spec.strip()
    if not text:
        raise AlgorithmSpecError(f"the julia algorithm spec is empty{_GRAMMAR}")
    if len(text) > MAX_LENGTH:
        raise AlgorithmSpecError(
            f"julia algorithm spec of {len(text)} characters; at most {MAX_LENGTH} are taken"
        )
    parser = _Parser(text)
    parser.call(1, outer=True)
    if parser.peek()[0] is not None:
        tok = parser.peek()
        parser.fail(f"unexpected {tok[1]!r} at position {tok[2] + 1} after the algorithm")
    return text

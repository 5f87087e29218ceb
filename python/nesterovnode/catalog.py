"""What the package offers, as text: the models (with the options each accepts), the
tasks, the solvers (properties and the engines that provide them) and the engines
(installed or not). ``nesterovnode list`` prints ``catalog()``."""

from __future__ import annotations

from .tables import text_table


def model_table() -> str:
    """The model registry: name, class, state order and accepted options, paper order."""
    from .dynamics.registry import MODELS

    rows = [
        [
            name,
            spec.cls.__name__,
            "second" if spec.second_order else "first",
            ", ".join(spec.options) or "-",
        ]
        for name, spec in MODELS.items()
    ]
    return text_table(["model", "class", "order", "options"], rows)


def solver_table() -> str:
    """The solver registry: canonical name, properties and which engines offer it (under
    which native name; ``[not installed]`` when the engine is missing here)."""
    from .solve import SOLVERS, engines

    known = engines()
    head = [
        "solver",
        "order",
        "adaptive",
        "implicit",
        "stiff",
        "switching",
        "|hλ| bound",
        "engines (native name)",
    ]
    rows = []
    for name, info in SOLVERS.items():
        offered = []
        for ename, cls in known.items():
            if name in cls.methods:
                mark = "" if cls.available() else " [not installed]"
                offered.append(f"{ename} ({cls.methods[name]}){mark}")
        rows.append(
            [
                name,
                str(info.order),
                "yes" if info.adaptive else "no",
                "yes" if info.implicit else "no",
                "yes" if info.stiff else "no",
                "yes" if info.auto_switching else "no",
                "-" if info.stability_bound is None else f"{info.stability_bound:g}",
                ", ".join(offered) or "-",
            ]
        )
    return text_table(head, rows)


def engine_table() -> str:
    """The engines: their sensitivities (beyond adjoint and adjoint-seminorm, which every
    engine has), their options, and whether each is installed here (else how)."""
    from .solve import engines

    rows = []
    for name, cls in engines().items():
        sens = (["backprop"] if cls.differentiable else []) + [
            f"{name}:{s}" for s in cls.native_sensitivities
        ]
        options = ", ".join(f"{k} ({o.doc})" for k, o in cls.options.items()) or "-"
        state = "available" if cls.available() else f"not available ({cls.install_hint})"
        rows.append([name, ", ".join(sens) or "-", options, state])
    return text_table(["engine", "more sensitivities", "options", "state"], rows)


def catalog() -> str:
    """Models, tasks, solvers and engines, one section each."""
    from .tasks import TASKS

    return "\n\n".join(
        [
            model_table(),
            "tasks: " + ", ".join(TASKS),
            solver_table(),
            engine_table(),
        ]
    )


__all__ = ["catalog", "engine_table", "model_table", "solver_table"]

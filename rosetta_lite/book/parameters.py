"""A chapter refuses a papermill parameter its parameters cell does not declare.

    from rosetta_lite.book.parameters import refuse_unknown_parameters
    refuse_unknown_parameters()   # the first lines after a chapter's parameters cell

papermill only warns about a name the notebook does not declare, injects it anyway and
runs on, so a typo (``-p imagez 64``) would start a default 2,000-image run that looks
like the one asked for. papermill runs the parameters cell and then the cell it injects
(its first line ``# Parameters``), so both are the kernel's latest inputs before the
check; a name assigned only in the injected one is refused. Outside papermill (Jupyter,
the book build, nbval) no cell is injected and there is nothing to check.
"""

from __future__ import annotations

import ast

INJECTED_HEADER = "# Parameters\n"  # papermill's comment on the cell it injects


def assigned_names(source: str) -> set[str]:
    """Names a cell assigns at its top level: ``a = 1`` and ``a: int = 1``."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def unknown_parameters(history: list[str]) -> tuple[list[str], list[str]]:
    """(injected names the parameters cell does not declare, the declared names) from a kernel's inputs.

        unknown_parameters(["size = 32\\n", "# Parameters\\nsizee = 64\\n"])   # (["sizee"], ["size"])
    """
    injected = [i for i, source in enumerate(history) if source.startswith(INJECTED_HEADER)]
    if not injected or injected[-1] == 0:
        return [], []
    last = injected[-1]
    declared = assigned_names(history[last - 1])
    return sorted(assigned_names(history[last]) - declared), sorted(declared)


def refuse_unknown_parameters(history: list[str] | None = None) -> None:
    """Raise if papermill injected a parameter the chapter does not declare.

        refuse_unknown_parameters()

    ``history`` defaults to the running kernel's input history (IPython's ``In``).
    """
    if history is None:
        from IPython import get_ipython

        shell = get_ipython()
        history = list(shell.user_ns.get("In", [])) if shell is not None else []
    unknown, declared = unknown_parameters(history)
    if unknown:
        raise ValueError(f"parameter(s) {unknown} are not declared by this chapter; its parameters cell "
                         f"declares {declared} (papermill -p NAME VALUE takes one of those names)")

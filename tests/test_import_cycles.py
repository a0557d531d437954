"""No import cycle between the modules of src/tformer: dependencies point down only (docs/architecture.md).

Every import statement counts, wherever it is: at module level, inside a function (an import deferred to keep
`tformer --help` light is still a dependency) and under `if TYPE_CHECKING:` (a package's lazy PEP 562 names are
written there, so `tformer -> tformer.models` is an edge). A package's `__init__.py` is the package's module.
`from a.b import c` depends on `a.b.c` when that is a module, else on `a.b`. Importing `a.b.c` runs `a/__init__.py`
and `a/b/__init__.py` first, but that is Python's loading order, not a dependency of the importer: a package's
lazy re-export of its submodules is an edge down from the package, never one back up from each submodule.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_names(src: Path, package: str = "tformer") -> dict[str, Path]:
    """Dotted module name -> file, for every .py under src/package (a package is named by its __init__.py)."""
    modules = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """`name` or its longest prefix that is one of `modules` (`a.b.func` -> `a.b`); None outside them."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module a `from ... import` reads from, with a relative one (`from .x import y`) made absolute."""
    if not node.level:
        return node.module or ""
    here = module.split(".") if is_package else module.split(".")[:-1]
    base = here[: len(here) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of `modules` that `module`'s file imports anywhere in its body."""
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(_known(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, path.name == "__init__.py")
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in modules else _known(source, modules))
    return {name for name in found if name is not None and name != module}


def import_graph(src: Path, package: str = "tformer") -> dict[str, set[str]]:
    """Each module of src/package -> the modules of the package it imports."""
    modules = module_names(src, package)
    return {module: imported_modules(module, path, modules) for module, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None: a depth-first search that stops at the first edge back to its path."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, on_path = [start], {start}
        pending = [iter(sorted(graph[start]))]
        while pending:
            following = next(pending[-1], None)
            if following is None:  # every import of path[-1] explored: no cycle through it
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                pending.pop()
                continue
            if following in on_path:
                return [*path[path.index(following):], following]
            if following not in done:
                path.append(following)
                on_path.add(following)
                pending.append(iter(sorted(graph[following])))
    return None


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles until none is left, each found after the closing edge of the previous one is taken out."""
    graph = {module: set(imports) for module, imports in graph.items()}
    cycles = []
    while (cycle := find_cycle(graph)) is not None:
        cycles.append(cycle)
        graph[cycle[-2]].discard(cycle[-1])
    return cycles


def reachable(graph: dict[str, set[str]], module: str) -> set[str]:
    """Every module `module` imports, directly or through others."""
    seen, pending = set(), [module]
    while pending:
        for following in graph[pending.pop()] - seen:
            seen.add(following)
            pending.append(following)
    return seen


def _package(root: Path, files: dict[str, str]) -> Path:
    """A package `pkg` under root from {relative path: source}, for the walker's own tests."""
    for name, text in files.items():
        (root / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "pkg" / name).write_text(text)
    return root


def _cycles(root: Path) -> list[str]:
    return [" -> ".join(cycle) for cycle in find_cycles(import_graph(root, "pkg"))]


def test_an_import_inside_a_function_closes_a_cycle(tmp_path: Path) -> None:
    _package(tmp_path, {"__init__.py": "", "low.py": "def f():\n    from pkg.high import g\n",
                        "high.py": "from pkg.low import f\n"})
    assert _cycles(tmp_path) == ["pkg.high -> pkg.low -> pkg.high"]


def test_relative_and_type_checking_imports_count(tmp_path: Path) -> None:
    _package(tmp_path, {"__init__.py": "", "sub/__init__.py": "from .a import x\n",
                        "sub/a.py": "import typing\nif typing.TYPE_CHECKING:\n    from .. import top\nx = 1\n",
                        "top.py": "from pkg import sub\n"})
    assert _cycles(tmp_path) == ["pkg.sub -> pkg.sub.a -> pkg.top -> pkg.sub"]


def test_from_a_package_import_a_name_depends_on_the_package(tmp_path: Path) -> None:
    _package(tmp_path, {"__init__.py": "from pkg.models import Model\n", "models.py": "from pkg import helpers\n",
                        "helpers.py": "def f():\n    from pkg import Model\n"})
    assert _cycles(tmp_path) == ["pkg -> pkg.models -> pkg.helpers -> pkg"]


def test_a_package_re_exporting_its_submodules_is_no_edge_back_up(tmp_path: Path) -> None:
    # Importing pkg.a.b runs pkg/__init__.py, which re-exports pkg.a: Python's loading order, not a cycle.
    _package(tmp_path, {"__init__.py": "from pkg.a import f\n", "a/__init__.py": "from pkg.a.b import f\n",
                        "a/b.py": "import pkg.c\nf = pkg.c.g\n", "c.py": "def g():\n    import os\n"})
    assert import_graph(tmp_path, "pkg") == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.a.b"}, "pkg.a.b": {"pkg.c"},
                                             "pkg.c": set()}
    assert _cycles(tmp_path) == []


def test_no_import_cycle_in_tformer() -> None:
    cycles = find_cycles(import_graph(SRC))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_bottom_tier_reaches_no_package_above_it() -> None:
    # config.py and tokenization.py sit under every package; a Hub name reaches the tokenizer through tformer.hub
    graph, modules = import_graph(SRC), module_names(SRC)
    for bottom in ("tformer.config", "tformer.tokenization"):
        above = sorted(name for name in reachable(graph, bottom)
                       if name.count(".") > 1 or modules[name].name == "__init__.py")
        assert not above, f"{bottom} imports {', '.join(above)}, a layer above it"


def test_no_cli_command_imports_another_commands_module() -> None:
    # What several commands share lives in tformer.cli.common; the package itself only assembles the parser.
    graph = import_graph(SRC)
    commands = {name for name in graph if name.startswith("tformer.cli.")} - {"tformer.cli.common",
                                                                               "tformer.cli.__main__"}
    assert commands >= {"tformer.cli.generate", "tformer.cli.viz", "tformer.cli.train", "tformer.cli.finetune"}
    for command in sorted(commands):
        others = sorted(graph[command] & (commands | {"tformer.cli"}))
        assert not others, f"{command} imports {', '.join(others)}: move what they share to tformer.cli.common"

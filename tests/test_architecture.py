"""The shape of the code, checked: imports point one way, files tell one story, nothing points outside the repository.

The rooms, lowest first: ``bokeh_model`` <- ``evaluation`` <- ``user_study`` <- ``space`` <- ``app.py``. A package
may import only from itself and the packages to its left, and never another package's private name (``_x``) or
private module (``pkg._mod``). ``tests/`` and ``benchmarks/`` may import anything. See ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lowest first; "app" is the Space's entry point app.py at the top of the repository.
ROOMS = ("bokeh_model", "evaluation", "user_study", "space", "app")
RANK = {room: rank for rank, room in enumerate(ROOMS)}
MAX_LINES = 500
ONE_FILE_REASON = "Why one file:"


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # absolute dotted name of the imported module
    names: tuple[str, ...]  # names taken from it (``from module import a, b``); empty for ``import module``
    text: str


def _tracked_files() -> list[Path]:
    """Files under version control (what the repository holds); every file of the tree without git."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True, timeout=60
        ).stdout
        files = [ROOT / name for name in out.split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        skip = {".git", ".venv", ".venv-tf", ".venv-litert", "build", "__pycache__", "node_modules"}
        files = [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    return sorted(p for p in files if p.is_file())


def _product_files() -> list[Path]:
    files = [ROOT / "app.py"]
    for room in ROOMS[:-1]:
        files += sorted(p for p in (ROOT / room).rglob("*.py") if "__pycache__" not in p.parts)
    return files


def _room(path: Path) -> str:
    first = path.relative_to(ROOT).parts[0]
    return "app" if first == "app.py" else first


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(path: Path, source: str | None = None) -> list[Import]:
    """Every import in the file, at any depth (function-level and ``try`` imports included), made absolute;
    ``importlib.import_module("literal")`` counts as an import too."""
    source = path.read_text(encoding="utf-8") if source is None else source
    lines = source.splitlines()
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        text = lines[node.lineno - 1].strip() if hasattr(node, "lineno") else ""
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name, (), text) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.append(Import(node.lineno, target, tuple(alias.name for alias in node.names), text))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")
        ):
            found.append(Import(node.lineno, node.args[0].value, (), text))
    return sorted(found, key=lambda imp: imp.line)


def _import_problems() -> list[str]:
    return [problem for path in _product_files() for problem in _file_problems(path)]


def _file_problems(path: Path, source: str | None = None) -> list[str]:
    """``file:line: arrow A -> B points up: <the import>`` and private-name uses of one product file."""
    problems = []
    room = _room(path)
    where = path.relative_to(ROOT)
    for imp in _imports(path, source):
        target = imp.module.split(".")[0]
        if target not in RANK or target == room:
            continue
        if RANK[target] > RANK[room]:
            problems.append(f"{where}:{imp.line}: arrow {room} -> {target} points up: {imp.text}")
        private = [part for part in imp.module.split(".")[1:] if _is_private(part)]
        private += [name for name in imp.names if _is_private(name)]
        if private:
            problems.append(f"{where}:{imp.line}: {room} uses private {target} names {private}: {imp.text}")
    return problems


SAMPLE = """
import numpy as np
from . import align
from .. import metrics
from ..run_layout import prediction_path


def late():
    try:
        from user_study.service import StudyService
    except ImportError:
        pass
    import importlib

    return importlib.import_module("space.app"), StudyService


from bokeh_model.methods._lens_fast import render_image
from bokeh_model.methods import _optics, lens
"""


def test_the_import_walk_sees_what_it_must() -> None:
    """The checker itself: relative, function-level, ``try`` and dynamic imports are found and made absolute."""
    path = ROOT / "evaluation" / "pairs" / "build.py"
    found = {(imp.module, imp.names) for imp in _imports(path, SAMPLE)}
    assert found == {
        ("numpy", ()),
        ("evaluation.pairs", ("align",)),
        ("evaluation", ("metrics",)),
        ("evaluation.run_layout", ("prediction_path",)),
        ("user_study.service", ("StudyService",)),
        ("importlib", ()),
        ("space.app", ()),
        ("bokeh_model.methods._lens_fast", ("render_image",)),
        ("bokeh_model.methods", ("_optics", "lens")),
    }
    package = {imp.module for imp in _imports(ROOT / "evaluation" / "pairs" / "__init__.py", "from . import build")}
    assert package == {"evaluation.pairs"}
    assert _is_private("_lens_fast") and not _is_private("__main__") and not _is_private("lens")
    assert _room(ROOT / "app.py") == "app" and _room(path) == "evaluation"
    problems = _file_problems(path, SAMPLE)
    assert [problem.split(": ", 2)[1] for problem in problems] == [
        "arrow evaluation -> user_study points up",
        "arrow evaluation -> space points up",
        "evaluation uses private bokeh_model names ['_lens_fast']",
        "evaluation uses private bokeh_model names ['_optics']",
    ]
    assert problems[0].startswith("evaluation/pairs/build.py:10: ") and "from user_study.service" in problems[0]


def test_imports_point_one_way_and_skip_private_names() -> None:
    """bokeh_model <- evaluation <- user_study <- space <- app.py; no other package's ``_private`` name or module."""
    problems = _import_problems()
    assert not problems, f"{len(problems)} import(s) against the architecture (see ARCHITECTURE.md):\n" + "\n".join(
        problems
    )


def _module_graph(files: dict[str, Path], sources: dict[str, str] | None = None) -> dict[str, set[str]]:
    """module -> the product modules it imports (``from pkg import mod`` counts as an import of ``pkg.mod``)."""
    graph = {}
    for name, path in files.items():
        edges = set()
        for imp in _imports(path, (sources or {}).get(name)):
            submodules = {f"{imp.module}.{n}" for n in imp.names if f"{imp.module}.{n}" in files}
            edges |= submodules or ({imp.module} if imp.module in files else set())
        edges.discard(name)
        graph[name] = edges
    return graph


def _import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle (a strongly connected group of modules) as one path ``a -> b -> ... -> a``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the module graph is shallow enough for recursion
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for group in groups:  # name the shortest circle through the group's first module (breadth-first)
        start = min(group)
        parent: dict[str, str] = {}
        queue = [start]
        while start not in parent:
            node = queue.pop(0)
            for nxt in sorted(graph[node] & group):
                if nxt not in parent:
                    parent[nxt] = node
                    queue.append(nxt)
        path, node = [start], parent[start]
        while node != start:
            path.append(node)
            node = parent[node]
        cycles.append([start, *reversed(path[1:]), start])
    return sorted(cycles)


def test_the_cycle_finder_names_each_circle() -> None:
    """The checker itself: a two-module and a three-module circle are named; a one-way chain is not."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c", "f"}, "f": set()}
    assert _import_cycles(graph) == [["a", "b", "a"], ["c", "d", "e", "c"]]
    assert _import_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    files = {"evaluation.x": ROOT / "evaluation" / "x.py", "evaluation.y": ROOT / "evaluation" / "y.py"}
    sources = {"evaluation.x": "from . import y", "evaluation.y": "def f():\n    from .x import g\n"}
    assert _import_cycles(_module_graph(files, sources)) == [["evaluation.x", "evaluation.y", "evaluation.x"]]


def test_no_import_circles_inside_a_package() -> None:
    """Modules of a room never import each other in a circle (function-level and ``TYPE_CHECKING`` imports
    count): a name both sides need lives in a module that both import, so imports go one way."""
    modules = {_module_name(path): path for path in _product_files()}
    cycles = _import_cycles(_module_graph(modules))
    assert not cycles, f"{len(cycles)} import circle(s); move the shared names so imports go one way:\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


def test_no_module_over_500_lines_without_a_reason() -> None:
    """A file over 500 lines tells one story and says why at its top (a module docstring line 'Why one file: ...')."""
    offenders = []
    for path in _tracked_files():
        if path.suffix != ".py":
            continue
        source = path.read_text(encoding="utf-8")
        count = len(source.splitlines())
        if count <= MAX_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(source)) or ""
        if not any(line.strip().startswith(ONE_FILE_REASON) for line in docstring.splitlines()):
            offenders.append((count, str(path.relative_to(ROOT))))
    assert not offenders, (
        f"{len(offenders)} file(s) over {MAX_LINES} lines without a '{ONE_FILE_REASON}' line in the module docstring:\n"
        + "\n".join(f"{name}: {count} lines" for count, name in sorted(offenders, reverse=True))
    )


# Built from parts so that this file does not match itself.
OUTSIDE_REFERENCE = re.compile(r"shared" + r"/(docs|paper)|\.\./" + r"shared|\bshared\s+docs\b", re.IGNORECASE)


def test_nothing_points_at_files_outside_the_repository() -> None:
    """Code, tests and documentation cite the paper or a public source, never the workspace's shared notes."""
    hits = []
    for path in _tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # images, archives
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE_REFERENCE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not hits, "references to files that are not in the repository:\n" + "\n".join(hits)


SYS_PATH_EDIT = re.compile(r"\bsys\.path\s*(\.\s*(insert|append|extend)\s*\(|\[[^\]]*\]\s*=|\+?=)")


@pytest.mark.parametrize("folder", ["product", "tests", "benchmarks"])
def test_no_sys_path_edits(folder: str) -> None:
    """Code imports the installed package (``pip install -e .``), never a path it put on ``sys.path`` itself."""
    if folder == "product":
        files = _product_files()
    else:
        files = [p for p in _tracked_files() if p.suffix == ".py" and p.relative_to(ROOT).parts[0] == folder]
    hits = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if SYS_PATH_EDIT.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, "sys.path edits:\n" + "\n".join(hits)

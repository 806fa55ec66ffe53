"""House rules enforced by a test, not by review: the import table of
doc/design.md#layers, no import cycles anywhere in the package, no runtime
imports beyond the stdlib and the three dependencies, no pickle/print/bare
except, and no raw fsync/replace/flock outside lsm/fs.py."""

from __future__ import annotations

import ast
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.join(REPO, "lsm")
DESIGN = os.path.join(REPO, "doc", "design.md")


def _import_table() -> dict[str, set[str]]:
    """module -> modules (top-level names inside lsm) it may import, read from
    the fenced block after ``<!-- import-table -->`` in doc/design.md."""
    text = open(DESIGN, encoding="utf-8").read()
    block = re.search(r"<!-- import-table -->\s*```\n(.*?)```", text, re.S)
    assert block, f"{DESIGN}: no import table"
    layers: dict[str, set[str]] = {}
    table: dict[str, set[str]] = {}
    for line in block.group(1).splitlines():
        if not line.strip():
            continue
        if "=" in line:
            name, members = line.split("=")
            layers[name.strip()] = set(members.split())
            continue
        names, allowed = line.split(":")
        may: set[str] = set()
        for word in allowed.split():
            if word != "-":
                may |= layers.get(word, {word})
        for name in names.split():
            assert name not in table, f"{DESIGN}: {name} has two lines in the import table"
            table[name] = may
    return table


ALLOWED = _import_table()

THIRD_PARTY = {"sortedcontainers", "zstandard", "xxhash"}
# Optional extras: imported only inside functions of these modules, which
# raise an ImportError naming the extra when the package is missing.
OPTIONAL_THIRD_PARTY = {"bulk": {"dask", "distributed"}}


def _modules():
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, ROOT)
                top = rel.split(os.sep)[0].removesuffix(".py")
                yield path, top


def _imports(tree: ast.AST, top: str, path: str):
    """Yield (lsm-module-or-None, external-name, node) for each import."""
    pkg_parts = os.path.relpath(path, ROOT).split(os.sep)[:-1]
    type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                 and getattr(block.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue  # annotation-only imports do not create a runtime edge
        if isinstance(node, ast.Import):
            for a in node.names:
                name = a.name.split(".")
                if name[0] == "lsm":
                    yield (name[1] if len(name) > 1 else "__init__"), None, node
                else:
                    yield None, name[0], node
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - (node.level - 1)] if node.level > 1 else pkg_parts
                parts = base + (node.module.split(".") if node.module else [])
                if parts:
                    yield parts[0], None, node
                else:  # from . import x
                    for a in node.names:
                        yield a.name, None, node
            elif node.module and node.module.split(".")[0] == "lsm":
                parts = node.module.split(".")
                if len(parts) > 1:
                    yield parts[1], None, node
                else:
                    for a in node.names:
                        yield a.name, None, node
            elif node.module:
                yield None, node.module.split(".")[0], node


def _function_level(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside a function body."""
    return {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}


def test_import_table_and_externals():
    problems = []
    stdlib = set(sys.stdlib_module_names)
    for path, top in _modules():
        tree = ast.parse(open(path).read(), path)
        allowed = ALLOWED.get(top)
        assert allowed is not None, f"{path}: module {top!r} is not in the layering table"
        for mod, ext, node in _imports(tree, top, path):
            if mod is not None:
                if mod != top and mod not in allowed:
                    problems.append(f"{path}:{node.lineno}: {top} may not import {mod}")
            elif ext in OPTIONAL_THIRD_PARTY.get(top, ()) and id(node) in _function_level(tree):
                pass
            elif ext not in stdlib and ext not in THIRD_PARTY and ext != "__future__":
                problems.append(f"{path}:{node.lineno}: runtime import of {ext!r}")
            if ext in ("pickle", "marshal", "shelve"):
                problems.append(f"{path}:{node.lineno}: {ext} is not allowed")
    assert not problems, "\n".join(problems)


def _module_name(path: str) -> str:
    """``lsm/sstable/reader.py`` -> ``lsm.sstable.reader``; a package's
    ``__init__.py`` is the package."""
    parts = ["lsm"] + os.path.relpath(path, ROOT).removesuffix(".py").split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_edges(path: str, modules: set[str]) -> set[str]:
    """The modules of the package that importing ``path`` imports directly
    (annotation-only imports left out; a parent package's implicit import too)."""
    tree = ast.parse(open(path).read(), path)
    name = _module_name(path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                 and getattr(block.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(block)}
    edges: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            edges |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base not in modules:
                continue
            for a in node.names:
                edges.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    edges.discard(name)
    return edges


def test_no_import_cycles():
    paths = {_module_name(path): path for path, _ in _modules()}
    modules = set(paths)
    graph = {m: _runtime_edges(p, modules) for m, p in paths.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
    assert graph["lsm"] and graph["lsm.db"], "the import graph is empty: the test reads nothing"


def test_no_function_level_imports_of_lsm_modules():
    problems = []
    for path, _top in _modules():
        tree = ast.parse(open(path).read(), path)
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("lsm")):
                        problems.append(f"{path}:{node.lineno}: import inside {fn.name}() dodges the layering")
    assert not problems, "\n".join(problems)


def test_forbidden_calls():
    problems = []
    for path, top in _modules():
        src = open(path).read()
        tree = ast.parse(src, path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and node.type is None:
                problems.append(f"{path}:{node.lineno}: bare except")
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else (f.attr if isinstance(f, ast.Attribute) else "")
                owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
                if name == "print" and top != "cli":
                    problems.append(f"{path}:{node.lineno}: print()")
                if top != "fs" and (owner, name) in {("os", "fsync"), ("os", "fdatasync"), ("os", "replace"),
                                                     ("os", "rename"), ("fcntl", "flock"), ("os", "remove"),
                                                     ("os", "unlink"), ("os", "truncate")}:
                    problems.append(f"{path}:{node.lineno}: {owner}.{name} outside lsm/fs.py")
                if top not in ("fs", "cli") and name == "open" and owner == "" and top != "db":
                    problems.append(f"{path}:{node.lineno}: builtin open() outside lsm/fs.py")
    assert not problems, "\n".join(problems)


def test_module_sizes():
    big = []
    for path, _ in _modules():
        n = sum(1 for _ in open(path))
        if n > 1000 and "why this module is long" not in open(path).read():
            big.append(f"{path}: {n} lines")
    assert not big, big

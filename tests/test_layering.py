"""House rules enforced by a test, not by review (STYLE habit 14; Pebble's
lint_test.go): the import table of STYLE.md, no cycles, no runtime imports
beyond the stdlib and the three dependencies, no pickle/print/bare except,
and no raw fsync/replace/flock outside lsm/fs.py."""

from __future__ import annotations

import ast
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lsm")

L0 = {"errors", "invariants", "coding", "keys", "filenames", "fs", "options", "metrics", "forks", "rangedel",
      "memory"}
L1 = {"serde", "batch", "record", "wal", "sstable", "manifest"}
L2 = {"memtable", "iterators", "cache", "version", "builder"}
L3 = {"commit", "compaction", "recovery"}

# module -> modules (top-level names inside lsm) it may import
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    **{m: {"errors"} for m in ("invariants", "coding", "keys", "filenames", "fs", "options", "metrics")},
    "forks": set(),
    "dbstate": set(),
    "rangedel": set(),
    "memory": set(),
    "serde": {"errors", "coding"},
    "batch": {"errors", "coding", "keys"},
    "record": {"errors", "coding", "fs"},
    "wal": {"errors", "coding", "keys", "fs", "batch", "record"},
    "sstable": {"errors", "coding", "keys", "fs", "options", "invariants", "memory", "sstable", "rangedel"},
    "manifest": {"errors", "coding", "keys", "fs", "filenames", "record"},
    "memtable": {"errors", "keys", "invariants", "memory", "rangedel"},
    "iterators": {"errors", "keys", "invariants", "rangedel"},
    "cache": {"errors", "fs", "metrics", "sstable", "manifest"},
    "version": {"errors", "keys", "options", "manifest", "invariants", "filenames", "fs", "memory", "rangedel"},
    "builder": {"errors", "keys", "filenames", "fs", "manifest", "memtable", "options", "sstable", "rangedel"},
    **{m: L0 | L1 | L2 for m in L3},
    "worker": L0 | L1 | L2 | {"compaction"},
    "snapshot": {"errors", "keys", "memtable", "version", "rangedel"},
    "cursor": {"errors", "keys", "iterators", "snapshot", "rangedel"},
    "background": L0 | L1 | L2 | L3 | {"dbstate", "snapshot", "worker"},
    "reads": L0 | L1 | L2 | {"snapshot", "cursor"},
    "writes": L0 | L1 | L2 | {"commit", "snapshot"},
    "sizes": L0 | L1 | L2 | {"snapshot"},
    "checkpoint": L0 | L1 | L2 | L3 | {"snapshot"},
    "ingest": L0 | L1 | L2 | {"commit", "snapshot"},
    "external": {"errors", "fs", "keys", "batch", "sstable"},
    "db": L0 | L1 | L2 | L3 | {"dbstate", "snapshot", "background", "reads", "writes", "worker", "sizes",
                                "checkpoint", "ingest", "typed", "prefixed"},
    "typed": {"serde", "errors", "snapshot"},
    "prefixed": {"dbstate", "typed", "batch", "iterators", "keys", "sizes", "snapshot", "serde"},
    "cachelog": {"errors", "coding"},
    "cacheshard": {"errors", "fs", "record", "metrics", "cachelog"},
    "pcache": {"errors", "fs", "keys", "options", "cachelog", "cacheshard", "forks"},
    "dumprecords": {"keys"},
    "filescan": L0 | L1 | L2 | {"recovery", "dumprecords"},
    "dump": L0 | L1 | L2 | {"db", "dumprecords", "filescan"},
    "repair": L0 | L1 | L2 | {"dumprecords", "filescan"},
    "admin": {"errors", "filenames", "fs"},
    "cli": {"dump", "repair", "db", "errors", "options"},
    "bulk": {"db", "external", "keys", "sstable", "fs", "errors"},
    "__init__": L0 | L1 | L2 | L3 | {"db", "typed", "prefixed", "pcache", "snapshot", "admin", "repair", "external",
                                     "cursor"},
}

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


def test_no_function_level_imports_of_lsm_modules():
    problems = []
    for path, top in _modules():
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

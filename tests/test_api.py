"""The public surface: ``lsm.__all__`` is exactly the names below (a name
added or removed is a deliberate change of the API), each documented and
fully annotated."""

from __future__ import annotations

import inspect

import lsm

PUBLIC_NAMES = {
    "open", "DB", "Options", "Entry", "Cursor", "WriteBatch", "Snapshot", "ScanIterator", "TypedView",
    "Error", "CorruptionError", "DiskError", "LockError", "ClosedError", "ReadOnlyError",
    "SerializationError", "BackgroundError", "metrics", "serde", "__version__", "PersistentCache",
    "destroy", "repair", "PrefixedDB",
    "TableFileWriter", "TableFileInfo",
}
OPTIONAL: set[str] = set()


def test_all_is_the_public_list():
    assert set(lsm.__all__) - OPTIONAL == PUBLIC_NAMES
    assert lsm.__all__ == sorted(lsm.__all__)
    for name in lsm.__all__:
        assert hasattr(lsm, name), name


def test_every_public_name_is_documented_and_annotated():
    problems = []
    for name in lsm.__all__:
        obj = getattr(lsm, name)
        if name.startswith("__") or inspect.ismodule(obj):
            continue
        if not (obj.__doc__ or "").strip():
            problems.append(f"{name}: no docstring")
        members = [obj] if inspect.isfunction(obj) else [
            m for n, m in vars(obj).items()
            if inspect.isfunction(m) and (not n.startswith("_") or n in ("__init__",))]
        for fn in members:
            if not (fn.__doc__ or "").strip() and fn.__name__ != "__init__" and name not in (
                    "Entry",) and not fn.__name__.startswith("__"):
                problems.append(f"{name}.{fn.__name__}: no docstring")
            sig = inspect.signature(fn)
            for p in sig.parameters.values():
                if p.name in ("self", "cls") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    continue
                if p.annotation is inspect.Parameter.empty and p.name not in ("default",):
                    problems.append(f"{name}.{fn.__name__}: parameter {p.name} not annotated")
    assert not problems, "\n".join(problems)


def test_py_typed_marker_ships():
    import os
    assert os.path.exists(os.path.join(os.path.dirname(lsm.__file__), "py.typed"))


def test_metrics_rate_counter_is_public():
    c = lsm.metrics.RateCounter(window=60.0, bucket=1.0)
    c.record()
    c.record(4)
    assert c.total() == 5 and c.rate() > 0

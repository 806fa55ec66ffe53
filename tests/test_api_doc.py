"""doc/api.md stays true to the code: every public name, every public ``DB``
method with its signature as the code spells it, every option with its type
and default, every ``stats()`` section and every ``lsm-dump`` command is
there. Each check reads one section of the document, so a name mentioned in
passing elsewhere does not hide its missing entry."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import operator
import re
import typing
from pathlib import Path

import pytest

import lsm
from lsm import cli

DOC = Path(__file__).resolve().parent.parent / "doc" / "api.md"


def _section(title: str) -> str:
    """The text of the ``## `` section whose heading is ``title``, up to the next ``## ``."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"doc/api.md has no section '## {title}'"
    return m.group(1)


def _table_rows(section: str) -> list[list[str]]:
    """The cells of every markdown table row of ``section`` (separator rows dropped)."""
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not re.match(r"^\|[\s\-:|]+\|$", line):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _code(cell: str) -> str:
    """The content of a cell that is one code span."""
    m = re.fullmatch(r"`([^`]*)`", cell)
    assert m, f"expected one code span, got {cell!r}"
    return m.group(1)


def _signature(fn) -> str:
    """``name(params) -> ret`` as written in the source of ``fn``'s ``def``
    (whitespace collapsed, ``self`` dropped)."""
    src = inspect.getsource(inspect.unwrap(fn))
    m = re.search(r"def\s+(\w+)\((.*?)\)(?:\s*->\s*(.*?))?:\s*(?:\.\.\.)?\s*(?:#.*)?\n", src, re.S)
    assert m, f"no def header in the source of {fn!r}"
    params = re.sub(r"^self(,\s*|$)", "", " ".join(m.group(2).split()))
    ret = f" -> {' '.join(m.group(3).split())}" if m.group(3) else ""
    return f"{m.group(1)}({params}){ret}"


def _db_members() -> dict[str, object]:
    """The public members of ``lsm.DB`` that the lsm package defines (not
    those inherited from MutableMapping or object)."""
    out = {}
    for name in dir(lsm.DB):
        if name.startswith("_"):
            continue
        owner = next(c for c in lsm.DB.__mro__ if name in c.__dict__)
        if owner.__module__.split(".")[0] == "lsm":
            out[name] = owner.__dict__[name]
    return out


# -- the tests -------------------------------------------------------------------


def test_every_name_in_all_has_a_row_and_no_stale_rows():
    rows = _table_rows(_section("Package and top level"))
    documented = {_code(r[0])[len("lsm."):] for r in rows[1:] if r[0].startswith("`lsm.")}
    assert documented == set(lsm.__all__), (
        f"missing from doc/api.md: {sorted(set(lsm.__all__) - documented)}; "
        f"no longer in lsm.__all__: {sorted(documented - set(lsm.__all__))}")


def test_db_members_found_by_the_helper():
    # Guards the helper: inherited mapping methods are out, the mixins' methods in.
    members = _db_members()
    assert {"get", "scan", "put", "flush", "checkpoint", "ingest", "stats", "path"} <= set(members)
    assert not {"keys", "items", "pop", "update", "clear"} & set(members)


@pytest.mark.parametrize("name", sorted(_db_members()))
def test_every_public_db_method_appears_with_its_signature(name):
    section = _section("`lsm.open` and `DB`")
    member = _db_members()[name]
    if isinstance(member, property):
        assert f"`DB.{name}` (property)" in section, f"DB.{name} is not documented"
    else:
        # An overloaded method is documented by its overloads, what a caller's
        # type checker sees (typing.get_overloads: Python 3.11+).
        overloads = getattr(typing, "get_overloads", lambda f: [])(member)
        for sig in [_signature(o) for o in overloads] or [_signature(member)]:
            assert f"`{sig}`" in section, f"doc/api.md lacks DB.{name} with its signature `{sig}`"


@pytest.mark.parametrize("fn", [lsm.open, lsm.destroy, lsm.repair], ids=lambda f: f.__name__)
def test_module_functions_appear_with_their_signatures(fn):
    sig = _signature(fn)
    assert f"`{sig}`" in _section("`lsm.open` and `DB`"), f"doc/api.md lacks `{sig}`"


_OPS = {ast.LShift: operator.lshift, ast.Mult: operator.mul, ast.Add: operator.add, ast.Pow: operator.pow}


def _evaluate(expr: str):
    """The value of a default as the doc writes it: a literal, or integer
    arithmetic on literals (``8 << 20``)."""
    def ev(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(f"not a literal default: {expr!r}")
    return ev(ast.parse(expr, mode="eval").body)


def _option_rows() -> dict[str, list[str]]:
    rows = _table_rows(_section("Options"))
    assert rows[0][:3] == ["field", "type", "default"], rows[0]
    return {_code(r[0]): r for r in rows[1:]}


def test_every_option_has_a_row_and_no_stale_rows():
    fields = {f.name for f in dataclasses.fields(lsm.Options)}
    documented = set(_option_rows())
    assert documented == fields, (f"missing: {sorted(fields - documented)}; "
                                  f"not options: {sorted(documented - fields)}")


@pytest.mark.parametrize("field", dataclasses.fields(lsm.Options), ids=lambda f: f.name)
def test_option_row_has_the_codes_type_and_default(field):
    row = _option_rows()[field.name]
    assert _code(row[1]) == field.type, f"{field.name}: type {row[1]} in the doc, {field.type} in the code"
    default = _evaluate(_code(row[2]))
    assert type(default) is type(field.default) and default == field.default, (
        f"{field.name}: default {row[2]} in the doc, {field.default!r} in the code")
    assert len(row) == 5 and all(row[3:]), f"{field.name}: unit and description must be filled in"


def test_every_stats_section_is_documented(tmp_path):
    with lsm.open(tmp_path / "db", sync_mode="never", compaction_process=False) as db:
        keys = set(db.stats())
    documented = {_code(r[0]) for r in _table_rows(_section("`stats()`"))[1:]}
    assert documented == keys, f"missing: {sorted(keys - documented)}; stale: {sorted(documented - keys)}"


def test_every_lsm_dump_command_is_documented():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # the sub-command action
    commands = set(sub.choices)
    documented = {_code(r[0]).split()[1] for r in _table_rows(_section("Tools"))[1:]
                  if r[0].startswith("`lsm-dump ")}
    assert documented == commands, (f"missing: {sorted(commands - documented)}; "
                                    f"stale: {sorted(documented - commands)}")

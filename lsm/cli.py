"""``lsm-dump``: the command-line front end of :mod:`lsm.dump`.

This module only parses arguments and formats the records that ``lsm.dump``
returns: aligned text tables by default, JSON with ``--json`` (before or after
the sub-command). In JSON, keys and values are hex strings, as in
``db.stats()``. In text, bytes print as-is when printable, with ``\\xNN``
escapes when mostly printable, and as ``0x``-prefixed hex otherwise.

Exit status: 0 success; 1 a problem was found (``verify`` errors, damage in a
``wal``, a key ``get`` did not find) or an ``lsm.Error`` stopped the command;
2 bad usage, or the database ``LOCK`` is held by another process; 130 interrupted.
Errors are one line on stderr, never a traceback. ``python -m lsm.cli``
runs the same command line where the ``lsm-dump`` script is not installed.

>>> args = build_parser().parse_args(["scan", "/db", "--prefix", "0x00ff", "--json"])
>>> args.json, parse_key(args.prefix, args.key_mode)
(True, b'\\x00\\xff')
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from . import dump
from .db import DB
from .errors import Error, LockError
from .repair import repair

__all__ = ["format_bytes", "main", "parse_key"]

PROG = "lsm-dump"
EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2  # also: the LOCK is held elsewhere (nothing was read)
EXIT_INTERRUPTED = 130
VALUE_WIDTH = 60  # characters of a value shown in text tables before "..."

_READ_LOCK = "Takes the shared LOCK: fails (exit 2) while a writer has the database open."
_NO_LOCK = "Reads one file; takes no lock and works on a database in use."


class UsageError(Exception):
    """A command-line argument is malformed (exit 2)."""


# -- bytes in and out ------------------------------------------------------------


def parse_key(text: str, mode: str = "auto") -> bytes:
    """Bytes of a key given on the command line.

    ``mode`` ``"hex"``: ``text`` is hex digits; ``"text"``: its UTF-8 bytes;
    ``"auto"``: hex after a ``0x`` prefix, else UTF-8 text.

    >>> parse_key("user:1"), parse_key("0x00ff"), parse_key("00ff", "hex"), parse_key("0x1", "text")
    (b'user:1', b'\\x00\\xff', b'\\x00\\xff', b'0x1')
    """
    if mode == "hex" or (mode == "auto" and text[:2].lower() == "0x"):
        digits = text[2:] if mode == "auto" else text
        try:
            return bytes.fromhex(digits)
        except ValueError:
            raise UsageError(f"{text!r} is not valid hex (use --key-text for a literal key)") from None
    return os.fsencode(text)  # argv text back to the bytes the user typed


def format_bytes(data: bytes, limit: int | None = None) -> str:
    """Show ``data`` for a human: as-is when printable ASCII, escaped when
    mostly printable, else ``0x`` hex; cut to ``limit`` characters with ``...``.

    >>> format_bytes(b"user:1"), format_bytes(b"a\\x00b\\\\c"), format_bytes(b"\\x00\\x01\\x02"), format_bytes(b"")
    ('user:1', 'a\\\\x00b\\\\\\\\c', '0x000102', '""')
    """
    if not data:
        return '""'
    printable = sum(32 <= c < 127 for c in data)
    if data[:2].lower() == b"0x" or printable * 4 < len(data) * 3:
        text = "0x" + data.hex()
    elif printable == len(data) and b"\\" not in data:
        text = data.decode("ascii")
    else:
        text = "".join("\\\\" if c == 92 else chr(c) if 32 <= c < 127 else f"\\x{c:02x}" for c in data)
    if limit is not None and len(text) > limit:
        text = text[:max(limit - 3, 1)] + "..."
    return text


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- output helpers ---------------------------------------------------------------


class _Out:
    """Where a command writes: text lines or JSON, to one stream."""

    def __init__(self, stream: TextIO, as_json: bool) -> None:
        self.stream = stream
        self.json = as_json

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")

    def doc(self, obj: Any) -> None:
        self.stream.write(json.dumps(_jsonable(obj), indent=2) + "\n")

    def array(self, items: Iterable[Any], indent: str = "") -> int:
        """Stream ``items`` as one JSON array (never all in memory); return the count."""
        w = self.stream.write
        w("[")
        n = 0
        for item in items:
            w(("," if n else "") + "\n" + indent + "  " + json.dumps(_jsonable(item)))
            n += 1
        w(("\n" + indent + "]") if n else "]")
        return n

    def fields(self, rows: list[tuple[str, Any]]) -> None:
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            self.line(f"{k.ljust(width)}  {v}")

    def table(self, headers: list[str], rows: list[list[Any]], right: frozenset[int] | set[int] = frozenset()) -> None:
        """Aligned columns; columns in ``right`` align right (numbers)."""
        cells = [[str(c) for c in r] for r in rows]
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

        def fmt(r: list[str]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(r, widths))).rstrip()

        self.line(fmt(headers))
        for r in cells:
            self.line(fmt(r))


def _seqs(lo: int, hi: int) -> str:
    return f"{lo}-{hi}"


# -- commands --------------------------------------------------------------------


def _cmd_manifest(args: argparse.Namespace, out: _Out) -> int:
    info = dump.describe_manifest(args.db, history=args.history)
    if out.json:
        out.doc(info)
        return EXIT_OK
    files = info.files
    rows: list[tuple[str, Any]] = [
        ("manifest", info.manifest), ("manifest bytes", info.manifest_bytes), ("edits", info.edit_count),
        ("log number", info.log_number), ("next file", info.next_file),
        ("last sequence", info.last_sequence),
        ("tables", f"{len(files)} ({sum(f.size for f in files)} bytes, "
                   f"{sum(f.entries for f in files)} entries)")]
    rows += [(f"compact pointer L{lv}", format_bytes(k)) for lv, k in info.compact_pointers]
    out.fields(rows)
    if files:
        out.line()
        levels = sorted({f.level for f in files})
        out.table(["level", "files", "bytes", "entries"],
                  [[f"L{lv}", sum(1 for f in files if f.level == lv),
                    sum(f.size for f in files if f.level == lv),
                    sum(f.entries for f in files if f.level == lv)] for lv in levels], {1, 2, 3})
        out.line()
        out.table(["level", "file", "bytes", "entries", "range dels", "seq", "smallest", "largest"],
                  [[f"L{f.level}", f"{f.number:06d}", f.size, f.entries, f.range_deletions,
                    _file_seqs(f), format_bytes(f.smallest, 32), format_bytes(f.largest, 32)]
                   for f in files], {2, 3, 4})
    if args.history:
        out.line()
        out.table(["offset", "edit"], [[e.offset, _describe_edit(e)] for e in info.edits], {0})
    return EXIT_OK


def _file_seqs(f) -> str:
    """A table's sequence range; an ingested table's global sequence (every
    entry is read at it) as ``gseq=N``."""
    return f"gseq={f.global_seq}" if getattr(f, "global_seq", 0) else _seqs(f.min_seq, f.max_seq)


def _describe_edit(e: dump.EditInfo) -> str:
    parts = []
    for name, value in (("format", e.format_version), ("log", e.log_number), ("next", e.next_file),
                        ("last seq", e.last_sequence)):
        if value is not None:
            parts.append(f"{name} {value}")
    parts += [f"pointer L{lv} {format_bytes(k, 24)}" for lv, k in e.compact_pointers]
    parts += [f"-L{lv} {n:06d}" for lv, n in e.deleted]
    parts += [f"+L{f.level} {f.number:06d} [{format_bytes(f.smallest, 24)} .. {format_bytes(f.largest, 24)}] "
              f"seq {_file_seqs(f)}, {f.entries} entries"
              + (f", {f.range_deletions} range deletions" if f.range_deletions else "")
              + f", {f.size} bytes" for f in e.added]
    return "; ".join(parts) or "(empty)"


def _cmd_sst(args: argparse.Namespace, out: _Out) -> int:
    info = dump.describe_sst(args.file, fp_probes=args.fp_probes)
    entries = dump.iter_sst(args.file) if args.entries else None
    if out.json:
        if entries is None:
            out.doc(info)
        else:
            out.stream.write('{\n  "table": ' + json.dumps(_jsonable(info)) + ',\n  "entries": ')
            out.array(entries, "  ")
            out.stream.write("\n}\n")
        return EXIT_OK
    p = {k: v for k, v in info.props.items() if isinstance(v, int)}
    keys = {k: v for k, v in info.props.items() if isinstance(v, bytes)}
    sizes = [b.size for b in info.blocks]
    rows: list[tuple[str, Any]] = [
        ("file", info.path), ("number", info.number), ("file bytes", info.file_size),
        ("format", info.format_version),
        ("entries", f"{p['entries']} ({p['deletions']} deletions, {p['ttl_entries']} with ttl, "
                    f"{p['unique_keys']} unique keys)"),
        ("range deletions", info.range_deletions),
        ("key range", f"{format_bytes(keys['smallest'], 40)} .. {format_bytes(keys['largest'], 40)}"),
        ("sequence range", _seqs(p["min_seq"], p["max_seq"])),
        ("external", "yes: written by lsm.TableFileWriter (sequence 0; DB.ingest gives it one)"
         if p.get("external") == 1 else "no"),
        ("data blocks", f"{len(info.blocks)}: {info.data_bytes} bytes on disk, {info.raw_data_bytes} raw"
                        + (f" (on disk min {min(sizes)}, avg {sum(sizes) // len(sizes)}, max {max(sizes)})"
                           if sizes else "")),
        ("compression", f"{'zstd' if p['compression'] else 'none'}, ratio {info.compression_ratio:.2f}"),
        ("index bytes", info.index_bytes), ("filter bytes", info.filter_bytes),
        ("properties bytes", info.props_bytes)]
    b = info.bloom
    rows.append(("bloom filter", "none" if b is None else
                 f"{b.kind}, {b.bits} bits, {b.probes} probes, {b.bits_per_key:.1f} bits/key; expected fp "
                 f"{100 * b.expected_fp_rate:.2f}%, measured {100 * b.measured_fp_rate:.2f}% "
                 f"({b.false_positives} of {b.keys_tested} absent keys)"))
    out.fields(rows)
    if info.range_dels:
        out.line()
        out.table(["seq", "range deleted (start inclusive .. end exclusive)"],
                  [[seq, f"{format_bytes(start, 40)} .. {format_bytes(end, 40)}"]
                   for start, end, seq in info.range_dels], {0})
    if args.blocks:
        out.line()
        out.table(["block", "offset", "bytes", "raw", "compression", "entries", "last key"],
                  [[bl.index, bl.offset, bl.size, bl.raw_size, bl.compression, bl.entries,
                    format_bytes(bl.last_key, 40)] for bl in info.blocks], {0, 1, 2, 3, 5})
    if entries is not None:
        out.line()
        out.line(f"{'seq':>10}  {'kind':<7}  {'vbytes':>8}  key  value")
        for e in entries:
            ttl = f" (expires {_time(e.expires_at)})" if e.expires_at is not None else ""
            out.line(f"{e.seq:>10}  {e.kind:<7}  {len(e.value):>8}  {format_bytes(e.key)}  "
                     f"{format_bytes(e.value, VALUE_WIDTH) if e.kind != 'DELETE' else '-'}{ttl}")
    return EXIT_OK


def _cmd_wal(args: argparse.Namespace, out: _Out) -> int:
    records = dump.iter_wal(args.file)  # reads the file now: an error comes before any output
    stats = {"records": 0, "ops": 0, "damaged_regions": 0, "damaged_bytes": 0}
    serious = [0]  # damage other than a torn tail

    def counted() -> Iterator[dump.WalOp | dump.Damage]:
        for r in records:
            if isinstance(r, dump.Damage):
                stats["damaged_regions"] += 1
                stats["damaged_bytes"] += r.nbytes
                serious[0] += not r.torn
            else:
                stats["ops"] += 1
                stats["records"] += r.batch_index == 0
            yield r

    if out.json:
        out.stream.write('{\n  "file": ' + json.dumps(args.file) + ',\n  "records": ')
        out.array((_wal_json(r, args.values) for r in counted()), "  ")
        out.stream.write(',\n  "summary": ' + json.dumps(stats) + "\n}\n")
    else:
        out.line(f"{'offset':>8}  {'seq':>8}  {'op':<7}  {'vbytes':>8}  key" + ("  value" if args.values else ""))
        for r in counted():
            out.line(_wal_line(r, args.values))
        out.line(f"-- {_plural(stats['records'], 'record')}, {_plural(stats['ops'], 'operation')}, "
                 f"{_plural(stats['damaged_regions'], 'damaged region')} ({stats['damaged_bytes']} bytes)")
    return EXIT_PROBLEM if serious[0] else EXIT_OK


def _wal_json(r: dump.WalOp | dump.Damage, values: bool) -> dict[str, Any]:
    if isinstance(r, dump.Damage):
        return {"type": "damage", **_jsonable(r)}
    d = {"type": "op", "offset": r.offset, "seq": r.seq, "op": r.kind, "key": r.key.hex(),
         "value_size": len(r.value), "expires_at": r.expires_at, "batch_index": r.batch_index,
         "batch_size": r.batch_size}
    if values:
        d["value"] = r.value.hex()
    return d


def _wal_line(r: dump.WalOp | dump.Damage, values: bool) -> str:
    if isinstance(r, dump.Damage):
        what = "torn tail" if r.torn else "DAMAGED"
        return f"{r.offset:>8}  {'-':>8}  {what}: {r.reason} ({r.nbytes} bytes skipped)"
    if r.kind == "RANGE_DELETE":  # key: the range's start, value: its end (always shown)
        return f"{r.offset:>8}  {r.seq:>8}  {'DELRANGE':<7}  {'-':>8}  {format_bytes(r.key)} .. {format_bytes(r.value)}"
    value = f"  {format_bytes(r.value, VALUE_WIDTH)}" if values and r.kind != "DELETE" else ""
    return f"{r.offset:>8}  {r.seq:>8}  {r.kind:<7}  {len(r.value):>8}  {format_bytes(r.key)}{value}"


def _with_db(args: argparse.Namespace, fn: Callable[[DB], int]) -> int:
    db = dump.open_read_only(args.db, wal_recovery=args.wal_recovery)
    try:
        return fn(db)
    finally:
        db.close()


def _cmd_get(args: argparse.Namespace, out: _Out) -> int:
    key = parse_key(args.key, args.key_mode)

    def run(db: DB) -> int:
        e = db.get_entry(key)
        if out.json:
            out.doc({"key": key.hex(), "found": e is not None, "value": e.value.hex() if e else None,
                     "version": e.version if e else None, "expires_at": e.expires_at if e else None})
        elif e is None:
            sys.stderr.write(f"{PROG}: key not found: {format_bytes(key)}\n")
        elif args.raw:
            out.stream.flush()
            sys.stdout.buffer.write(e.value)
            sys.stdout.buffer.flush()
        else:
            out.fields([("key", format_bytes(key)), ("value", format_bytes(e.value)),
                        ("value bytes", len(e.value)), ("version", e.version),
                        ("expires", _time(e.expires_at))])
        return EXIT_OK if e is not None else EXIT_PROBLEM

    return _with_db(args, run)


def _cmd_scan(args: argparse.Namespace, out: _Out) -> int:
    mode = args.key_mode
    prefix = parse_key(args.prefix, mode) if args.prefix is not None else b""
    start = parse_key(args.start, mode) if args.start is not None else None
    stop = parse_key(args.stop, mode) if args.stop is not None else None
    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must be >= 0")

    def run(db: DB) -> int:
        it = db.scan(prefix, start=start, stop=stop, reverse=args.reverse, keys_only=args.keys_only)
        try:
            items = itertools.islice(it, args.limit)
            if args.keys_only:
                if out.json:
                    out.array({"key": k.hex()} for k in items)
                    out.line()
                else:
                    for k in items:
                        out.line(format_bytes(k))
            elif out.json:
                out.array({"key": k.hex(), "value": v.hex()} for k, v in items)
                out.line()
            else:
                for k, v in items:
                    out.line(f"{format_bytes(k).ljust(24)}  {format_bytes(v, None if args.full else VALUE_WIDTH)}")
            return EXIT_OK
        finally:
            it.close()

    return _with_db(args, run)


def _cmd_stats(args: argparse.Namespace, out: _Out) -> int:
    def run(db: DB) -> int:
        s = db.stats()
        if out.json:
            out.doc(s)
            return EXIT_OK
        out.table(["level", "files", "bytes", "entries", "target"],
                  [[f"L{lv['level']}", len(lv["files"]), lv["bytes"], lv["entries"],
                    "-" if lv.get("target_bytes") is None else int(lv["target_bytes"])]
                   for lv in s["levels"]], {1, 2, 3, 4})
        out.line()
        flat: list[tuple[str, Any]] = []
        _flatten("", {k: v for k, v in s.items() if k != "levels"}, flat)
        out.fields(flat)
        return EXIT_OK

    return _with_db(args, run)


def _flatten(prefix: str, obj: Any, rows: list[tuple[str, Any]]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, rows)
    elif isinstance(obj, float):
        rows.append((prefix, f"{obj:.6g}"))
    elif isinstance(obj, list):
        rows.append((prefix, ", ".join(map(str, obj)) or "-"))
    else:
        rows.append((prefix, "-" if obj is None else obj))


def _cmd_verify(args: argparse.Namespace, out: _Out) -> int:
    counts = {"ok": 0, "warning": 0, "error": 0}
    findings = []
    for f in dump.verify(args.db):
        counts[f.severity] += 1
        if out.json:
            findings.append(f)
        elif f.severity != "ok" or not args.quiet:
            where = f" at offset {f.offset}" if f.offset is not None else ""
            label = {"ok": "ok", "warning": "warning", "error": "ERROR"}[f.severity]
            out.line(f"{label:<8} {f.path}{where}: {f.message}")
    status = EXIT_PROBLEM if counts["error"] else EXIT_OK
    if out.json:
        out.doc({"ok": not counts["error"], "errors": counts["error"], "warnings": counts["warning"],
                 "files_ok": counts["ok"], "findings": findings})
    else:
        out.line(f"verify: {_plural(counts['error'], 'error')}, {_plural(counts['warning'], 'warning')}, "
                 f"{_plural(counts['ok'], 'file')} ok")
    return status


def _cmd_repair(args: argparse.Namespace, out: _Out) -> int:
    rep = repair(args.db)
    if out.json:
        out.doc(rep)
        return EXIT_OK
    out.fields([("manifest", rep.manifest), ("log number", rep.log_number), ("next file", rep.next_file),
                ("last sequence", rep.last_sequence), ("tables checked", rep.tables_checked),
                ("tables obsolete", _numbers(rep.tables_obsolete)),
                ("tables salvaged", _numbers(rep.tables_salvaged)),
                ("tables merged", _numbers(rep.tables_merged)),
                ("logs converted", _numbers(rep.logs_converted)),
                ("wal entries", rep.wal_entries_recovered)])
    if rep.files:
        out.line()
        out.table(["level", "file", "bytes", "entries", "seq", "smallest", "largest"],
                  [[f"L{f.level}", f"{f.number:06d}", f.size, f.entries, _seqs(f.min_seq, f.max_seq),
                    format_bytes(f.smallest, 32), format_bytes(f.largest, 32)] for f in rep.files], {2, 3})
    if rep.moved:
        out.line()
        for src, dst, why in rep.moved:
            out.line(f"set aside: {src} -> {dst} ({why})")
    for p in rep.problems:
        out.line(f"problem: {p}")
    return EXIT_OK


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _numbers(ns: list[int]) -> str:
    return ", ".join(f"{n:06d}" for n in ns) or "-"


# -- argument parsing -------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``lsm-dump`` argument parser (``--json`` is accepted before or after the sub-command)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Inspect, verify and repair an lsm database directory.",
        epilog="Locks: manifest, get, scan, stats and verify take the shared LOCK and modify "
               "nothing (they fail with exit 2 while a writer has the database open); sst and wal read "
               "one file and take no lock; repair takes the exclusive LOCK (no other process may have "
               "the database open) and is the only command that writes. "
               "Exit status: 0 ok, 1 problem found or error, 2 usage error or database locked.")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output (bytes as hex)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable JSON output (bytes as hex)")
    keys = argparse.ArgumentParser(add_help=False)
    group = keys.add_mutually_exclusive_group()
    group.add_argument("--key-hex", dest="key_mode", action="store_const", const="hex",
                       help="keys on the command line are hex digits")
    group.add_argument("--key-text", dest="key_mode", action="store_const", const="text",
                       help="keys are literal text, even when they start with 0x")
    keys.set_defaults(key_mode="auto")
    opening = argparse.ArgumentParser(add_help=False)
    opening.add_argument("--wal-recovery", default="tolerate_tail", choices=dump.WAL_RECOVERY_MODES,
                         help="how the read-only open treats a damaged log (default tolerate_tail; "
                              "skip_corrupt reads past damage); nothing is written either way")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str, lock: str, fn: Callable[[argparse.Namespace, _Out], int],
            parents: list[argparse.ArgumentParser] | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=f"{help}. {lock}", parents=[common] + (parents or []))
        p.set_defaults(func=fn)
        return p

    p = add("manifest", "levels, files, key ranges, sequence numbers, log number and next file",
            _READ_LOCK, _cmd_manifest)
    p.add_argument("db", help="database directory (or a MANIFEST-NNNNNN file: then no lock)")
    p.add_argument("--history", action="store_true", help="also list every version edit")
    p = add("sst", "properties, blocks, compression and bloom filter of one table", _NO_LOCK, _cmd_sst)
    p.add_argument("file", help="an NNNNNN.sst file")
    p.add_argument("--entries", action="store_true", help="list every entry with its sequence and kind")
    p.add_argument("--blocks", action="store_true", help="list every data block")
    p.add_argument("--fp-probes", type=int, default=dump.FP_PROBES, metavar="N",
                   help=f"random absent keys for the measured false-positive rate (default {dump.FP_PROBES})")
    p = add("wal", "records of a write-ahead log; damaged regions are reported and skipped (exit 1)",
            _NO_LOCK, _cmd_wal)
    p.add_argument("file", help="an NNNNNN.log file")
    p.add_argument("--values", action="store_true", help="show values too")
    p = add("get", "look one key up (KEY as text, 0x-prefixed hex, or hex with --key-hex); "
            "exit 1 when absent", _READ_LOCK, _cmd_get, [keys, opening])
    p.add_argument("db", help="database directory")
    p.add_argument("key", help="the key")
    p.add_argument("--raw", action="store_true", help="write only the raw value bytes to stdout")
    p = add("scan", "list keys and values in order", _READ_LOCK, _cmd_scan, [keys, opening])
    p.add_argument("db", help="database directory")
    p.add_argument("--prefix", metavar="P", help="only keys starting with P")
    p.add_argument("--start", metavar="S", help="first key (inclusive)")
    p.add_argument("--stop", metavar="E", help="end key (exclusive)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N keys")
    p.add_argument("--reverse", action="store_true", help="descending order")
    p.add_argument("--keys-only", action="store_true", help="print keys only")
    p.add_argument("--full", action="store_true", help="do not shorten long values")
    p = add("stats", "db.stats() of a read-only open", _READ_LOCK, _cmd_stats, [opening])
    p.add_argument("db", help="database directory")
    p = add("verify", "check every checksum of every live file and the manifest against the "
            "directory; exit 1 on any error", _READ_LOCK, _cmd_verify)
    p.add_argument("db", help="database directory")
    p.add_argument("--quiet", action="store_true", help="only print problems and the summary")
    p = add("repair", "rebuild the manifest from the tables and logs present; unused files go to lost/",
            "Takes the exclusive LOCK: fails (exit 2) while any process has the database open.",
            _cmd_repair)
    p.add_argument("db", help="database directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``lsm-dump`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = _Out(sys.stdout, args.json)
    try:
        return args.func(args, out)
    except (UsageError, ValueError) as e:
        # ValueError: the engine rejected an argument (e.g. a key over 65,535 bytes)
        parser.exit(EXIT_USAGE, f"{PROG} {args.command}: error: {e}\n")
    except LockError as e:
        sys.stderr.write(f"{PROG}: database is in use: {e}\n")
        return EXIT_USAGE
    except Error as e:
        sys.stderr.write(f"{PROG}: {type(e).__name__}: {e}\n")
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): stop quietly; point stdout at
        # /dev/null so the interpreter's final flush does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PROBLEM
    return EXIT_OK  # not reached: parser.exit raises


if __name__ == "__main__":  # python -m lsm.cli: the same as lsm-dump
    raise SystemExit(main())

"""Corruption tests (README.md#guarantees: corruption is reported, never
returned; the formats are doc/format.md): damage every region of every file type of a
real database, reopen, read everything, and require either a CorruptionError
naming the file (and offset) or the documented recovery — never a wrong value.

One pristine database is built per module (several SSTables on L0 and L1, a
manifest of many edits, a WAL holding single puts, a TTL put and a batch).
Each case copies it, damages one byte (``bit``: xor 0x01, ``byte``: xor
0xFF) or truncates one file, reopens and reads every key with ``get`` plus
full forward and reverse scans.

Expected outcomes (doc/format.md):

* ``Raises(file, offset)``: some read (or the open) raises CorruptionError
  naming ``file`` at ``offset``; every read that succeeds returns the
  acknowledged value.
* ``State(d)``: the documented recovery; no error, and every read returns
  exactly ``d`` (e.g. a torn WAL tail under tolerate_tail drops only the
  last write). The state must survive a second reopen.
* ``NoWrongValue(file)``: the bare invariant: each key reads as its
  acknowledged value, or a CorruptionError is raised (used where the right
  error is a matter of how a bug gets fixed).
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass, field

import pytest

import lsm
from lsm.batch import decode_batch, encode_batch
from lsm.fs import OsFileSystem
from lsm.keys import DELETE, PUT, PUT_TTL, RANGE_DELETE
from lsm.manifest import read_manifest
from lsm.record import HEADER_BYTES, OVERHEAD, encode_record
from lsm.sstable import TableReader
from lsm.sstable.format import FOOTER_BYTES, decode_footer
from lsm.wal import BATCH, BLOCK_BYTES, FRAGMENT_HEADER, frame_fragments, scan_log

# No automatic compactions: the build places tables with explicit flush() and
# compact_range() calls, so the layout does not depend on background timing,
# and a reopen never starts a compaction of its own.
OPTS = dict(memtable_bytes=4096, block_bytes=256, target_file_bytes=2048, sync_mode="never",
            disable_auto_compactions=True)
MODES = ("tolerate_tail", "absolute", "point_in_time", "skip_corrupt")
MASKS = {"bit": 0x01, "byte": 0xFF}
FS = OsFileSystem()

Ops = list[tuple[int, bytes, bytes]]


# --- the pristine database -------------------------------------------------------------------

@dataclass
class WalRecord:
    offset: int
    end: int
    ops: Ops


@dataclass
class Pristine:
    dir: str
    acked: dict[bytes, bytes | None]  # every key ever written -> acknowledged value (None: absent)
    base: dict[bytes, bytes | None]  # the state held in tables (before the WAL records)
    log: str = ""
    wal: list[WalRecord] = field(default_factory=list)
    manifest: str = ""
    manifest_offsets: list[int] = field(default_factory=list)
    manifest_size: int = 0
    tables: dict[str, str] = field(default_factory=dict)  # "l0"/"l1" -> file name

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def state_after(self, records: list[int]) -> dict[bytes, bytes | None]:
        state = dict(self.base)
        for i in records:
            for kind, key, value in self.wal[i].ops:
                if kind == RANGE_DELETE:
                    state.update({k: None for k in state if key <= k < value})
                else:
                    state[key] = None if kind == DELETE else value[8:] if kind == PUT_TTL else value
        return state

    def batch_index(self) -> int:
        return next(i for i, r in enumerate(self.wal) if len(r.ops) > 1)

    def table(self, which: str) -> tuple[str, TableReader]:
        name = self.tables[which]
        return name, TableReader(FS.open_readable(self.path(name)), 0)


def _build(d: str) -> Pristine:
    acked: dict[bytes, bytes | None] = {}
    db = lsm.open(d, **OPTS)
    try:
        for i in range(400):  # several memtable flushes to L0...
            k, v = b"key%04d" % (i % 250), b"val%04d-" % i + b"x" * (i % 13)
            if i % 29 == 0:
                db.put(k, v, ttl=3600)
            else:
                db.put(k, v)
            acked[k] = v
            if i % 37 == 0:
                db.delete(b"key%04d" % (i // 2))
                acked[b"key%04d" % (i // 2)] = None
        db.compact_range()  # ...merged into several L1 files (target_file_bytes)
        for i in range(60):  # more flushes: L0 files over the L1 files
            k, v = b"key%04d" % (i * 4), b"new%04d" % i
            db.put(k, v)
            acked[k] = v
        db.delete(b"key0001")
        acked[b"key0001"] = None
        db.delete_range(b"key0100", b"key0104")  # the newest L0 table gets a range-del block
        acked.update({b"key%04d" % i: None for i in range(100, 104)})
        db.flush()
        base = dict(acked)
        levels = db.stats()["levels"]
        # the WAL: single puts, a batch, a TTL put last
        for i in range(5):
            k, v = b"key%04d" % (i * 3), b"wal%d" % i
            db.put(k, v)
            acked[k] = v
        with db.write_batch() as b:
            b.put(b"batchA", b"1").delete(b"key0010").put(b"key0011", b"bb").delete_range(b"key0200", b"key0203")
        acked.update({b"batchA": b"1", b"key0010": None, b"key0011": b"bb", b"key0200": None, b"key0201": None,
                      b"key0202": None})
        db.put(b"zz_last", b"last", ttl=3600)
        acked[b"zz_last"] = b"last"
    finally:
        db.close()
    p = Pristine(d, acked, base)
    assert levels[0]["files"] and levels[1]["files"], "the build needs L0 and L1 tables"
    p.tables = {"l0": f"{levels[0]['files'][0]['number']:06d}.sst",
                "l1": f"{levels[1]['files'][0]['number']:06d}.sst"}
    assert TableReader(FS.open_readable(p.path(p.tables["l0"])), 0).range_dels, "the newest L0 table has a tombstone"
    names = sorted(os.listdir(d))
    (p.log,) = [n for n in names if n.endswith(".log")]
    (p.manifest,) = [n for n in names if n.startswith("MANIFEST-")]
    data = FS.read_file(p.path(p.log))
    for off, rtype, body in scan_log(data, p.log).records:
        if rtype == BATCH:
            p.wal.append(WalRecord(off, off + FRAGMENT_HEADER + 1 + len(body), decode_batch(body).ops))
    p.manifest_offsets = [off for off, _ in read_manifest(FS, p.path(p.manifest))]
    p.manifest_size = FS.file_size(p.path(p.manifest))
    # sanity: the model reproduces what was acknowledged
    assert len(p.wal) == 7 and p.batch_index() == 5
    assert p.state_after(list(range(len(p.wal)))) == acked
    assert len(p.manifest_offsets) >= 4
    return p


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Pristine:
    return _build(str(tmp_path_factory.mktemp("pristine") / "db"))


# --- expected outcomes and the checker -------------------------------------------------------------

@dataclass
class Raises:
    file: str
    offset: int


@dataclass
class State:
    state: dict[bytes, bytes | None]


@dataclass
class NoWrongValue:
    file: str  # the damaged file; a fix may report it or a file it names (a missing log or table)


NEVER_WRITTEN = [b"", b"aaa", b"key0000x", b"key9999", b"zzzz"]


class _NoSyncFile:
    def __init__(self, f) -> None:
        self._f = f
        self.path = f.path

    @property
    def size(self) -> int:
        return self._f.size

    def write(self, data: bytes) -> None:
        self._f.write(data)

    def sync(self) -> None:
        pass

    def trim(self) -> bool:
        return self._f.trim()

    def close(self) -> None:
        self._f.close()


class NoSyncFS(OsFileSystem):
    """The real filesystem minus fsync: reopening writes a table, a manifest and
    CURRENT, and their fsyncs are a third of each case's time while playing no
    part in detecting or recovering from damage (no power cut is simulated)."""

    def open_writable(self, path: str, *, preallocate: int = 0):
        return _NoSyncFile(super().open_writable(path, preallocate=preallocate))

    def open_appendable(self, path: str):
        return _NoSyncFile(super().open_appendable(path))

    def fsync_dir(self, path: str) -> None:
        pass


def read_all(d: str, mode: str, acked: dict) -> tuple[dict, list, list[lsm.CorruptionError]]:
    """Open, ``get`` every key, scan both ways. Only CorruptionError is caught:
    any other exception escapes and fails the test."""
    errors: list[lsm.CorruptionError] = []
    got: dict[bytes, bytes | None] = {}
    scans: list[list] = []
    try:
        db = lsm.DB(d, lsm.Options(**OPTS, wal_recovery=mode), fs=NoSyncFS())
    except lsm.CorruptionError as e:
        return got, scans, [e]
    try:
        for k in list(acked) + NEVER_WRITTEN:
            try:
                got[k] = db.get(k)
            except lsm.CorruptionError as e:
                errors.append(e)
        for reverse in (False, True):
            try:
                scans.append(list(db.scan(reverse=reverse)))
            except lsm.CorruptionError as e:
                errors.append(e)
    finally:
        db.close()
    return got, scans, errors


def live_items(state: dict) -> list[tuple[bytes, bytes]]:
    return sorted((k, v) for k, v in state.items() if v is not None)


def check(p: Pristine, d: str, expect, mode: str = "tolerate_tail") -> None:
    got, scans, errors = read_all(d, mode, p.acked)
    if isinstance(expect, State):
        assert not errors, f"expected the documented recovery, got {errors[0]}"
        want = {k: expect.state.get(k) for k in got}
        wrong = {k: (v, want[k]) for k, v in got.items() if v != want[k]}
        assert not wrong, f"{len(wrong)} keys differ (got, want): {list(wrong.items())[:3]}"
        assert scans == [live_items(expect.state), live_items(expect.state)[::-1]]
        got2, _, errors2 = read_all(d, mode, p.acked)  # the recovery is durable
        assert not errors2 and got2 == got
        return
    # Raises / NoWrongValue: never a wrong value
    wrong = {k: (v, p.acked.get(k)) for k, v in got.items() if v != p.acked.get(k)}
    assert not wrong, f"WRONG VALUES (got, acked) for {len(wrong)} keys: {list(wrong.items())[:3]}"
    for s in scans:
        assert s in (live_items(p.acked), live_items(p.acked)[::-1]), "scan returned wrong data"
    if isinstance(expect, Raises):
        names = {os.path.basename(e.path) for e in errors}
        assert names <= {expect.file}, f"errors name {names}, expected {expect.file}: {errors[:2]}"
        assert errors, "damage went unnoticed"
        offsets = {e.offset for e in errors}
        assert expect.offset in offsets, f"offsets {offsets}, expected {expect.offset}: {errors[0]}"
        assert all(str(e).startswith(e.path + " at offset ") for e in errors)


def copy_db(p: Pristine, tmp_path) -> str:
    d = str(tmp_path / "db")
    shutil.copytree(p.dir, d)
    return d


def flip(path: str, at: int, mask: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ mask]))


# --- write-ahead log ---------------------------------------------------------------------------
#
# The pristine WAL (sync_mode="never") is one 32 KiB block of one-fragment
# records, none of them ever made durable: damage anywhere in it loses the
# rest of the block (the reader resynchronises only at block starts), and
# since no record says anything was synced, tolerate_tail keeps the prefix
# before the damage (doc/format.md#write-ahead-log, lsm/recovery.py).

WAL_RECORDS = ("first", "batch", "last")
# byte offsets within a record's fragment (negative: from its end; None: the middle of the payload)
WAL_FIELDS = {"checksum": 0, "checksum-high": 3, "length": 4, "length-high": 5, "type": 6, "rtype": 7,
              "payload": None, "last-byte": -1}
# the same for the lsm.record framing of manifests
RECORD_FIELDS = {"magic": 0, "version": 2, "type": 3, "length": 4, "length-high": 7, "header-check": 9,
                 "payload": None, "checksum": -2}


def _wal_index(p: Pristine, which: str) -> int:
    return {"first": 0, "batch": p.batch_index(), "last": len(p.wal) - 1}[which]


def wal_expect(p: Pristine, damaged: int, mode: str):
    """Outcome of damage at WAL record ``damaged`` of the never-synced pristine log."""
    if mode == "absolute":
        return Raises(p.log, p.wal[damaged].offset)
    return State(p.state_after(list(range(damaged))))  # the damaged record and all after it are gone


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("mask", sorted(MASKS))
@pytest.mark.parametrize("field_name", list(WAL_FIELDS))
@pytest.mark.parametrize("record", WAL_RECORDS)
def test_wal_flip(pristine: Pristine, tmp_path, record: str, field_name: str, mask: str, mode: str) -> None:
    p = pristine
    i = _wal_index(p, record)
    r = p.wal[i]
    rel = WAL_FIELDS[field_name]
    at = r.offset + FRAGMENT_HEADER + (r.end - r.offset - FRAGMENT_HEADER) // 2 if rel is None else (
        r.offset + rel if rel >= 0 else r.end + rel)
    d = copy_db(p, tmp_path)
    flip(os.path.join(d, p.log), at, MASKS[mask])
    check(p, d, wal_expect(p, i, mode), mode)


WAL_CUTS = ("empty", "in-file-header", "first-header", "mid-batch", "boundary-before-last", "last-header",
            "last-payload", "last-byte")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cut", WAL_CUTS)
def test_wal_truncate(pristine: Pristine, tmp_path, cut: str, mode: str) -> None:
    p = pristine
    last, b = len(p.wal) - 1, p.batch_index()
    size, damaged = {
        "empty": (0, None),
        "in-file-header": (5, None),
        "first-header": (p.wal[0].offset + 3, 0),
        "mid-batch": (p.wal[b].offset + 20, b),
        "boundary-before-last": (p.wal[last].offset, None),
        "last-header": (p.wal[last].offset + 4, last),
        "last-payload": (p.wal[last].offset + FRAGMENT_HEADER + 3, last),
        "last-byte": (p.wal[last].end - 1, last),
    }[cut]
    d = copy_db(p, tmp_path)
    os.truncate(os.path.join(d, p.log), size)
    if cut == "in-file-header" and mode == "absolute":  # a torn file header: cut short as any torn tail
        expect = Raises(p.log, 0)
    elif damaged is None:  # a cut at a record boundary is indistinguishable from fewer writes
        whole = [i for i, r in enumerate(p.wal) if r.end <= size]
        expect = State(p.state_after(whole))
    else:
        expect = wal_expect(p, damaged, mode)
    check(p, d, expect, mode)


def _wal_db(tmp_path, sync_mode: str, values: list[bytes]) -> tuple[str, str, list[int]]:
    """A database whose log holds one put per value (keys k0, k1, ...);
    returns (dir, log path, each record's offset)."""
    d = str(tmp_path / "db")
    with lsm.open(d, sync_mode=sync_mode) as db:
        for i, v in enumerate(values):
            db.put(b"k%d" % i, v)
    (log,) = [n for n in os.listdir(d) if n.endswith(".log")]
    path = os.path.join(d, log)
    offs = [off for off, rtype, _ in scan_log(FS.read_file(path)).records if rtype == BATCH]
    return d, path, offs


@pytest.mark.parametrize("mode", MODES)
def test_damage_to_durable_writes_is_refused(tmp_path, mode: str) -> None:
    """sync_mode="always": each record says its predecessors were durable, so
    losing one is damage to acknowledged data, not a torn write."""
    d, log, offs = _wal_db(tmp_path, "always", [b"v%d" % i for i in range(8)])
    flip(log, offs[3] + 10, 0x01)
    if mode in ("absolute", "tolerate_tail"):
        with pytest.raises(lsm.CorruptionError) as ei:
            lsm.open(d, wal_recovery=mode).close()
        assert (ei.value.path, ei.value.offset) == (log, offs[3])
        return
    with lsm.open(d, wal_recovery=mode) as db:
        got = [db.get(b"k%d" % i) for i in range(8)]
    assert got == [b"v0", b"v1", b"v2"] + [None] * 5  # the rest of the block is lost with it


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cut", ["fragment-header", "value", "last-byte"])
def test_wal_torn_tail_with_embedded_record(tmp_path, mode: str, cut: str) -> None:
    """The last write is torn; its value holds the bytes of a whole log
    record. Nothing inside a damaged region is replayed, in any mode."""
    inner = b"".join(frame_fragments(bytes((BATCH,)) + encode_batch(999, [(PUT, b"k0", b"INJECTED")]), 0))
    d, log, offs = _wal_db(tmp_path, "never", [b"1", b"prefix" + inner + b"suffix"])
    size = os.path.getsize(log)
    os.truncate(log, {"fragment-header": offs[1] + 5, "value": offs[1] + 30 + len(inner), "last-byte": size - 1}[cut])
    try:
        with lsm.open(d, wal_recovery=mode) as db:
            got = {k: db.get(k) for k in (b"k0", b"k1")}
    except lsm.CorruptionError as e:
        assert mode == "absolute", f"{mode} refused a torn tail: {e}"
        assert (e.path, e.offset) == (log, offs[1])
        return
    assert got == {b"k0": b"1", b"k1": None}  # only the torn last write is lost


@pytest.mark.parametrize("mode", MODES)
def test_wal_bad_header_of_a_record_with_an_embedded_record(tmp_path, mode: str) -> None:
    """A record's fragment header is damaged and its value holds a whole
    framed record: the reader skips to the next block, so the embedded bytes
    are never replayed as a write (the format 2 framing could resync into
    the value)."""
    inner = b"".join(frame_fragments(bytes((BATCH,)) + encode_batch(999, [(PUT, b"k0", b"INJECTED")]), 0))
    d, log, offs = _wal_db(tmp_path, "never", [b"1", b"prefix" + inner + b"suffix", b"3"])
    flip(log, offs[1], 0x01)  # the checksum of the record holding the embedded one
    try:
        with lsm.open(d, wal_recovery=mode) as db:
            got = {k: db.get(k) for k in (b"k0", b"k1", b"k2")}
    except lsm.CorruptionError as e:
        assert mode == "absolute" and (e.path, e.offset) == (log, offs[1])
        return
    assert got == {b"k0": b"1", b"k1": None, b"k2": None}


@pytest.mark.parametrize("mode", MODES)
def test_wal_from_a_newer_format_version_is_refused(tmp_path, mode: str) -> None:
    """Never dropped as damage or as a torn tail, whatever the mode."""
    d, log, _ = _wal_db(tmp_path, "never", [b"1"])
    flip(log, 6, 0x07)  # version 3 -> 4
    before = {n: FS.read_file(os.path.join(d, n)) for n in os.listdir(d) if n != "LOCK"}
    with pytest.raises(lsm.CorruptionError, match="format version 4") as ei:
        lsm.open(d, wal_recovery=mode).close()
    assert (ei.value.path, ei.value.offset) == (log, 6)
    assert {n: FS.read_file(os.path.join(d, n)) for n in os.listdir(d) if n != "LOCK"} == before


def _append_record(log: str, body: bytes) -> int:
    """Append one record to a closed log; return its offset."""
    data = FS.read_file(log)
    pos = len(data)
    with open(log, "ab") as f:
        f.write(b"".join(frame_fragments(body, pos)))
    left = BLOCK_BYTES - pos % BLOCK_BYTES
    return pos if left >= FRAGMENT_HEADER else pos + left


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("last", [False, True], ids=["followed", "last"])
@pytest.mark.parametrize("record", ["wrong-type", "bad-batch", "ttl-too-short", "seq-zero"])
def test_wal_intact_record_that_is_not_a_batch(tmp_path, record: str, last: bool, mode: str) -> None:
    """A record that passes its checksum but is not a valid batch is never a
    torn tail, even as the last record of the log."""
    d, log, _ = _wal_db(tmp_path, "never", [b"1", b"2"])
    bad_at = _append_record(log, {
        "wrong-type": b"\x07\x05",
        "bad-batch": bytes((BATCH,)) + b"\x00" * 5,
        "ttl-too-short": bytes((BATCH,)) + struct.pack("<QIQ", 3, 1, 0) + bytes((PUT_TTL, 2)) + b"k2"
                         + bytes((3,)) + b"abc",
        "seq-zero": bytes((BATCH,)) + encode_batch(0, [(PUT, b"k2", b"0")]),
    }[record])
    if not last:
        _append_record(log, bytes((BATCH,)) + encode_batch(3, [(PUT, b"k2", b"3")]))
    if mode in ("tolerate_tail", "absolute"):
        with pytest.raises(lsm.CorruptionError) as ei:
            lsm.open(d, wal_recovery=mode).close()
        assert (ei.value.path, ei.value.offset) == (log, bad_at)
        return
    with lsm.open(d, wal_recovery=mode) as db:
        got = {k: db.get(k) for k in (b"k0", b"k1", b"k2")}
        dropped = db.stats()["recovery"]["bytes_dropped"]
    after = b"3" if mode == "skip_corrupt" and not last else None  # point_in_time stops at the damage
    assert got == {b"k0": b"1", b"k1": b"2", b"k2": after}
    assert dropped > 0


def test_database_with_a_format_2_log_is_read(tmp_path) -> None:
    """Logs written before the block framing are replayed (the manifest still
    names them after an upgrade); tests/test_compat.py opens a whole database
    of the old release."""
    d, log, _ = _wal_db(tmp_path, "never", [b"1"])
    with open(log, "wb") as f:  # the same log, as the old release wrote it: plain records, batch format 1
        f.write(encode_record(struct.pack("<QI", 1, 1) + bytes((PUT, 2)) + b"k0" + bytes((1,)) + b"1")
                + encode_record(struct.pack("<QI", 2, 1) + bytes((PUT, 2)) + b"k1" + bytes((1,)) + b"2"))
    with lsm.open(d) as db:
        assert (db.get(b"k0"), db.get(b"k1")) == (b"1", b"2")


# --- SSTables -----------------------------------------------------------------------------------

SST_REGIONS = ("data-first", "data-last", "data-compression", "data-checksum", "filter-payload",
               "filter-checksum", "props-payload", "props-trailer", "index-payload", "index-trailer",
               "footer-index-handle", "footer-filter-handle", "footer-props-handle", "footer-range-del-handle",
               "footer-version", "footer-checksum", "footer-magic", "range_del-payload", "range_del-checksum")


def sst_region(r: TableReader, region: str) -> tuple[int, int]:
    """(byte to damage, offset the CorruptionError must name) for ``region`` of table ``r``."""
    f0 = r.file_size - FOOTER_BYTES
    if region.startswith("footer-"):
        rel = {"index-handle": 0, "filter-handle": 12, "props-handle": 24, "range-del-handle": 36,
               "version": 48, "checksum": 52, "magic": 63}[region[len("footer-"):]]
        # the magic is checked first, then the version (it sets the footer's size), then the checksum
        return f0 + rel, f0 + {"footer-magic": 56, "footer-version": 48}.get(region, 52)
    assert len(r.index) >= 2
    block, part = region.split("-", 1)
    if block == "data":
        h = r.index.handle(len(r.index) - 1 if part == "last" else 0)
    else:
        h = getattr(decode_footer(r.file.read_at(f0, FOOTER_BYTES), r.path, r.file_size), block)
    rel = {"first": h.size // 2, "last": h.size // 2, "payload": h.size // 2, "compression": h.size,
           "trailer": h.size + 1, "checksum": h.size + 3}[part]
    return h.offset + rel, h.offset


@pytest.mark.parametrize("mask", sorted(MASKS))
@pytest.mark.parametrize("region", SST_REGIONS)
@pytest.mark.parametrize("table", ["l0", "l1"])
def test_sst_flip(pristine: Pristine, tmp_path, table: str, region: str, mask: str) -> None:
    p = pristine
    if region.startswith("range_del-") and table != "l0":
        pytest.skip("only the newest L0 table holds range tombstones")
    name, r = p.table(table)
    at, offset = sst_region(r, region)
    r.close()
    d = copy_db(p, tmp_path)
    flip(os.path.join(d, name), at, MASKS[mask])
    check(p, d, Raises(name, offset))


SST_CUTS = ("empty", "30-bytes", "first-block", "half", "no-footer", "last-byte")


@pytest.mark.parametrize("cut", SST_CUTS)
@pytest.mark.parametrize("table", ["l0", "l1"])
def test_sst_truncate(pristine: Pristine, tmp_path, table: str, cut: str) -> None:
    p = pristine
    name, r = p.table(table)
    size = {"empty": 0, "30-bytes": 30, "first-block": r.index.sizes[0] + 3, "half": r.file_size // 2,
            "no-footer": r.file_size - FOOTER_BYTES, "last-byte": r.file_size - 1}[cut]
    r.close()
    d = copy_db(p, tmp_path)
    os.truncate(os.path.join(d, name), size)
    # too short for a footer's last 16 bytes: offset 0; otherwise the "footer" read has a bad magic
    check(p, d, Raises(name, 0 if size < 16 else size - 8))


@pytest.mark.parametrize("table", ["l0", "l1"])
def test_sst_missing(pristine: Pristine, tmp_path, table: str) -> None:
    p = pristine
    d = copy_db(p, tmp_path)
    os.remove(os.path.join(d, p.tables[table]))
    check(p, d, NoWrongValue(p.tables[table]))
    with pytest.raises(lsm.CorruptionError, match=f"lists table {p.tables[table]}, which is missing") as ei:
        lsm.open(d, **OPTS).close()
    assert os.path.basename(ei.value.path) == p.manifest
    assert sorted(os.listdir(d)) == sorted(n for n in os.listdir(p.dir) if n != p.tables[table])


# --- manifest --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mask", sorted(MASKS))
@pytest.mark.parametrize("field_name", list(RECORD_FIELDS))
@pytest.mark.parametrize("record", ["first", "middle", "last"])
def test_manifest_flip(pristine: Pristine, tmp_path, record: str, field_name: str, mask: str) -> None:
    """Damage to any whole record raises, the last one included: its append
    completed, and what it recorded (a deleted log, compaction inputs) is done."""
    p = pristine
    offs = p.manifest_offsets + [p.manifest_size]
    i = {"first": 0, "middle": len(p.manifest_offsets) // 2, "last": len(p.manifest_offsets) - 1}[record]
    start, end = offs[i], offs[i + 1]
    rel = RECORD_FIELDS[field_name]
    at = start + HEADER_BYTES + (end - start - OVERHEAD) // 2 if rel is None else (
        start + rel if rel >= 0 else end + rel)
    d = copy_db(p, tmp_path)
    flip(os.path.join(d, p.manifest), at, MASKS[mask])
    check(p, d, Raises(p.manifest, start))


@pytest.mark.parametrize("cut", ["empty", "mid-first", "mid-middle", "boundary-before-last", "mid-last",
                                 "last-byte"])
def test_manifest_truncate(pristine: Pristine, tmp_path, cut: str) -> None:
    p = pristine
    offs = p.manifest_offsets
    size = {"empty": 0, "mid-first": offs[0] + 10, "mid-middle": offs[len(offs) // 2] + 10,
            "boundary-before-last": offs[-1], "mid-last": offs[-1] + 10,
            "last-byte": p.manifest_size - 1}[cut]
    d = copy_db(p, tmp_path)
    os.truncate(os.path.join(d, p.manifest), size)
    if cut == "mid-middle":  # the compaction edit is cut off: its deleted inputs are missing tables
        check(p, d, Raises(p.manifest, 0))
        return
    check(p, d, Raises(p.manifest, 0) if size <= offs[1] else NoWrongValue(p.manifest))
    assert os.path.exists(os.path.join(d, p.tables["l0"])), "the newest table was deleted"


# --- CURRENT --------------------------------------------------------------------------------------

@pytest.mark.parametrize("region, at, mask", [
    pytest.param(region, at, mask, id=f"{region}-{mask}")
    for region, at in (("M", 0), ("dash", 8), ("digit", 14), ("newline", 15))
    for mask in sorted(MASKS)
])
def test_current_flip(pristine: Pristine, tmp_path, region: str, at: int, mask: str) -> None:
    p = pristine
    assert FS.read_file(p.path("CURRENT")) == p.manifest.encode() + b"\n"
    d = copy_db(p, tmp_path)
    flip(os.path.join(d, "CURRENT"), at, MASKS[mask])
    check(p, d, Raises("CURRENT", 0))


@pytest.mark.parametrize("size", [0, 9, 15])
def test_current_truncate(pristine: Pristine, tmp_path, size: int) -> None:
    p = pristine
    d = copy_db(p, tmp_path)
    os.truncate(os.path.join(d, "CURRENT"), size)
    check(p, d, Raises("CURRENT", 0))


def test_current_missing_does_not_destroy_the_database(pristine: Pristine, tmp_path) -> None:
    p = pristine
    d = copy_db(p, tmp_path)
    os.remove(os.path.join(d, "CURRENT"))
    try:
        with lsm.open(d, **OPTS) as db:
            got = {k: db.get(k) for k in p.acked}
    except lsm.Error:
        pass  # refusing (naming the problem) is fine
    else:
        wrong = [k for k, v in got.items() if v != p.acked[k]]
        assert not wrong, f"{len(wrong)} of {len(got)} keys lost"
    assert os.path.exists(os.path.join(d, p.tables["l1"])), "an SSTable was deleted"


@pytest.mark.parametrize("keep", ["everything", "one-table", "log-only"])
def test_current_missing_is_refused_and_nothing_is_deleted(pristine: Pristine, tmp_path, keep: str) -> None:
    p = pristine
    d = copy_db(p, tmp_path)
    os.remove(os.path.join(d, "CURRENT"))
    wanted = {"everything": None, "one-table": p.tables["l1"], "log-only": p.log}[keep]
    for n in os.listdir(d):
        if wanted is not None and n not in (wanted, "LOCK"):
            os.remove(os.path.join(d, n))
    before = sorted(os.listdir(d))
    with pytest.raises(lsm.CorruptionError, match="lsm-dump repair") as ei:
        lsm.open(d, **OPTS).close()
    assert (os.path.basename(ei.value.path), ei.value.offset) == ("CURRENT", 0)
    assert sorted(os.listdir(d)) == before


@pytest.mark.parametrize("manifest", [False, True])
def test_current_missing_without_tables_or_written_logs_is_a_new_database(
        pristine: Pristine, tmp_path, manifest: bool) -> None:
    """A crash during the very first open can leave an empty log, and a
    manifest, but no CURRENT: neither holds data, so the directory is new."""
    d = tmp_path / "db"
    d.mkdir()
    (d / "000001.log").write_bytes(b"")
    (d / "notes.txt").write_bytes(b"not a database file")
    if manifest:
        shutil.copy(pristine.path(pristine.manifest), d / pristine.manifest)
    with lsm.open(str(d), **OPTS) as db:
        assert db.get(b"a") is None
        db.put(b"a", b"1")
    with lsm.open(str(d), **OPTS) as db:
        assert db.get(b"a") == b"1"


# --- the harness itself ------------------------------------------------------------------------------

def test_pristine_copy_reads_back_exactly(pristine: Pristine, tmp_path) -> None:
    check(pristine, copy_db(pristine, tmp_path), State(pristine.acked))


@pytest.mark.parametrize("kind", [PUT, PUT_TTL, DELETE, RANGE_DELETE])
def test_model_covers_every_kind(pristine: Pristine, kind: int) -> None:
    assert any(k == kind for r in pristine.wal for k, _, _ in r.ops)

"""Regression (found in review): a snapshot read the last sequence, then a
flush that did not yet know of the snapshot dropped the version it needed,
then the snapshot registered itself and read the new tables: get() returned
None instead of the value at its sequence."""

import threading

import lsm


def test_flush_between_sequence_read_and_registration(tmp_path):
    db = lsm.open(tmp_path / "db", sync_mode="never", compaction_process=False)
    db.put(b"k", b"A")  # seq 1
    real = db._versions

    class InterleavingProxy:
        """The snapshot's read of last_sequence lets another thread write and
        flush (for up to 0.5 s) before the snapshot goes on."""

        def __init__(self, inner):
            object.__setattr__(self, "_i", inner)

        def __getattr__(self, name):
            return getattr(self._i, name)

        def __setattr__(self, name, value):
            setattr(self._i, name, value)

        @property
        def last_sequence(self):
            seq = self._i.last_sequence
            db._versions = real  # intercept this one read only

            def write_and_flush():
                db.put(b"k", b"B")
                db.flush()

            t = threading.Thread(target=write_and_flush)
            t.start()
            t.join(0.5)  # with the fix the flush waits for the registration
            threads.append(t)
            return seq

    threads: list[threading.Thread] = []
    db._versions = InterleavingProxy(real)
    snap = db.snapshot()
    for t in threads:
        t.join()
    # Either read point is right (the write finished while snapshot() ran),
    # as long as what the snapshot reads is that point's: the flush must
    # not have dropped the version it needs.
    assert (snap.sequence, snap.get(b"k")) in [(1, b"A"), (2, b"B")]
    assert db.get(b"k") == b"B"
    snap.close()
    db.close()

"""Segment-store ingest benchmark: our event ingest and CSV import vs sqlite-utils in one run.

    .venv/bin/python bench/ingest.py [--subscribers N] [--events N] [--batch N] [--csv-rows N]

Ours: ``segmentation.ingest.ingest_events`` — event rows with dedupe, daily roll-ups, traits and
last-seen upkeep, batched transactions. Peer: sqlite-utils ``Table.insert_all`` of the same event
rows into the same schema (raw rows only: no dedupe check, roll-ups or traits) — the floor for
"append the events". Both start from the same fresh database with N subscribers (generated, not
timed). CPU time is printed next to wall time because the machine is shared.

The CSV part imports a generated file of --csv-rows events with ``import_events`` (streamed) and
sqlite-utils ``insert_all`` over ``csv.DictReader`` (also streamed), each in a child process,
and prints rows/s and the child's peak RSS (VmHWM; ru_maxrss would include the parent's).
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from segmentation.ingest import Event, ingest_events  # noqa: E402
from segmentation.store import Store  # noqa: E402

TYPES = ("link_click", "product_view", "cart_add", "purchase", "reply", "sent", "delivered")
T0 = 1_760_000_000_000


def _fresh(path: Path, subscribers: int) -> Store:
    store = Store(path)
    with store.atomic():
        store.conn.executemany(
            "INSERT INTO subscriber(id, phone_e164, created_ms) VALUES (?, ?, 0)",
            ((i, f"+1312{2000000 + i:07d}") for i in range(1, subscribers + 1)))
        store.conn.executemany("INSERT INTO trait(subscriber_id) VALUES (?)",
                               ((i,) for i in range(1, subscribers + 1)))
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return store


def _events(n: int, subscribers: int) -> list[Event]:
    rng = random.Random(42)
    return [
        Event(rng.choice(TYPES), T0 + i * 50, subscriber_id=rng.randint(1, subscribers),
              value=round(rng.random() * 100, 2), props={"sku": f"SKU-{rng.randint(1, 500)}"},
              source="bench", dedupe_key=f"bench:{i}")
        for i in range(n)
    ]


def _timed(fn: object) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()  # type: ignore[operator]
    return time.perf_counter() - w, time.process_time() - c


def bench_ingest(subscribers: int, n: int, batch: int) -> None:
    import sqlite_utils

    events = _events(n, subscribers)
    with tempfile.TemporaryDirectory() as d:
        ours = _fresh(Path(d) / "ours.db", subscribers)

        def run_ours() -> None:
            for i in range(0, n, batch):
                ingest_events(ours, events[i:i + batch])

        w_ours, c_ours = _timed(run_ours)
        assert ours.scalar("SELECT count(*) FROM event") == n
        ours.close()

        peer_store = _fresh(Path(d) / "peer.db", subscribers)
        peer_store.conn.execute("PRAGMA cache_size=-2000")  # sqlite default, as a peer runs
        peer_store.conn.execute("PRAGMA wal_autocheckpoint=1000")
        db = sqlite_utils.Database(peer_store.conn)
        rows = (
            {"subscriber_id": e.subscriber_id, "type": e.type, "ts_ms": e.ts_ms,
             "value": e.value, "props": f'{{"sku":"{(e.props or {})["sku"]}"}}',
             "source": e.source, "dedupe_key": e.dedupe_key}
            for e in events
        )

        def run_peer() -> None:
            with db.conn:
                db["event"].insert_all(rows, batch_size=batch)

        w_peer, c_peer = _timed(run_peer)
        peer_store.close()
    print(f"event ingest, {n:,} events over {subscribers:,} subscribers, batch {batch}:")
    print(f"  ours  (dedupe + roll-ups + traits): {n / w_ours:>9,.0f} events/s wall, "
          f"{n / c_ours:>9,.0f} events/s CPU")
    print(f"  peer  (sqlite-utils insert_all, raw rows only): {n / w_peer:>9,.0f} events/s "
          f"wall, {n / c_peer:>9,.0f} events/s CPU")
    print(f"  ratio ours/peer: wall {w_peer / w_ours:.2f}, CPU {c_peer / c_ours:.2f}")


_CHILD_OURS = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from segmentation.store import Store
from segmentation.csvio import import_events
s = Store(Path(sys.argv[1]) / "ours.db")
t = time.perf_counter()
r = import_events(s, Path(sys.argv[1]) / "events.csv")
print(r.imported, time.perf_counter() - t, next(int(x.split()[1]) for x in
      open("/proc/self/status") if x.startswith("VmHWM:")))
"""

_CHILD_PEER = """
import csv, sys, time
from pathlib import Path
import sqlite_utils
db = sqlite_utils.Database(Path(sys.argv[1]) / "peer.db")
t = time.perf_counter()
with open(Path(sys.argv[1]) / "events.csv", newline="") as f:
    db["event"].insert_all(csv.DictReader(f), batch_size=5000)
n = db["event"].count
print(n, time.perf_counter() - t, next(int(x.split()[1]) for x in
      open("/proc/self/status") if x.startswith("VmHWM:")))
"""


def bench_csv(rows: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "events.csv"
        rng = random.Random(7)
        with path.open("w", encoding="utf-8") as f:
            f.write("phone,type,ts,value,prop.sku,id\n")
            for i in range(rows):
                f.write(f"+1312{2000000 + rng.randint(0, 99_999):07d},{rng.choice(TYPES)},"
                        f"{T0 + i * 50},{rng.randint(0, 9999) / 100},SKU-{i % 500},e{i}\n")
        out = {}
        for name, code in (("ours", _CHILD_OURS), ("peer", _CHILD_PEER)):
            r = subprocess.run([sys.executable, "-c", code, d, str(ROOT)], capture_output=True,
                               text=True, check=True)
            n, secs, rss = r.stdout.split()
            out[name] = (int(n), float(secs), int(rss))
    print(f"CSV import, {rows:,} event rows (streamed, child processes):")
    for name, label in (("ours", "ours  (import_events: validate, normalise, dedupe, roll-ups)"),
                        ("peer", "peer  (sqlite-utils insert_all over csv.DictReader)")):
        n, secs, rss = out[name]
        print(f"  {label}: {n / secs:>9,.0f} rows/s, peak RSS {rss / 1024:,.0f} MiB")
    print(f"  ratio ours/peer rows/s: {out['peer'][1] / out['ours'][1]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--csv-rows", type=int, default=200_000)
    args = ap.parse_args()
    bench_ingest(args.subscribers, args.events, args.batch)
    if args.csv_rows:
        bench_csv(args.csv_rows)
    print(f"bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f}"
          " MiB")


if __name__ == "__main__":
    main()

"""Live segment counts and the draft preview at 1M subscribers / 10M events.

    .venv/bin/python bench/segment_counts.py [--quick] [--sample 2000] [--work DIR]

Works on a copy of the data set ``bench/segments.py`` generates and caches in ``bench/.cache/``
(generated first if missing; generation is not timed). The clock is pinned to the data set's
"now", so stored and live counts must agree exactly (the script checks it).

For every built-in segment and the templates ``bench/segments.py`` installs, it prints the
stored count (O(1)) and the live count of the compiled rule (``Membership.count_rule``, the
query a draft runs; goal <= 500 ms), each the best of 3 runs. The peer is the naive way of
counting: read each subscriber's rows and evaluate the rule in plain Python (our own
``segmentation.rules.evaluate``, the oracle the property tests compare the SQL with), timed on
a deterministic sample of subscribers and scaled up to the whole set: the time to read the
sample's rows once plus the time to evaluate that rule over them. The sample's Python answers
are checked against the stored membership.

Then the three-condition draft preview (matched / sendable / send-now; goal <= 1.5 s) and, for
scale, the preview of a half-the-base segment.

Last, the preview of the biggest built-in segment with a non-empty suppression list (1 % of
the numbers, untimed: 0.8 % marketing, 0.1 % all, 0.1 % transactional): ours finds the
suppressed subscribers through the keyed hashes stored in the ``subscriber_hash`` side table
(schema 11; filled once, untimed but printed: it is what ``smsgate subscriber rehash`` costs);
the peer, in the same run on the same file, is the preview without stored hashes (the side
table emptied, untimed), which hashes every active, consented member's number in Python as the
preview did before schema 10. Both must give the same numbers. With every hash stored, the
worst live count is measured again (the side table must not slow the counts down, as the
schema-10 column did) and the page counts of ``subscriber`` and ``subscriber_hash`` printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from segmentation import builtins  # noqa: E402
from segmentation.consent import number_hash  # noqa: E402
from segmentation.membership import Membership  # noqa: E402
from segmentation.membership_data import load_subscriber  # noqa: E402
from segmentation.preview import Preview, preview_rule, preview_segment  # noqa: E402
from segmentation.rules.ast import Rule  # noqa: E402
from segmentation.rules.evaluate import SubscriberData, evaluate  # noqa: E402
from segmentation.store import Store  # noqa: E402
from segmentation.subscribers import fill_phone_hashes  # noqa: E402


def _data_set_module() -> ModuleType:
    """bench/segments.py (the data set's generator, its "now", templates and draft rule)."""
    spec = importlib.util.spec_from_file_location("bench_segments", ROOT / "bench" / "segments.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_segments"] = mod
    spec.loader.exec_module(mod)
    return mod


def _best_ms(fn: object, runs: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()  # type: ignore[operator]
        best = min(best, (time.perf_counter() - t) * 1000)
    return best, out


def _fmt(p: object) -> str:
    assert isinstance(p, Preview)
    return (f"matched {p.matched}, sendable {p.sendable}, send-now {p.send_now} (inactive "
            f"{p.inactive}, no consent {p.no_consent}, suppressed {p.suppressed}, quiet {p.quiet})")


def run(db: Path, n_subs: int, sample_n: int, ds: ModuleType) -> None:
    now = ds.T_NOW
    store = Store(db, clock=lambda: now, hash_key=b"bench-site-key")
    store.conn.execute("PRAGMA cache_size=-524288")  # as bench/segments.py (RSS goal 1 GB)
    m = Membership(store)

    print("== installing built-ins and templates (full recompute; not the measurement)")
    t = time.perf_counter()
    diffs = builtins.install(m, ds.TEMPLATES)
    print(f"  {len(diffs)} segments in {time.perf_counter() - t:.1f} s")

    rng = random.Random(42)
    sample_ids = sorted(rng.sample(range(1, n_subs + 1), sample_n))
    t = time.perf_counter()
    sample: list[SubscriberData] = []
    for sid in sample_ids:
        d = load_subscriber(store.conn, sid)
        assert d is not None
        sample.append(d)
    load_ms = (time.perf_counter() - t) * 1000
    scale = n_subs / sample_n
    print(f"\n== peer: reading {sample_n} subscribers' rows took {load_ms:.0f} ms "
          f"(x{scale:,.0f} = {load_ms * scale / 1000:.1f} s for all)")

    print("\n== counts (goal: live <= 500 ms)")
    print(f"  {'segment':<22} {'members':>9} {'stored':>9} {'live':>8} {'peer (scaled)':>14} "
          f"{'peer/live':>9}")
    worst_live, worst_name = 0.0, ""
    worst_rule: Rule | str = ""
    rows = []
    for seg in m.segments():
        stored_ms, stored = _best_ms(lambda s=seg.name: m.count(s))
        live_ms, live = _best_ms(lambda r=seg.rule: m.count_rule(r, now))
        assert live == stored, (seg.name, live, stored)
        members = set(m.members(seg.name)) & set(sample_ids)
        t = time.perf_counter()
        got = {d.id for d in sample if evaluate(seg.rule, d, now)}
        eval_ms = (time.perf_counter() - t) * 1000
        assert got == members, (seg.name, len(got ^ members))
        peer_ms = (load_ms + eval_ms) * scale
        if live_ms > worst_live:
            worst_live, worst_name, worst_rule = live_ms, seg.name, seg.rule
        rows.append((seg.name, live_ms, peer_ms))
        print(f"  {seg.name:<22} {stored:>9} {stored_ms:7.2f}ms {live_ms:6.0f}ms "
              f"{peer_ms / 1000:12.1f} s {peer_ms / live_ms:8.0f}x")

    print("\n== draft preview (goal <= 1.5 s): matched / sendable / send-now")
    print(f"  {ds.DRAFT}")
    count_ms, n = _best_ms(lambda: m.count_rule(ds.DRAFT, now))
    prev_ms, p = _best_ms(lambda: preview_rule(m, ds.DRAFT, now=now))
    print(f"  count only: {n} in {count_ms:.0f} ms")
    print(f"  preview: {_fmt(p)} in {prev_ms:.0f} ms")
    big_ms, big = _best_ms(lambda: preview_segment(m, "active_subscribers", now=now), runs=2)
    print(f"  stored segment active_subscribers: {_fmt(big)} in {big_ms:.0f} ms")
    print("  (the data set puts everyone in America/New_York, 07:00 at its now: all quiet)")

    sup_ms, ours_ms, peer_ms_sup, biggest, hashed_live = _suppressed_preview(
        m, store, n_subs, now, worst_name, worst_rule)

    total_live = sum(r[1] for r in rows)
    total_peer = sum(r[2] for r in rows)
    print(f"\n== summary ({n_subs:,} subscribers)")
    print(f"  live count, worst segment           {worst_live:8.0f} ms   goal <= 500 ms "
          f"({worst_name}; {hashed_live:.0f} ms with every hash stored)")
    print(f"  live counts, all {len(rows)} segments         {total_live:8.0f} ms")
    print(f"  peer (Python evaluation, scaled)    {total_peer / 1000:8.1f} s    "
          f"ratio {total_peer / total_live:,.0f}x")
    print(f"  three-condition draft preview       {prev_ms:8.0f} ms   goal <= 1500 ms")
    print(f"  preview {biggest}, suppression list: stored hash {ours_ms:.0f} ms, "
          f"peer (Python hash per row) {peer_ms_sup:.0f} ms, ratio {peer_ms_sup / ours_ms:.1f}x "
          f"(empty list {sup_ms:.0f} ms)")
    store.close()


def _pages(store: Store, table: str) -> int:
    """Pages of a table's b-tree (its indexes not included)."""
    return int(store.scalar("SELECT pageno FROM dbstat WHERE name = ? AND aggregate = TRUE",
                            (table,)) or 0)


def _suppressed_preview(m: Membership, store: Store, n_subs: int, now: int, worst_name: str,
                        worst_rule: Rule | str) -> tuple[float, float, float, str, float]:
    """The biggest built-in's preview with a suppression list: stored hashes vs Python; and
    the worst live count again once every hash is stored."""
    biggest = max((s for s in m.segments() if s.kind == "builtin"), key=lambda s: s.member_count)
    name = biggest.name
    print(f"\n== preview of the biggest built-in, {name} ({biggest.member_count} members), "
          "with a suppression list")
    empty_ms, empty = _best_ms(lambda: preview_segment(m, name, now=now), runs=2)
    print(f"  empty suppression list: {_fmt(empty)} in {empty_ms:.0f} ms")
    rng = random.Random(7)
    picked = rng.sample(range(1, n_subs + 1), max(n_subs // 100, 10))
    key = store.hash_key
    scopes = ("marketing",) * 8 + ("all", "transactional")
    with store.atomic():
        phones = dict(store.conn.execute(
            "SELECT id, phone_e164 FROM subscriber WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(picked),)))
        store.conn.executemany(
            "INSERT OR IGNORE INTO suppression(phone_hash, scope, reason, ts_ms) "
            "VALUES (?, ?, 'bench', ?)",
            [(number_hash(key, phones[i]), scopes[k % len(scopes)], now)
             for k, i in enumerate(picked) if i in phones])
    t = time.perf_counter()
    filled = fill_phone_hashes(store)
    print(f"  {len(phones)} numbers suppressed; subscriber_hash filled for {filled.rows} rows "
          f"in {time.perf_counter() - t:.1f} s (smsgate subscriber rehash; not timed below)")
    print(f"  pages: subscriber {_pages(store, 'subscriber'):,}, subscriber_hash "
          f"{_pages(store, 'subscriber_hash'):,} (+ its subscriber_id index "
          f"{_pages(store, 'sqlite_autoindex_subscriber_hash_2'):,})")
    hashed_live, _ = _best_ms(lambda: m.count_rule(worst_rule, now))
    print(f"  live count of {worst_name} with every hash stored: {hashed_live:.0f} ms")
    ours_ms, ours = _best_ms(lambda: preview_segment(m, name, now=now))
    print(f"  ours, stored hash:          {_fmt(ours)} in {ours_ms:.0f} ms")
    with store.atomic():
        store.conn.execute("DELETE FROM subscriber_hash")
    peer_ms, peer = _best_ms(lambda: preview_segment(m, name, now=now))
    print(f"  peer, Python hash per row:  {_fmt(peer)} in {peer_ms:.0f} ms")
    assert ours == peer, (ours, peer)
    assert isinstance(ours, Preview) and isinstance(empty, Preview)
    assert ours.suppressed > 0 and ours.matched == empty.matched
    print(f"  ratio peer/ours {peer_ms / ours_ms:.1f}x; the list costs ours "
          f"{ours_ms - empty_ms:+.0f} ms, the peer {peer_ms - empty_ms:+.0f} ms")
    return empty_ms, ours_ms, peer_ms, name, hashed_live


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true", help="10,000 / 100,000 (bench/segments.py's)")
    ap.add_argument("--sample", type=int, default=2000, help="subscribers the peer evaluates")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / ".cache",
                    help="directory for the working copy (deleted afterwards)")
    args = ap.parse_args()
    if args.quick:
        args.subscribers, args.events = 10_000, 100_000
    ds = _data_set_module()
    cached = ds.cache_file(args.subscribers, args.events)
    if not cached.exists():
        print(f"generating {cached.name} (once; not timed)", flush=True)
        subprocess.run([sys.executable, str(ROOT / "bench" / "segments.py"), "--generate-only",
                        "--subscribers", str(args.subscribers), "--events", str(args.events)],
                       check=True)
    args.work.mkdir(parents=True, exist_ok=True)
    with ds.work_copy(cached, args.work / "segment-counts-work.db") as work:
        run(work, args.subscribers, min(args.sample, args.subscribers), ds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

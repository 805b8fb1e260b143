"""``smsgate segment ...``: define, count, explain, export and reconcile segments.

- ``list`` / ``show NAME`` — definitions, status, stored counts (``--json`` for tools).
- ``count NAME|RULE`` — a segment's stored count (O(1)) or a draft rule counted live.
- ``history NUMBER NAME`` — every entry into and exit from a segment, with time and cause.
- ``define NAME RULE`` — create or redefine (full recompute, diff recorded as transitions);
  ``define NAME --manual`` — an empty list set by hand;
  ``members NAME --replace|--append|--remove FILE`` — set a manual list from a CSV file.
- ``explain NUMBER NAME`` — every condition of the rule, true or false, with the value read,
  and the stored membership with its last entry or exit.
- ``export NAME`` — members as CSV. ``reconcile [--fix]`` — full recompute vs stored.
- ``builtins`` — install or refresh the built-in segments and templates.

The rule text syntax is in ``docs/segments.md``; a RULE of ``-`` is read from standard input,
and a RULE starting with ``{`` is the canonical JSON form (``segment show --json``'s
``definition``, or the ``{"version": 1, "rule": ...}`` envelope). A RULE is checked against the
attribute schema (``segmentation.rules.schema_check``): an operator or value that does not fit a
declared attribute's type is refused (exit 2), an undeclared attribute is a warning on standard
error. The store is opened as by ``smsgate import`` (``--config``, or ``--db FILE``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.subscribers import CliInputError, _run, _store_arguments, utc_text

if TYPE_CHECKING:
    from segmentation.membership import Membership, SegmentInfo
    from segmentation.rules.ast import Rule
    from segmentation.rules.evaluate import Explanation
    from segmentation.store import Store


def _number_in_segment_arguments(p: argparse.ArgumentParser) -> None:
    """NUMBER NAME [--json] and the store options (explain, history)."""
    p.add_argument("number", metavar="NUMBER")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="one JSON object")
    _store_arguments(p)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    seg = subparsers.add_parser(
        "segment", help="define, count, explain and export segments",
        description="Segments are rules over subscribers, events, traits, consent and location "
        "(syntax: docs/segments.md), kept current as data and time change.")
    sub = seg.add_subparsers(dest="segment_command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("list", help="every segment with its kind, status and member count")
    p.add_argument("--json", action="store_true", help="one JSON array")
    _store_arguments(p)
    p.set_defaults(func=list_command)

    p = sub.add_parser("show", help="one segment: rule, canonical JSON, dependencies, count")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="one JSON object")
    _store_arguments(p)
    p.set_defaults(func=show_command)

    p = sub.add_parser(
        "count", help="a segment's stored count, or a draft rule's live count",
        description="With the NAME of a segment: its stored member count (instant). Otherwise "
        "TARGET is read as a rule (text, or canonical JSON starting with '{'; '-' reads it "
        "from standard input) and counted over every subscriber now. A rule whose operator "
        "or value does not fit a declared attribute's type is refused; an undeclared "
        "attribute is a warning on standard error.")
    p.add_argument("target", metavar="NAME|RULE")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--preview", action="store_true",
                   help="three numbers: matched, sendable (active, marketing consent granted, "
                        "not suppressed) and send-now (sendable and outside quiet hours in "
                        "their own time zone now)")
    p.add_argument("--quiet-hours", metavar="HH:MM-HH:MM", default="21:00-08:00",
                   help="recipient-local quiet hours for --preview (default 21:00-08:00; "
                        "'none' for none)")
    p.add_argument("--default-tz", metavar="ZONE", default="UTC",
                   help="IANA zone for subscribers with no zone and no known country "
                        "(default UTC)")
    p.add_argument("--at", metavar="TIME",
                   help="preview as of TIME (UTC, 2026-01-31T09:30:00Z) instead of now")
    _store_arguments(p)
    p.set_defaults(func=count_command)

    p = sub.add_parser(
        "define", help="create or redefine a segment",
        description="Store RULE as segment NAME (a new version if it exists), compute its "
        "members fully and record who entered and left; segments using it are recomputed "
        "too. RULE '-' reads the rule from standard input; a RULE starting with '{' is the "
        "canonical JSON form. A rule whose operator or value does not fit a declared "
        "attribute's type is refused (exit 2); an undeclared attribute is a warning on "
        "standard error. With --manual (and no RULE): an empty manual list, filled with "
        "'smsgate segment members'.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("rule", metavar="RULE", nargs="?")
    p.add_argument("--manual", action="store_true",
                   help="a list of numbers set by hand instead of a rule")
    p.add_argument("--json", action="store_true", help="one JSON object")
    _store_arguments(p)
    p.set_defaults(func=define_command)

    p = sub.add_parser(
        "members", help="replace, append to or remove from a manual segment's list (CSV)",
        description="Read phone numbers from a CSV file (header row; the column named by "
        "--column, default 'phone'; national formats need --default-region or the config's) "
        "and replace the manual segment's list with them, append them or remove them. Bad "
        "rows are reported one per line on standard error as 'row N, column X: why' and "
        "skipped. Numbers no subscriber has are reported and not added, unless --create. "
        "Exit status 2 when any row was skipped.")
    p.add_argument("name", metavar="NAME")
    how = p.add_mutually_exclusive_group(required=True)
    for mode in ("replace", "append", "remove"):
        how.add_argument(f"--{mode}", metavar="FILE", type=Path,
                         help=f"{mode} the list with the numbers in FILE"
                         if mode == "replace" else f"{mode} the numbers in FILE")
    p.add_argument("--column", default="phone", metavar="NAME",
                   help="the CSV column holding the numbers (default: phone)")
    p.add_argument("--create", action="store_true",
                   help="create subscribers for numbers not known yet (no consent recorded)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    _store_arguments(p)
    p.set_defaults(func=members_command)

    p = sub.add_parser(
        "explain", help="why a number is or is not in a segment",
        description="Evaluate the segment's rule for NUMBER now, showing every condition with "
        "the value read, and the stored membership with its last entry or exit (time in UTC, "
        "cause, cause reference).")
    _number_in_segment_arguments(p)
    p.set_defaults(func=explain_command)

    p = sub.add_parser(
        "history", help="every entry into and exit from a segment for a number",
        description="List every stored transition of NUMBER in segment NAME, oldest first: "
        "time (UTC), direction (enter/exit), cause (event, attribute, time, definition, "
        "manual, reconcile) and the cause's reference (event id, attribute key, segment "
        "version).")
    _number_in_segment_arguments(p)
    p.set_defaults(func=history_command)

    p = sub.add_parser("export", help="a segment's members as CSV")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--output", "-o", metavar="FILE", type=Path,
                   help="write to FILE instead of standard output")
    _store_arguments(p)
    p.set_defaults(func=export_command)

    p = sub.add_parser(
        "reconcile", help="compare a full recompute with stored membership",
        description="Apply pending changes and due re-checks, then recompute every segment "
        "fully and compare with the stored members. Exit status 1 when drift was found and "
        "not fixed; --fix applies the difference (recorded with cause 'reconcile').")
    p.add_argument("--fix", action="store_true", help="repair any drift found")
    p.add_argument("--json", action="store_true", help="one JSON array")
    _store_arguments(p)
    p.set_defaults(func=reconcile_command)

    p = sub.add_parser(
        "builtins", help="install or refresh the built-in segments",
        description="Define the built-in segments (docs/segments.md) and the templates given; "
        "only those whose rule changed are recomputed. Run nightly to move top_buyers.")
    p.add_argument("--product", metavar="SKU:DAYS", action="append", default=[],
                   help="replenishment segment for a product with its cycle; repeatable")
    p.add_argument("--store", dest="stores", metavar="NAME:LAT,LON[:KM]", action="append",
                   default=[], help="near-store segment (default radius 25 km); repeatable")
    p.add_argument("--region", metavar="NAME:R1,R2[:CC]", action="append", default=[],
                   help="region segment (regions, optional country); repeatable")
    p.add_argument("--age-band", metavar="LO-HI", action="append", default=[],
                   help="age band on attribute 'age'; repeatable")
    p.add_argument("--json", action="store_true", help="one JSON array of what changed")
    _store_arguments(p)
    p.set_defaults(func=builtins_command)


# -- helpers -------------------------------------------------------------------------------------


def _membership(store: Store) -> Membership:
    from segmentation.membership import Membership

    return Membership(store)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, sort_keys=True))


def _info(seg: SegmentInfo) -> dict[str, Any]:
    return {
        "name": seg.name, "kind": seg.kind, "status": seg.status, "version": seg.version,
        "members": seg.member_count, "rule": seg.text, "created_ms": seg.created_ms,
        "last_full_ms": seg.last_full_ms, "time_sensitive": seg.deps.time_sensitive,
        "swept_ms": seg.swept_ms,
    }


def _rule_text(text: str) -> str:
    """A RULE argument's text: ``-`` reads standard input."""
    if text == "-":
        text = sys.stdin.read().strip()
        if not text:
            raise CliInputError("the rule is empty (nothing was read from standard input)")
    if not text.strip():
        raise CliInputError("the rule is empty")
    return text


def _load_rule(store: Store, text: str, outcome: str) -> Rule:
    """Rule text or canonical JSON -> tree, checked against the attribute schema: a condition
    that cannot fit its attribute's declared type is refused (CliInputError, ``outcome`` says
    what did not happen); an undeclared attribute is a warning on standard error."""
    from segmentation.rules.dsl import load_rule
    from segmentation.rules.schema_check import check_rule, errors
    from segmentation.subscribers import attribute_types

    tree = load_rule(text)
    findings = check_rule(tree, attribute_types(store))
    if errors(findings):
        lines = "\n".join(f"  {f.severity}: {f}" for f in findings)
        raise CliInputError(f"the rule does not fit the attribute schema ({outcome}):\n{lines}")
    for f in findings:
        print(f"smsgate: warning: {f}", file=sys.stderr)
    return tree


def _draft(args: argparse.Namespace, store: Store, m: Membership) -> tuple[Rule, str] | None:
    """``count``'s TARGET as a draft rule (tree, text), or None when it names a segment."""
    from segmentation.rules.dsl import is_json

    target: str = args.target
    if target == "-":
        text = _rule_text(target)
        return _load_rule(store, text, "nothing was counted"), text
    if target in {s.name for s in m.segments()}:
        return None
    if not is_json(target) and _BARE_NAME.match(target) and "." not in target:
        raise CliInputError(f"no segment named {target!r} (and it is not a rule)")
    return _load_rule(store, _rule_text(target), "nothing was counted"), target


Transition = tuple[int, str, str, str | None]


def _transition_json(t: Transition) -> dict[str, Any]:
    ts, direction, cause, ref = t
    return {"ts_ms": ts, "time": utc_text(ts), "direction": direction, "cause": cause,
            "cause_ref": ref}


def _transition_text(t: Transition) -> str:
    ts, direction, cause, ref = t
    verb = "entered" if direction == "enter" else "left"
    return f"{verb} {utc_text(ts)} (cause {cause}{f', ref {ref}' if ref else ''})"


def _check_name(name: str) -> str:
    if not name.strip() or len(name) > 200:
        raise CliInputError("a segment name is 1-200 characters")
    return name


# -- commands ------------------------------------------------------------------------------------


def list_command(args: argparse.Namespace) -> int:
    def body(store: Store) -> int:
        segs = _membership(store).segments()
        if args.json:
            _print_json([_info(s) for s in segs])
            return 0
        if not segs:
            print("no segments (define one with: smsgate segment define NAME RULE)")
            return 0
        width = max(len(s.name) for s in segs)
        for s in segs:
            print(f"{s.name:<{width}}  {s.member_count:>9}  {s.kind:<8} v{s.version:<3} "
                  f"{s.status:<12} {s.text}")
        return 0

    return _run(args, body)


def show_command(args: argparse.Namespace) -> int:
    def body(store: Store) -> int:
        from segmentation.rules.ast import to_json

        seg = _membership(store).get(args.name)
        info = {**_info(seg), "definition": to_json(seg.rule), "deps": seg.deps.to_json()}
        if args.json:
            _print_json(info)
            return 0
        print(f"segment:   {seg.name} ({seg.kind}, version {seg.version}, {seg.status})")
        print(f"members:   {seg.member_count}")
        print(f"rule:      {seg.text}")
        d = seg.deps
        print(f"reads:     events {sorted(d.events) or '-'}, keys {sorted(d.keys) or '-'}, "
              f"traits {sorted(d.traits) or '-'}, segments {sorted(d.segments) or '-'}"
              f"{', time-sensitive' if d.time_sensitive else ''}")
        if d.time_sensitive and seg.swept_ms is not None:
            # the membership due loop moves this every second: a growing lag means that
            # time-driven entries and exits ("inactive for 30 days") are late
            lag = max(0, store.now_ms() - seg.swept_ms) / 1000
            print(f"time:      re-checked up to {utc_text(seg.swept_ms)} ({lag:,.0f} s ago)")
        print(f"json:      {json.dumps(info['definition'], ensure_ascii=False)}")
        return 0

    return _run(args, body)


_BARE_NAME = re.compile(r"[^\s()]+\Z")


def _preview_settings(args: argparse.Namespace) -> tuple[Any, str, int | None]:
    from segmentation.preview import PreviewError, QuietHours, check_zone
    from segmentation.rules.dsl import parse_date

    try:
        quiet = QuietHours.parse(args.quiet_hours)
        zone = check_zone(args.default_tz)
    except PreviewError as exc:
        raise CliInputError(str(exc)) from None
    at = None
    if args.at is not None:
        try:
            at = parse_date(args.at)
        except ValueError:
            raise CliInputError(f"--at {args.at!r}: expected a UTC time like "
                                "2026-01-31T09:30:00Z") from None
    return quiet, zone, at


def _preview_command(args: argparse.Namespace, store: Store, m: Membership) -> int:
    from segmentation.preview import preview_rule, preview_segment

    quiet, zone, at = _preview_settings(args)
    target: str = args.target
    started = time.perf_counter()
    draft = _draft(args, store, m)
    if draft is None:
        p, source, key = preview_segment(m, target, now=at, quiet=quiet, default_tz=zone), \
            "stored", "name"
    else:
        tree, target = draft
        p = preview_rule(m, tree, now=at, quiet=quiet, default_tz=zone)
        source, key = "query", "rule"
    ms = (time.perf_counter() - started) * 1000
    if args.json:
        _print_json({key: target, "count": p.matched, "source": source, "ms": round(ms, 1),
                     "preview": p.to_json()})
        return 0
    print(f"matched:   {p.matched}")
    print(f"sendable:  {p.sendable}   (not active {p.inactive}, no marketing consent "
          f"{p.no_consent}, suppressed {p.suppressed})")
    print(f"send now:  {p.send_now}   (in quiet hours {p.quiet_hours} local: {p.quiet})")
    print(f"({'stored members' if source == 'stored' else 'counted now'}, {ms:.0f} ms; "
          "no frequency cap is applied)")
    return 0


def count_command(args: argparse.Namespace) -> int:
    def body(store: Store) -> int:
        m = _membership(store)
        if args.preview:
            return _preview_command(args, store, m)
        target: str = args.target
        started = time.perf_counter()
        draft = _draft(args, store, m)
        if draft is None:
            n, source, key = m.count(target), "stored", "name"
        else:
            tree, target = draft
            n, source, key = m.count_rule(tree), "query", "rule"
        ms = (time.perf_counter() - started) * 1000
        if args.json:
            _print_json({key: target, "count": n, "source": source, "ms": round(ms, 1)})
        else:
            print(f"{n} subscribers ({'stored count' if source == 'stored' else 'counted now'},"
                  f" {ms:.0f} ms)")
        return 0

    return _run(args, body)


def _define_manual(args: argparse.Namespace, m: Membership) -> int:
    seg = m.define_manual(_check_name(args.name))
    if args.json:
        _print_json(_info(seg))
    else:
        print(f"manual segment {seg.name!r}: {seg.member_count} members "
              f"(set them with: smsgate segment members {seg.name} --replace FILE)")
    return 0


def define_command(args: argparse.Namespace) -> int:
    def body(store: Store) -> int:
        m = _membership(store)
        if args.manual:
            if args.rule is not None:
                raise CliInputError("give a RULE or --manual, not both")
            return _define_manual(args, m)
        if args.rule is None:
            raise CliInputError("give a RULE (or --manual for a list set by hand)")
        from segmentation.rules.dsl import is_json

        name = _check_name(args.name)
        text = _rule_text(args.rule)
        tree = _load_rule(store, text, "nothing was defined")
        # rule text is stored as written (what `list` and `show` print); JSON as its tree
        diff = m.define(name, tree if is_json(text) else text)
        seg = m.get(args.name)
        if args.json:
            _print_json({**_info(seg), "entered": diff.entered, "exited": diff.exited,
                         "ms": round(diff.elapsed_ms, 1)})
        else:
            print(f"segment {seg.name!r} version {seg.version}: {seg.member_count} members "
                  f"(+{diff.entered} -{diff.exited}, {diff.elapsed_ms:.0f} ms)")
        return 0

    return _run(args, body)


def members_command(args: argparse.Namespace) -> int:
    def body(store: Store) -> int:
        from segmentation.csvio import CsvImportError
        from segmentation.manual import set_members_from_csv

        mode = next(x for x in ("replace", "append", "remove") if getattr(args, x) is not None)
        path: Path = getattr(args, mode)
        if not path.is_file():
            raise CliInputError(f"{path}: no such file")

        def problem(err: object) -> None:
            print(err, file=sys.stderr)

        try:
            r = set_members_from_csv(_membership(store), args.name, path, mode,
                                     column=args.column, create=args.create, on_error=problem)
        except CsvImportError as exc:
            raise CliInputError(str(exc)) from None
        d = r.diff
        if args.json:
            _print_json({"segment": r.segment, "mode": r.mode, "rows": r.rows,
                         "listed": r.listed, "duplicates": r.duplicates, "created": r.created,
                         "unknown": r.unknown, "skipped": r.skipped, "entered": d.entered,
                         "exited": d.exited, "members": d.member_count})
        else:
            print(f"segment {r.segment!r} ({mode}): {d.member_count} members (+{d.entered} "
                  f"-{d.exited}); {r.rows} rows: {r.listed} numbers, {r.duplicates} repeated, "
                  f"{r.created} created, {r.unknown} unknown, {r.skipped} bad")
        return 2 if r.skipped or r.unknown else 0

    return _run(args, body)


def _tree_json(e: Explanation) -> dict[str, Any]:
    from segmentation.rules.dsl import format_rule

    return {"node": format_rule(e.node), "result": e.result, "detail": e.detail,
            "children": [_tree_json(c) for c in e.children]}


def _tree_lines(e: Explanation, depth: int = 0) -> list[str]:
    from segmentation.rules.ast import And, Not, Or
    from segmentation.rules.dsl import format_leaf

    mark = "yes" if e.result else "no "
    pad = "  " * depth
    if isinstance(e.node, And | Or):
        label = f"{'all' if isinstance(e.node, And) else 'any'} of ({e.detail})"
    elif isinstance(e.node, Not):
        label = "not"
    else:
        label = f"{format_leaf(e.node)}   [{e.detail}]"
    lines = [f"{mark} {pad}{label}"]
    for c in e.children:
        lines.extend(_tree_lines(c, depth + 1))
    return lines


def _subscriber_id(store: Store, number: str) -> int | None:
    """The subscriber's id, or None after saying on stderr that there is none."""
    from segmentation.subscribers import find_subscriber

    sid = find_subscriber(store, number)
    if sid is None:
        print(f"smsgate: no subscriber with number {number}", file=sys.stderr)
    return sid


def explain_command(args: argparse.Namespace) -> int:
    def body(store: Store) -> int:
        sid = _subscriber_id(store, args.number)
        if sid is None:
            return 1
        m = _membership(store)
        r = m.explain(sid, args.name)
        history = m.history(sid, args.name)
        last = history[-1] if history else None
        if args.json:
            _print_json({"number": args.number, "segment": r.segment, "result": r.result,
                         "stored_member": r.stored_member, "tree": _tree_json(r.tree),
                         "last_transition": None if last is None else _transition_json(last),
                         "transitions": len(history)})
            return 0
        verdict = "IS" if r.result else "is NOT"
        differs = ("" if r.result == r.stored_member else
                   " (stored membership differs: a queued change or a time re-check not applied"
                   " yet; if it stays, run smsgate segment reconcile)")
        print(f"{args.number} {verdict} in {r.segment!r} now{differs}")
        state = "member" if r.stored_member else "not a member"
        print(f"stored:    {state}; "
              + ("no entry or exit recorded" if last is None else
                 f"last {_transition_text(last)}"
                 + (f"; {len(history)} changes in all (smsgate segment history)"
                    if len(history) > 1 else "")))
        print("\n".join(_tree_lines(r.tree)))
        return 0

    return _run(args, body)


def history_command(args: argparse.Namespace) -> int:
    def body(store: Store) -> int:
        sid = _subscriber_id(store, args.number)
        if sid is None:
            return 1
        m = _membership(store)
        seg = m.get(args.name)
        history = m.history(sid, seg.name)
        e164 = str(store.scalar("SELECT phone_e164 FROM subscriber WHERE id = ?", (sid,)))
        member = store.scalar("SELECT 1 FROM segment_member WHERE segment_id = ? AND "
                              "subscriber_id = ?", (seg.id, sid)) is not None
        if args.json:
            _print_json({"number": e164, "segment": seg.name, "member": member,
                         "transitions": [_transition_json(t) for t in history]})
            return 0
        n = len(history)
        print(f"{e164} in {seg.name!r}: {'member' if member else 'not a member'} now; "
              f"{n or 'no'} transition{'' if n == 1 else 's'} recorded")
        for ts, direction, cause, ref in history:
            print(f"  {utc_text(ts):<24} {direction:<5}  {cause:<10}  {ref or ''}".rstrip())
        return 0

    return _run(args, body)


def export_command(args: argparse.Namespace) -> int:
    def body(store: Store) -> int:
        from segmentation.privacy import export_segment_csv

        _membership(store).get(args.name)  # a clear error for an unknown name
        if args.output is None:
            n = export_segment_csv(store, args.name, sys.stdout)
        else:
            try:
                with args.output.open("w", encoding="utf-8", newline="") as out:
                    n = export_segment_csv(store, args.name, out)
            except OSError as exc:
                raise CliInputError(f"{args.output}: cannot write "
                                    f"({exc.strerror or exc})") from None
        print(f"{n} members exported", file=sys.stderr)
        return 0

    return _run(args, body)


RECONCILE_SAMPLE = 20
"""Subscribers named per segment and direction in reconcile's report."""


def _numbers(store: Store, ids: tuple[int, ...]) -> list[str]:
    """E.164 of subscriber ids, in order (``id N`` for one no longer stored)."""
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    found = dict(store.conn.execute(
        f"SELECT id, phone_e164 FROM subscriber WHERE id IN ({marks})", ids).fetchall())
    return [str(found.get(i, f"id {i}")) for i in ids]


def _drift_part(total: int, numbers: list[str], what: str) -> str:
    if total > len(numbers):
        return f"{total} {what} (first {len(numbers)}: {', '.join(numbers)})"
    return f"{total} {what}" + (f" ({', '.join(numbers)})" if numbers else "")


def reconcile_command(args: argparse.Namespace) -> int:
    def body(store: Store) -> int:
        drifts = _membership(store).reconcile(fix=args.fix, sample=RECONCILE_SAMPLE)
        dirty = [d for d in drifts if not d.clean]
        k = RECONCILE_SAMPLE
        if args.json:
            _print_json([{"segment": d.segment, "clean": d.clean, "missing": list(d.missing[:k]),
                          "extra": list(d.extra[:k]), "stored_count": d.stored_count,
                          "counted": d.counted,
                          "missing_numbers": _numbers(store, d.missing[:k]),
                          "extra_numbers": _numbers(store, d.extra[:k]),
                          "missing_total": d.missing_total, "extra_total": d.extra_total,
                          "complete": d.missing_total <= k and d.extra_total <= k}
                         for d in drifts])
        else:
            for d in drifts:
                missing = _drift_part(d.missing_total, _numbers(store, d.missing), "missing")
                extra = _drift_part(d.extra_total, _numbers(store, d.extra), "extra")
                state = "ok" if d.clean else (
                    f"DRIFT: {missing}, {extra}; stored count "
                    f"{d.stored_count} vs {d.counted} counted")
                print(f"{d.segment}: {state}")
            if dirty and args.fix:
                print(f"fixed {len(dirty)} segment(s)")
        return 1 if dirty and not args.fix else 0

    return _run(args, body)


def _checked(option: str, item: str, b: Any, types: dict[str, str]) -> Any:
    """A template's rule parsed and checked against the attribute schema now, so a bad value
    (or an attribute of another type: ``--age-band`` on a text ``age``) is reported against
    the option given."""
    from segmentation.rules.dsl import ParseError, parse
    from segmentation.rules.schema_check import check_rule, errors

    try:
        findings = check_rule(parse(b.rule), types)
    except ParseError as exc:
        raise CliInputError(f"{option} {item!r}: {exc.message}") from None
    for f in errors(findings):
        raise CliInputError(f"{option} {item!r}: {f.message}")
    for f in findings:
        print(f"smsgate: warning: {option} {item!r}: {f.message}", file=sys.stderr)
    return b


def _templates(args: argparse.Namespace, types: dict[str, str]) -> list[Any]:
    import phonenumbers

    from segmentation import builtins

    out: list[Any] = []
    for item in args.product:
        sku, _, days = item.rpartition(":")
        if not sku or not days.isdigit() or int(days) < 1:
            raise CliInputError(f"--product {item!r}: expected SKU:DAYS (e.g. SKU-30:30)")
        out.append(_checked("--product", item, builtins.replenishment(sku, int(days)), types))
    for item in args.stores:
        m = re.fullmatch(r"([A-Za-z0-9_-]+):(-?[\d.]+),(-?[\d.]+)(?::([\d.]+))?", item)
        if m is None:
            raise CliInputError(f"--store {item!r}: expected NAME:LAT,LON[:KM]")
        out.append(_checked("--store", item, builtins.near_store(
            m[1], float(m[2]), float(m[3]), float(m[4]) if m[4] else 25.0), types))
    for item in args.region:
        parts = item.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise CliInputError(f"--region {item!r}: expected NAME:R1,R2[:CC]")
        country = parts[2].upper() if len(parts) == 3 else None
        # subscriber.country is phonenumbers' region code (ISO 3166-1 alpha-2): another
        # spelling ("GBR", "UK") would define a segment that is always empty
        if country is not None and country not in phonenumbers.SUPPORTED_REGIONS:
            raise CliInputError(f"--region {item!r}: country {parts[2]!r} is not an ISO 3166-1 "
                                "alpha-2 code with phone numbers (e.g. GB, US, DE)")
        out.append(_checked("--region", item, builtins.in_region(
            parts[0], parts[1].split(","), country=country), types))
    for item in args.age_band:
        m = re.fullmatch(r"(\d+)-(\d+)", item)
        if m is None or int(m[1]) > int(m[2]):
            raise CliInputError(f"--age-band {item!r}: expected LO-HI (e.g. 25-44)")
        out.append(_checked("--age-band", item, builtins.age_band(int(m[1]), int(m[2])),
                            types))
    return out


def builtins_command(args: argparse.Namespace) -> int:
    def body(store: Store) -> int:
        from segmentation import builtins
        from segmentation.subscribers import attribute_types

        extra = _templates(args, attribute_types(store))
        diffs = builtins.install(_membership(store), extra)
        if args.json:
            _print_json([{"segment": d.segment, "entered": d.entered, "exited": d.exited,
                          "members": d.member_count} for d in diffs])
        else:
            for d in diffs:
                print(f"{d.segment}: {d.member_count} members (+{d.entered} -{d.exited})")
            if not diffs:
                print("built-in segments are up to date")
        return 0

    return _run(args, body)

"""Segment-store schema: STRICT tables, integer UTC timestamps in epoch milliseconds.

Applied by ``segmentation.store`` as numbered migrations at start-up (``PRAGMA user_version``).
The same database file holds the outbox; outbox tables are owned by ``gateway.outbox`` and are
never touched here. Data model after ``../shared/reference/segmentation-compliance.md`` §5.2.

Conventions:
- ``*_ms`` columns are UTC epoch milliseconds (INTEGER).
- JSON columns are TEXT holding compact JSON (``json_extract`` works on them).
- Append-only tables (``event``, ``consent``, ``segment_transition``) are never UPDATEd; erasure
  DELETEs a subscriber's rows, and only the keyed-hash ``suppression`` row survives.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: subscribers, attributes, events, roll-ups, traits, consent, suppression, segments
    """
    CREATE TABLE subscriber (
        id            INTEGER PRIMARY KEY,
        phone_e164    TEXT    NOT NULL UNIQUE,          -- '+447700900123'
        phone_raw     TEXT,                              -- as given, before normalisation
        country       TEXT,                              -- ISO 3166-1 alpha-2, from phonenumbers
        region        TEXT,                              -- state / province / postal region
        area_code     TEXT,                              -- national destination code, if any
        postal_code   TEXT,
        lat           REAL,
        lon           REAL,
        tz            TEXT,                              -- IANA zone chosen
        tz_source     TEXT    CHECK (tz_source IN
                      ('explicit','postal','region','area_code','country','default')),
        tz_candidates TEXT,                              -- JSON list when the number is ambiguous
        locale        TEXT,
        status        TEXT    NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active','stopped','invalid','erased')),
        created_ms    INTEGER NOT NULL,
        last_seen_ms  INTEGER                            -- moved to trait in migration 9
    ) STRICT;

    CREATE TABLE attribute_def (
        key         TEXT PRIMARY KEY,
        type        TEXT NOT NULL CHECK (type IN ('text','number','bool','date','list','geo')),
        description TEXT,
        created_ms  INTEGER NOT NULL
    ) STRICT;

    -- one row per subscriber and key; exactly one value_* column is set, by the key's type:
    -- text -> value_text, number/bool -> value_num (bool as 0/1), date -> value_num (epoch ms),
    -- list -> value_text (JSON array), geo -> value_num = lat, value_num2 = lon
    CREATE TABLE subscriber_attr (
        subscriber_id INTEGER NOT NULL REFERENCES subscriber(id) ON DELETE CASCADE,
        key           TEXT    NOT NULL REFERENCES attribute_def(key),
        value_text    TEXT,
        value_num     REAL,
        value_num2    REAL,
        updated_ms    INTEGER NOT NULL,
        PRIMARY KEY (subscriber_id, key)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX subscriber_attr_key_text ON subscriber_attr(key, value_text);
    CREATE INDEX subscriber_attr_key_num ON subscriber_attr(key, value_num);

    CREATE TABLE event (
        id            INTEGER PRIMARY KEY,
        subscriber_id INTEGER NOT NULL REFERENCES subscriber(id) ON DELETE CASCADE,
        type          TEXT    NOT NULL,   -- link_click, product_view, cart_add, purchase, reply,
                                          -- opt_in, opt_out, sent, delivered, failed, or custom
        ts_ms         INTEGER NOT NULL,
        value         REAL,               -- money or quantity
        props         TEXT,               -- JSON object
        source        TEXT,               -- csv:<sha256>, mqtt, http, keyword, outbox, ...
        dedupe_key    TEXT    UNIQUE      -- same event delivered twice counts once
    ) STRICT;
    CREATE INDEX event_sub_type_ts ON event(subscriber_id, type, ts_ms);
    CREATE INDEX event_type_ts ON event(type, ts_ms);

    -- whole-UTC-day roll-up; windows >= 2 days read whole days here plus raw edge-day events
    CREATE TABLE event_daily (
        subscriber_id INTEGER NOT NULL REFERENCES subscriber(id) ON DELETE CASCADE,
        type          TEXT    NOT NULL,
        day           INTEGER NOT NULL,   -- ts_ms // 86_400_000
        n             INTEGER NOT NULL,
        total         REAL    NOT NULL,   -- sum of value (NULL values count as 0)
        PRIMARY KEY (subscriber_id, type, day)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE trait (
        subscriber_id       INTEGER PRIMARY KEY REFERENCES subscriber(id) ON DELETE CASCADE,
        orders              INTEGER NOT NULL DEFAULT 0,
        spend               REAL    NOT NULL DEFAULT 0,
        first_purchase_ms   INTEGER,
        last_purchase_ms    INTEGER,
        last_click_ms       INTEGER,
        last_view_ms        INTEGER,
        last_cart_ms        INTEGER,
        last_reply_ms       INTEGER,
        last_sent_ms        INTEGER,
        last_delivered_ms   INTEGER,
        last_interaction_ms INTEGER       -- latest click, reply, view, cart add or purchase
    ) STRICT;

    -- append-only consent ledger; current consent = latest row per (subscriber, program)
    CREATE TABLE consent (
        id            INTEGER PRIMARY KEY,
        subscriber_id INTEGER REFERENCES subscriber(id) ON DELETE SET NULL,
        phone_e164    TEXT    NOT NULL,
        program       TEXT    NOT NULL CHECK (program IN ('marketing','transactional')),
        action        TEXT    NOT NULL CHECK (action IN ('grant','revoke')),
        ts_ms         INTEGER NOT NULL,
        method        TEXT    NOT NULL CHECK (method IN
                      ('keyword','web_form','point_of_sale','import','api','operator')),
        keyword_text  TEXT,               -- exact inbound text for keyword opt-in/out
        disclosure    TEXT,               -- disclosure text shown at opt-in
        evidence      TEXT,               -- JSON: file hash, form URL, IP, message id, ...
        actor         TEXT    NOT NULL    -- who recorded it: 'inbound', 'cli:<user>', 'api', ...
    ) STRICT;
    CREATE INDEX consent_phone_program_ts ON consent(phone_e164, program, ts_ms, id);
    CREATE INDEX consent_sub ON consent(subscriber_id, program, ts_ms, id);

    -- survives erasure: keyed hash (HMAC-SHA256 with the site secret) of the E.164 number
    CREATE TABLE suppression (
        phone_hash TEXT    NOT NULL,
        scope      TEXT    NOT NULL CHECK (scope IN ('marketing','transactional','all')),
        reason     TEXT    NOT NULL,
        ts_ms      INTEGER NOT NULL,
        PRIMARY KEY (phone_hash, scope)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE segment (
        id              INTEGER PRIMARY KEY,
        name            TEXT    NOT NULL UNIQUE,
        definition      TEXT    NOT NULL,     -- canonical JSON rule tree
        dsl_text        TEXT,                 -- the text syntax it was defined with, if any
        version         INTEGER NOT NULL DEFAULT 1,
        kind            TEXT    NOT NULL DEFAULT 'dynamic'
                        CHECK (kind IN ('dynamic','manual','builtin')),
        status          TEXT    NOT NULL DEFAULT 'initializing'
                        CHECK (status IN ('initializing','evaluating','ready')),
        deps            TEXT    NOT NULL DEFAULT '{}',  -- JSON: events, attrs, traits, segments
        member_count    INTEGER NOT NULL DEFAULT 0,
        created_ms      INTEGER NOT NULL,
        last_full_ms    INTEGER
    ) STRICT;

    CREATE TABLE segment_member (
        segment_id    INTEGER NOT NULL REFERENCES segment(id) ON DELETE CASCADE,
        subscriber_id INTEGER NOT NULL REFERENCES subscriber(id) ON DELETE CASCADE,
        entered_ms    INTEGER NOT NULL,
        version       INTEGER NOT NULL,       -- segment.version that admitted the member
        PRIMARY KEY (segment_id, subscriber_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX segment_member_sub ON segment_member(subscriber_id);

    CREATE TABLE segment_transition (
        id            INTEGER PRIMARY KEY,
        segment_id    INTEGER NOT NULL REFERENCES segment(id) ON DELETE CASCADE,
        subscriber_id INTEGER NOT NULL REFERENCES subscriber(id) ON DELETE CASCADE,
        ts_ms         INTEGER NOT NULL,
        direction     TEXT    NOT NULL CHECK (direction IN ('enter','exit')),
        cause         TEXT    NOT NULL CHECK (cause IN ('event','time','definition','manual',
                                                         'attribute','reconcile')),
        cause_ref     TEXT                    -- event id, attribute key, segment version, ...
    ) STRICT;
    CREATE INDEX segment_transition_seg_sub ON segment_transition(segment_id, subscriber_id, ts_ms);

    -- due-time queue for relative-time conditions: re-evaluate the pair at due_ms
    CREATE TABLE segment_recheck (
        segment_id    INTEGER NOT NULL REFERENCES segment(id) ON DELETE CASCADE,
        subscriber_id INTEGER NOT NULL REFERENCES subscriber(id) ON DELETE CASCADE,
        due_ms        INTEGER NOT NULL,
        PRIMARY KEY (segment_id, subscriber_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX segment_recheck_due ON segment_recheck(due_ms);
    """,
    # 2: consent rows get an optional dedupe key, so re-importing the same file (or replaying
    # the same API request) records a consent fact once. A UNIQUE index, because ALTER TABLE ADD
    # COLUMN cannot carry a UNIQUE constraint; NULLs (keyword/operator rows) never collide.
    """
    ALTER TABLE consent ADD COLUMN dedupe_key TEXT;
    CREATE UNIQUE INDEX consent_dedupe ON consent(dedupe_key);
    """,
    # 3: no secondary index on segment_member(subscriber_id). Every entry and exit wrote a
    # random leaf of it (measured at 1M subscribers: ~30 % of the pages a membership batch
    # commits); a subscriber's memberships are found through the primary key instead, one
    # (segment_id, subscriber_id) probe per segment, and erasure's cascade scans the table
    # as it already scans segment_transition and segment_recheck.
    """
    DROP INDEX IF EXISTS segment_member_sub;
    """,
    # 4: a subscriber's re-check rows and transition index entries are clustered by
    # subscriber, not by segment. One event changes its subscriber in several segments at
    # once (a click moves active, inactive, engagement_*, no_interaction_30d); keyed segment
    # first, each of those rows sat on a different random leaf, keyed subscriber first they
    # share one. Measured at 1M subscribers, 5,000-event batches: segment_recheck 1.80 and
    # segment_transition's index 1.53 leaf pages written per event before. Readers: the
    # drain probes (subscriber_id, segment_id) for its dirty subscribers, history() and
    # erasure look up by subscriber (now indexed), process_due uses segment_recheck_due; only
    # a full recompute's "forget this segment's re-checks" and dropping a segment scan.
    """
    DROP INDEX IF EXISTS segment_transition_seg_sub;
    CREATE INDEX segment_transition_sub_seg
        ON segment_transition(subscriber_id, segment_id, ts_ms);
    CREATE TABLE segment_recheck_v4 (
        segment_id    INTEGER NOT NULL REFERENCES segment(id) ON DELETE CASCADE,
        subscriber_id INTEGER NOT NULL REFERENCES subscriber(id) ON DELETE CASCADE,
        due_ms        INTEGER NOT NULL,
        PRIMARY KEY (subscriber_id, segment_id)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO segment_recheck_v4(segment_id, subscriber_id, due_ms)
        SELECT segment_id, subscriber_id, due_ms FROM segment_recheck
        ORDER BY subscriber_id, segment_id;
    DROP TABLE segment_recheck;
    ALTER TABLE segment_recheck_v4 RENAME TO segment_recheck;
    CREATE INDEX segment_recheck_due ON segment_recheck(due_ms);
    """,
    # 5: segment_transition's CHECKs as comparisons, not IN lists (same values). SQLite 3.40
    # evaluates a CHECK's IN list by building a temporary b-tree of the list for every row
    # written (OP_OpenEphemeral in the row loop): 4.5 -> 1.4 us per transition row measured
    # (1.3 without any CHECK), and membership writes ~2.4 transitions per ingested event at
    # 1M subscribers. Rebuilt by plain DDL (one copy of the table, seconds at 1M
    # subscribers). The other tables' IN-list CHECKs are paid by imports (one subscriber or
    # consent row per line), not per event; left as they are.
    """
    CREATE TABLE segment_transition_v5 (
        id            INTEGER PRIMARY KEY,
        segment_id    INTEGER NOT NULL REFERENCES segment(id) ON DELETE CASCADE,
        subscriber_id INTEGER NOT NULL REFERENCES subscriber(id) ON DELETE CASCADE,
        ts_ms         INTEGER NOT NULL,
        direction     TEXT    NOT NULL CHECK (direction = 'enter' OR direction = 'exit'),
        cause         TEXT    NOT NULL CHECK (cause = 'event' OR cause = 'time'
                              OR cause = 'definition' OR cause = 'manual'
                              OR cause = 'attribute' OR cause = 'reconcile'),
        cause_ref     TEXT                    -- event id, attribute key, segment version, ...
    ) STRICT;
    INSERT INTO segment_transition_v5(id, segment_id, subscriber_id, ts_ms, direction, cause,
                                      cause_ref)
        SELECT id, segment_id, subscriber_id, ts_ms, direction, cause, cause_ref
        FROM segment_transition ORDER BY id;
    DROP TABLE segment_transition;
    ALTER TABLE segment_transition_v5 RENAME TO segment_transition;
    CREATE INDEX segment_transition_sub_seg
        ON segment_transition(subscriber_id, segment_id, ts_ms);
    """,
    # 6: time-driven re-checks by sweeping, not by a due time per (segment, subscriber).
    # segment_recheck cost ~95 us and ~1.1 written pages per ingested event at 1M subscribers
    # (the next-change query for every dirty pair, then the upsert); a time condition can
    # only flip when now passes a stored time plus an offset of the rule, so Membership
    # finds those subscribers by range scans of existing indexes from swept_ms up to now.
    # created_ms gets an index for that (written once per subscriber). Sweeping from the last
    # full recompute re-checks a superset of what the dropped table held: never less.
    """
    ALTER TABLE segment ADD COLUMN swept_ms INTEGER;  -- time crossings processed up to here
    UPDATE segment SET swept_ms = last_full_ms;
    DROP TABLE segment_recheck;
    CREATE INDEX subscriber_created ON subscriber(created_ms);
    """,
    # 7: named marks of the store (segmentation.daily: the first day not yet in event_daily,
    # so today's events are no longer rolled up one by one at ingest).
    """
    CREATE TABLE store_mark (
        name  TEXT    PRIMARY KEY,
        value INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    """,
    # 8: events stamped later than they arrived, for the time sweep (rules.compile: an event's
    # own ts is a crossing only for those). Kept until every segment is swept past them.
    # Listed from the earliest sweep mark on, a superset for a store upgraded from 6 or 7.
    """
    CREATE TABLE event_future (
        ts_ms         INTEGER NOT NULL,
        subscriber_id INTEGER NOT NULL REFERENCES subscriber(id) ON DELETE CASCADE,
        PRIMARY KEY (ts_ms, subscriber_id)
    ) STRICT, WITHOUT ROWID;
    INSERT OR IGNORE INTO event_future(ts_ms, subscriber_id)
        SELECT ts_ms, subscriber_id FROM event
        WHERE ts_ms > (SELECT MIN(COALESCE(swept_ms, last_full_ms)) FROM segment);
    """,
    # 9: last_seen_ms moves from subscriber to trait. Ingest writes the trait row of every
    # subscriber with events anyway; updating a (wide) subscriber row as well dirtied a second
    # random page per event (0.90 pages and ~5 us of ~250 us per event at 1M subscribers).
    # Every subscriber has a trait row (upsert_subscriber creates it); the INSERT covers rows
    # written by older code or by hand.
    """
    ALTER TABLE trait ADD COLUMN last_seen_ms INTEGER;
    INSERT INTO trait(subscriber_id) SELECT id FROM subscriber
        WHERE id NOT IN (SELECT subscriber_id FROM trait);
    UPDATE trait SET last_seen_ms = s.last_seen_ms FROM subscriber s
        WHERE s.id = trait.subscriber_id AND s.last_seen_ms IS NOT NULL;
    ALTER TABLE subscriber DROP COLUMN last_seen_ms;
    """,
    # 10: the keyed hash of the number (segmentation.consent.number_hash: HMAC-SHA256 under the
    # site key, the suppression list's key), so the preview finds suppressed subscribers in SQL.
    # Hashing each consented number in Python cost ~6.5 us per row whenever the suppression
    # list is not empty (every real store): bench/segment_counts.py at 1M subscribers, the
    # 522,780-member active_subscribers with a 10,000-number list, 4.0 s -> 2.0 s (1.3 s with
    # an empty list). Cost: 66 bytes a row (subscriber 27k -> 43k pages; live counts ~7 %
    # slower in total, measured on filled vs unfilled copies). NULL for rows written without a
    # key (and every row after this migration) until `smsgate subscriber rehash`; the preview
    # hashes those in Python as before. No index: the preview reads it from rows it visits.
    """
    ALTER TABLE subscriber ADD COLUMN phone_hash TEXT;
    """,
    # 11: the keyed hash moves from subscriber.phone_hash (10) into a narrow side table. The
    # 64-char column widened every subscriber row by 66 bytes (27k -> 43k pages at 1M
    # subscribers), and every full-mode live count walks those rows: ~7 % slower in total,
    # engagement_high 444 -> 542 ms (goal 500). Only the preview (and rehash, export) reads
    # the hash; it goes from the small suppression list through the primary key to subscriber
    # ids. UNIQUE(subscriber_id) is the index the cascade and "has a hash?" probes use. OR
    # IGNORE: a hand-made duplicate hash must not stop the store from opening (that row falls
    # back to hashing in Python, as a row without a hash does). DROP COLUMN rewrites the rows
    # in place, so a store whose column was filled keeps its page count (pages ~60 % full)
    # until a VACUUM, which cannot run in this transaction; measured at 1M, the migration
    # itself (1M hashes) takes 8.4 s at open.
    """
    CREATE TABLE subscriber_hash (
        phone_hash    TEXT    PRIMARY KEY,  -- segmentation.consent.number_hash of phone_e164
        subscriber_id INTEGER NOT NULL UNIQUE REFERENCES subscriber(id) ON DELETE CASCADE
    ) STRICT, WITHOUT ROWID;
    INSERT OR IGNORE INTO subscriber_hash(phone_hash, subscriber_id)
        SELECT phone_hash, id FROM subscriber WHERE phone_hash IS NOT NULL ORDER BY id;
    ALTER TABLE subscriber DROP COLUMN phone_hash;
    """,
    # 12: the membership queue. Every writer (ingest, attribute and profile updates, consent,
    # in any process: the CLI, an importer, the daemon) adds a row per changed subscriber in
    # its own transaction, naming the event types / attribute keys that changed; a Membership
    # drain reads rows and deletes the ones it evaluated in ITS transaction. Before, the
    # dirty set lived only in the memory of the process that wrote: a CLI import never
    # reached the daemon's membership, and a crash between an ingest and its drain lost the
    # re-evaluation. Written only while a rule-based segment exists (a new definition
    # recomputes fully). The cascade scans the table on erasure (no index): it is drained
    # within a second by a running daemon, so it holds few rows.
    """
    CREATE TABLE membership_queue (
        id            INTEGER PRIMARY KEY,
        subscriber_id INTEGER NOT NULL REFERENCES subscriber(id) ON DELETE CASCADE,
        types         TEXT,    -- event types ingested for the subscriber, comma-separated
        attributes    TEXT     -- attribute keys / profile.<col> / consent.<program> changed
    ) STRICT;
    """,
    # 13: segment_member is keyed (subscriber_id, segment_id), as segment_transition's index
    # and the re-check rows were in 4. An event moves its subscriber in several segments at
    # once (a dormant subscriber's click: active, inactive, engagement_*, no_interaction_30d);
    # keyed segment first, each of those rows sat on its own random leaf, keyed subscriber
    # first they share one. Measured at 1M subscribers, 5,000-event batches (bench/segments.py
    # breakdown): segment_member leaf pages written per event 1.43 -> 0.56 uniform, 0.25 ->
    # 0.19 activity-weighted. A drain reads a batch's stored memberships in one range read
    # per subscriber; erasure's cascade finds the rows through the key. Readers by segment
    # scan the table (3.3M rows at 1M subscribers): export, preview of a stored segment,
    # Membership.members(), a full recompute and reconcile (one scan per segment), a manual
    # list's replace, a full-mode in_segment (defining a dependent segment, counting a draft
    # that uses in_segment) and dropping a segment (its cascade); none runs per event or in
    # the time sweep. Measured: a 1,272-member segment's export 3 -> 497 ms and its
    # preview 2 -> 187 ms, the 523k-member active_subscribers' export 1.29 -> 1.55 s. No
    # index by segment: it would put a random leaf back on every entry and exit. Rebuilt
    # by plain DDL (~5 s at 1M subscribers, once).
    """
    CREATE TABLE segment_member_v13 (
        segment_id    INTEGER NOT NULL REFERENCES segment(id) ON DELETE CASCADE,
        subscriber_id INTEGER NOT NULL REFERENCES subscriber(id) ON DELETE CASCADE,
        entered_ms    INTEGER NOT NULL,
        version       INTEGER NOT NULL,       -- segment.version that admitted the member
        PRIMARY KEY (subscriber_id, segment_id)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO segment_member_v13(segment_id, subscriber_id, entered_ms, version)
        SELECT segment_id, subscriber_id, entered_ms, version FROM segment_member
        ORDER BY subscriber_id, segment_id;
    DROP TABLE segment_member;
    ALTER TABLE segment_member_v13 RENAME TO segment_member;
    """,
    # 14: membership_queue ids are never reused (AUTOINCREMENT). A batch evaluated on a
    # second connection (Membership.prepare) is written later by the writer
    # (Membership.commit), which must know that no other drain took its rows meanwhile: with
    # plain rowids an emptied queue starts again at 1, and rows written after the batch's
    # snapshot could take the ids of rows another drain deleted. One sqlite_sequence update
    # per INSERT statement (ingest queues a batch in one statement).
    """
    CREATE TABLE membership_queue_v14 (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        subscriber_id INTEGER NOT NULL REFERENCES subscriber(id) ON DELETE CASCADE,
        types         TEXT,    -- event types ingested for the subscriber, comma-separated
        attributes    TEXT     -- attribute keys / profile.<col> / consent.<program> changed
    ) STRICT;
    INSERT INTO membership_queue_v14(id, subscriber_id, types, attributes)
        SELECT id, subscriber_id, types, attributes FROM membership_queue ORDER BY id;
    DROP TABLE membership_queue;
    ALTER TABLE membership_queue_v14 RENAME TO membership_queue;
    """,
)

-- The tiering engine (docs/metadata.md, "Tiering engine"): the hot index and per-node
-- hot-bytes counters, leases with fencing tokens, pins, policy classes, per-pack read
-- times and worker passes.

-- One row per hot location: what the idle and watermark scans of a node range over.
-- Kept apart from `locations` so reads (touch_hot) never rewrite location rows, whose
-- indexes would stop those updates from being HOT updates.
CREATE TABLE hot_copies (
    node         text  COLLATE "C" NOT NULL,
    chunk        bytea NOT NULL,
    length       int8  NOT NULL CHECK (length >= 0),
    placed_ms    int8  NOT NULL,
    last_read_ms int8  NOT NULL,
    class        text  COLLATE "C" NOT NULL DEFAULT '',
    blob         bytea,
    PRIMARY KEY (node, chunk)
);
CREATE INDEX hot_copies_lru ON hot_copies (node, last_read_ms, chunk);
CREATE INDEX hot_copies_class_lru ON hot_copies (node, class, last_read_ms, chunk);

-- Stored bytes and copies of each node's hot tier: a watermark check is one key lookup.
CREATE TABLE node_hot_bytes (
    node   text COLLATE "C" PRIMARY KEY,
    bytes  int8 NOT NULL,
    copies int8 NOT NULL
);

-- Leases on shared work. `until` is on the database clock; tokens come from one sequence,
-- so every grant of every lease gets a larger one.
CREATE SEQUENCE lease_tokens;
CREATE TABLE leases (
    name   text PRIMARY KEY,
    holder text NOT NULL,
    token  int8 NOT NULL,
    until  timestamptz NOT NULL
);

-- Packs: policy class, minimum storage duration, latest read of any chunk, copy count.
ALTER TABLE packs
    ADD COLUMN class text COLLATE "C" NOT NULL DEFAULT '',
    ADD COLUMN min_keep_until_ms int8,
    ADD COLUMN last_read_ms int8,
    ADD COLUMN chunks int8 NOT NULL DEFAULT 0;
CREATE INDEX packs_archive ON packs
    (tier, class, (GREATEST(created_ms, COALESCE(last_read_ms, 0))), id COLLATE "C");
CREATE INDEX packs_restore ON packs (id COLLATE "C") WHERE restore_state = 'requested';

-- Pins: per chunk, how many blobs referencing it are pinned to hot / to warm or hot.
ALTER TABLE chunks
    ADD COLUMN pin_hot int8 NOT NULL DEFAULT 0 CHECK (pin_hot >= 0),
    ADD COLUMN pin_warm int8 NOT NULL DEFAULT 0 CHECK (pin_warm >= 0);
ALTER TABLE blobs
    ADD COLUMN class text NOT NULL DEFAULT '',
    ADD COLUMN pin text CHECK (pin IN ('hot', 'warm'));

-- The last pass of each worker on each node.
CREATE TABLE worker_passes (
    node        text NOT NULL,
    worker      text NOT NULL,
    started_ms  int8 NOT NULL,
    duration_ms int8 NOT NULL,
    error       text,
    chunks      int8 NOT NULL,
    bytes       int8 NOT NULL,
    PRIMARY KEY (node, worker)
);

-- Back-fill from the copies already recorded.
INSERT INTO hot_copies (node, chunk, length, placed_ms, last_read_ms)
SELECT l.node, l.chunk, l.length,
       COALESCE(l.last_verified_ms, c.last_access_ms, 0),
       GREATEST(COALESCE(l.last_verified_ms, 0), COALESCE(c.last_access_ms, 0))
FROM locations l JOIN chunks c ON c.id = l.chunk
WHERE l.tier = 'hot';
INSERT INTO node_hot_bytes (node, bytes, copies)
SELECT node, sum(length), count(*) FROM locations WHERE tier = 'hot' GROUP BY node;
UPDATE packs p SET chunks = s.n, last_read_ms = s.last
FROM (SELECT l.pack, count(*) AS n, max(c.last_access_ms) AS last
      FROM locations l JOIN chunks c ON c.id = l.chunk
      WHERE l.pack <> '' GROUP BY l.pack) s
WHERE p.id = s.pack;

-- The hot index, the hot-bytes counters and the pack copy counts follow every insert and
-- delete of a location, whatever statement makes it, in that statement's transaction.
-- Statement-level triggers see all rows of a bulk statement at once (one upsert per
-- statement, not per row). Counter rows are updated last in the statement and in node
-- order: the lock order ends with them (docs/metadata.md, "Lock order").
CREATE FUNCTION strata_locations_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    now_ms int8 := (extract(epoch FROM clock_timestamp()) * 1000)::int8;
BEGIN
    INSERT INTO hot_copies (node, chunk, length, placed_ms, last_read_ms)
    SELECT n.node, n.chunk, n.length, COALESCE(n.last_verified_ms, now_ms),
           COALESCE(n.last_verified_ms, now_ms)
    FROM new_rows n WHERE n.tier = 'hot'
    ORDER BY n.node, n.chunk;
    UPDATE packs p SET chunks = p.chunks + s.n
    FROM (SELECT pack, count(*) AS n FROM new_rows WHERE pack <> '' GROUP BY pack) s
    WHERE p.id = s.pack;
    INSERT INTO node_hot_bytes AS b (node, bytes, copies)
    SELECT n.node, sum(n.length), count(*) FROM new_rows n WHERE n.tier = 'hot'
    GROUP BY n.node ORDER BY n.node
    ON CONFLICT (node) DO UPDATE
    SET bytes = b.bytes + EXCLUDED.bytes, copies = b.copies + EXCLUDED.copies;
    RETURN NULL;
END $$;

CREATE FUNCTION strata_locations_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM hot_copies h USING old_rows o
    WHERE o.tier = 'hot' AND h.node = o.node AND h.chunk = o.chunk;
    UPDATE packs p SET chunks = GREATEST(p.chunks - s.n, 0)
    FROM (SELECT pack, count(*) AS n FROM old_rows WHERE pack <> '' GROUP BY pack) s
    WHERE p.id = s.pack;
    PERFORM 1 FROM node_hot_bytes b
    WHERE b.node IN (SELECT node FROM old_rows WHERE tier = 'hot')
    ORDER BY b.node FOR UPDATE;
    UPDATE node_hot_bytes b SET bytes = b.bytes - s.bytes, copies = b.copies - s.n
    FROM (SELECT node, sum(length) AS bytes, count(*) AS n FROM old_rows
          WHERE tier = 'hot' GROUP BY node) s
    WHERE b.node = s.node;
    RETURN NULL;
END $$;

-- An upsert of an existing hot copy with another stored length (rare: a rewrite).
-- Identity columns are never updated by strata.
CREATE FUNCTION strata_hot_length_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE hot_copies SET length = NEW.length WHERE node = NEW.node AND chunk = NEW.chunk;
    UPDATE node_hot_bytes SET bytes = bytes + NEW.length - OLD.length WHERE node = NEW.node;
    RETURN NULL;
END $$;

CREATE TRIGGER locations_inserted AFTER INSERT ON locations
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION strata_locations_inserted();
CREATE TRIGGER locations_deleted AFTER DELETE ON locations
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION strata_locations_deleted();
CREATE TRIGGER locations_hot_length AFTER UPDATE OF length ON locations
    FOR EACH ROW WHEN (OLD.tier = 'hot' AND OLD.length IS DISTINCT FROM NEW.length)
    EXECUTE FUNCTION strata_hot_length_changed();

-- strata metadata schema, version 1 (see docs/metadata.md).
--
-- Applied by src/meta/postgres/migrate.rs inside one transaction holding an advisory
-- lock; strata_schema_version is created by the runner itself. Ids are the raw 32 bytes
-- of BLAKE3 hashes. Sizes, offsets and times (milliseconds since the Unix epoch) are
-- int8. Tiers and health states are lower-case text ('hot', 'warm', 'cold'; 'ok',
-- 'corrupt', 'missing'), readable in psql and extensible without a type change.

CREATE TABLE blobs (
    id           bytea PRIMARY KEY CHECK (octet_length(id) = 32),
    size         int8  NOT NULL CHECK (size >= 0),
    chunk_count  int8  NOT NULL CHECK (chunk_count >= 0),
    chunker_min  int4  NOT NULL,
    chunker_avg  int4  NOT NULL,
    chunker_max  int4  NOT NULL,
    created_ms   int8  NOT NULL,
    attributes   jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- One row per distinct chunk. refcount = number of manifest_entries rows naming it.
CREATE TABLE chunks (
    id             bytea PRIMARY KEY CHECK (octet_length(id) = 32),
    size           int8  NOT NULL CHECK (size >= 0),
    refcount       int8  NOT NULL CHECK (refcount >= 0),
    zero_since_ms  int8,
    last_access_ms int8,
    access_count   int8  NOT NULL DEFAULT 0
);

-- GC candidates: only the (few) rows at zero references are indexed.
CREATE INDEX chunks_gc ON chunks (zero_since_ms) WHERE refcount = 0;

-- A manifest, keyed by (blob, offset) so a range read is an index range scan.
CREATE TABLE manifest_entries (
    blob     bytea NOT NULL REFERENCES blobs (id),
    "offset" int8  NOT NULL CHECK ("offset" >= 0),
    length   int8  NOT NULL CHECK (length > 0),
    chunk    bytea NOT NULL REFERENCES chunks (id),
    PRIMARY KEY (blob, "offset")
);

-- Which blobs use a chunk (fsck, repair) and the foreign-key check when a chunk row is
-- deleted by GC.
CREATE INDEX manifest_entries_chunk ON manifest_entries (chunk);

-- One stored copy of a chunk. node is '' for shared tiers, pack is '' for hot copies.
-- The identity columns use the "C" collation: byte order, the same order strata sorts
-- them in before locking (docs/metadata.md, "Lock order"), whatever the database locale.
CREATE TABLE locations (
    chunk            bytea NOT NULL REFERENCES chunks (id),
    tier             text  COLLATE "C" NOT NULL CHECK (tier IN ('hot', 'warm', 'cold')),
    node             text  COLLATE "C" NOT NULL,
    pack             text  COLLATE "C" NOT NULL,
    "offset"         int8  NOT NULL CHECK ("offset" >= 0),
    length           int8  NOT NULL CHECK (length >= 0),
    health           text  NOT NULL CHECK (health IN ('ok', 'corrupt', 'missing')),
    last_verified_ms int8,
    claimed_by       text,
    claim_until_ms   int8,
    PRIMARY KEY (chunk, tier, node, pack)
);

-- Scrubbing claims: oldest (never first) verification first.
CREATE INDEX locations_last_verified ON locations (last_verified_ms ASC NULLS FIRST);
-- Per-pack lookups (pack GC, restores, rebuilding an index).
CREATE INDEX locations_pack ON locations (pack) WHERE pack <> '';

-- Warm and cold pack objects. Not used by version 1 code yet.
CREATE TABLE packs (
    id                text  PRIMARY KEY,
    tier              text  NOT NULL CHECK (tier IN ('warm', 'cold')),
    storage_class     text  NOT NULL,
    size              int8  NOT NULL CHECK (size >= 0),
    live_bytes        int8  NOT NULL CHECK (live_bytes >= 0),
    created_ms        int8  NOT NULL,
    restore_state     text,
    restore_expiry_ms int8
);

-- Append-only log of verification results.
CREATE TABLE verification_log (
    id     int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chunk  bytea NOT NULL,
    tier   text  NOT NULL,
    node   text  NOT NULL,
    pack   text  NOT NULL,
    health text  NOT NULL,
    at_ms  int8  NOT NULL,
    detail text  NOT NULL
);

CREATE INDEX verification_log_chunk ON verification_log (chunk, at_ms);

-- Pack live bytes kept exact: the triggers that count a pack's copies also sum their
-- stored lengths, in the statement that inserts or deletes the copies.
CREATE OR REPLACE FUNCTION strata_locations_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    now_ms int8 := (extract(epoch FROM clock_timestamp()) * 1000)::int8;
BEGIN
    INSERT INTO hot_copies (node, chunk, length, placed_ms, last_read_ms)
    SELECT n.node, n.chunk, n.length, COALESCE(n.last_verified_ms, now_ms),
           COALESCE(n.last_verified_ms, now_ms)
    FROM new_rows n WHERE n.tier = 'hot'
    ORDER BY n.node, n.chunk;
    UPDATE packs p SET chunks = p.chunks + s.n, live_bytes = p.live_bytes + s.bytes
    FROM (SELECT pack, count(*) AS n, sum(length) AS bytes FROM new_rows
          WHERE pack <> '' GROUP BY pack) s
    WHERE p.id = s.pack;
    INSERT INTO node_hot_bytes AS b (node, bytes, copies)
    SELECT n.node, sum(n.length), count(*) FROM new_rows n WHERE n.tier = 'hot'
    GROUP BY n.node ORDER BY n.node
    ON CONFLICT (node) DO UPDATE
    SET bytes = b.bytes + EXCLUDED.bytes, copies = b.copies + EXCLUDED.copies;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION strata_locations_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM hot_copies h USING old_rows o
    WHERE o.tier = 'hot' AND h.node = o.node AND h.chunk = o.chunk;
    UPDATE packs p SET chunks = GREATEST(p.chunks - s.n, 0),
                       live_bytes = GREATEST(p.live_bytes - s.bytes, 0)
    FROM (SELECT pack, count(*) AS n, sum(length) AS bytes FROM old_rows
          WHERE pack <> '' GROUP BY pack) s
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

-- Back-fill from the copies recorded now.
UPDATE packs p SET live_bytes = COALESCE(
    (SELECT sum(l.length) FROM locations l WHERE l.pack = p.id AND l.pack <> ''), 0);

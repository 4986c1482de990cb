-- GC pages through the queue with a cursor on (zero_since_ms, id), so candidates it
-- cannot remove (copies only in warm or cold) do not hide the ones behind them. The
-- index covers the cursor's order exactly; it replaces the one on zero_since_ms alone.
CREATE INDEX chunks_gc_queue ON chunks (zero_since_ms, id) WHERE refcount = 0;
DROP INDEX chunks_gc;

-- The store's identity: one row, written by the first node that finds none (a new
-- store, or one created before store ids). Every object store of the store holds the
-- same id in its `strata-store-id` object, so a node pointed at another bucket or
-- prefix can tell (docs/tiers.md, "Store identity").
CREATE TABLE strata_store (
    singleton  bool PRIMARY KEY DEFAULT true CHECK (singleton),
    id         text NOT NULL,
    created_ms int8 NOT NULL
);

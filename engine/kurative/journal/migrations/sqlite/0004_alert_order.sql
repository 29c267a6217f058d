-- The order alerts were committed in, also within one batch (which shares its received_at): SQLite
-- keeps it in the rowid already, so there is nothing to add here; the PostgreSQL schema gains a
-- sequence at this version. Both backends count the same schema versions.

SELECT 1;

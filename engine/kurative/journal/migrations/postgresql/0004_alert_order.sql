-- The order alerts were committed in, also within one batch (which shares its received_at): the
-- newest alert of a fingerprint, which says whether its firing episode is open, is the last one
-- committed, as SQLite's rowid says it.

ALTER TABLE alerts ADD COLUMN seq bigserial;
CREATE INDEX alerts_fingerprint_order ON alerts (fingerprint, received_at DESC, seq DESC);

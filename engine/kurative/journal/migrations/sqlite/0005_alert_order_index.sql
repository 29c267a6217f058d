-- The newest alert of a fingerprint is the one inserted last (rowid), whatever the clock said: the
-- episode of a start-less alert is read by it, and prune keeps it while an older alert of the
-- fingerprint stays. An index on the fingerprint alone is ordered by rowid within it.

CREATE INDEX alerts_fingerprint_rowid ON alerts (fingerprint);

-- The newest alert of a fingerprint is the one inserted last (seq), whatever the clock said: the
-- episode of a start-less alert is read by it, and prune keeps it while an older alert of the
-- fingerprint stays. This index finds it without sorting the fingerprint's alerts.

CREATE INDEX alerts_fingerprint_seq ON alerts (fingerprint, seq DESC);

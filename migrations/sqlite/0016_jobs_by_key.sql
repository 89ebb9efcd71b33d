-- Jobs by key, for the newest jobs whose key starts with a prefix (the impact panel's
-- analyses of one revision, a target's registrations): a range over this index rather
-- than a scan of every job kept (30 days of them, and every failed one).
CREATE INDEX jobs_by_key ON jobs (key);

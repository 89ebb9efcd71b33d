-- Jobs by key, for the newest jobs whose key starts with a prefix (the impact panel's
-- analyses of one revision, a target's registrations): a range over this index rather
-- than a scan of every job kept (30 days of them, and every failed one). Byte order
-- ("C"), whatever the database's collation, so that a prefix's keys form one range.
CREATE INDEX jobs_by_key ON jobs (key COLLATE "C");

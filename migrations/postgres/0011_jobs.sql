-- Background jobs (see backend/src/store/jobs.rs): analyses, index builds and the like,
-- run by workers inside serve or by `graftbench worker` against the same database. A
-- claim is a lease (lease_until) that the worker renews while it runs; a job whose
-- worker died is claimed again when the lease runs out. A failure is retried after
-- run_after until max_attempts, then the job ends failed with its error. One job per
-- key is queued or running at a time (the partial unique index). Keep in step with the
-- other flavour's 0011_jobs.sql.
CREATE TABLE jobs (
    id           BIGSERIAL PRIMARY KEY,
    kind         TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    attempts     BIGINT  NOT NULL DEFAULT 0,
    max_attempts BIGINT  NOT NULL,
    timeout_secs BIGINT  NOT NULL,
    run_after    TEXT    NOT NULL,
    worker       TEXT,
    lease_until  TEXT,
    phase        TEXT    NOT NULL DEFAULT '',
    progress     DOUBLE PRECISION    NOT NULL DEFAULT 0,
    error        TEXT,
    result       TEXT,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);
CREATE UNIQUE INDEX jobs_one_active_per_key ON jobs (key) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_waiting ON jobs (state, run_after, id);

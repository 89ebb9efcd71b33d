-- Kernel targets and the analyses of revisions against them. Keep in step with the other
-- flavour's 0012_targets.sql.
--
-- A target is one kernel build that fixes are analysed and built for. Its row is written
-- by the job that registered it, once its files are in place and its index is built (a
-- registration that fails leaves no row). Retired targets are kept for history and get
-- no new analyses.
CREATE TABLE targets (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    -- The vmlinux's GNU build-id: what names the build.
    build_id        TEXT    NOT NULL UNIQUE,
    -- `uname -r`, read from the image's `Linux version` banner.
    kernel_release  TEXT    NOT NULL,
    origin          TEXT    NOT NULL CHECK (origin IN ('debian', 'paths')),
    -- The distribution package version (6.1.192-2); empty for in-house builds.
    package_version TEXT    NOT NULL,
    arch            TEXT    NOT NULL,
    -- DW_AT_producer of the image's first unit.
    compiler        TEXT    NOT NULL,
    vmlinux         TEXT    NOT NULL,
    modules_dir     TEXT,
    kbuild_dir      TEXT,
    source_dir      TEXT,
    index_path      TEXT    NOT NULL,
    index_bytes     BIGINT  NOT NULL,
    objects         BIGINT  NOT NULL,
    functions       BIGINT  NOT NULL,
    inline_sites    BIGINT  NOT NULL,
    clones          BIGINT  NOT NULL,
    -- Bytes under DATA_DIR/targets/BUILD_ID (0 for in-house builds left where they are).
    disk_bytes      BIGINT  NOT NULL,
    indexed_at      TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    retired_at      TEXT
);

-- Why the current revision's analyses say no live patch can be built from it for some
-- target (a hunk that does not apply, lines that could not be tied to code); NULL when
-- they do not. Eligibility reads it beside functions_to_replace.
ALTER TABLE patches ADD COLUMN analysis_problem TEXT;

-- The targets a patch is analysed for; a patch without rows follows every active target.
CREATE TABLE patch_targets (
    patch_id  BIGINT  NOT NULL REFERENCES patches (id) ON DELETE CASCADE,
    target_id BIGINT  NOT NULL REFERENCES targets (id),
    PRIMARY KEY (patch_id, target_id)
);

-- One analysis per diff (a revision's SHA-256), build and report version: a revision
-- that is analysed again for the same build gives the same row.
CREATE TABLE analyses (
    id                   BIGSERIAL PRIMARY KEY,
    diff_sha256          TEXT    NOT NULL REFERENCES diff_blobs (sha256),
    target_id            BIGINT  NOT NULL REFERENCES targets (id),
    build_id             TEXT    NOT NULL,
    report_version       BIGINT  NOT NULL,
    -- analysed: a report of the whole fix; no_code: the fix changes no code of this build
    -- (said plainly); not_applicable: a hunk does not apply to this build (or is applied
    -- already, or contradicts its debug information); incomplete: changed lines the
    -- analysis could not tie to code (a macro without the source); failed: no analysis
    -- could be made (error). Only `analysed` gives the patch its scope.
    outcome              TEXT    NOT NULL
        CHECK (outcome IN ('analysed', 'no_code', 'not_applicable', 'incomplete', 'failed')),
    functions_to_replace BIGINT,
    summary              TEXT    NOT NULL,
    report               TEXT,
    created_at           TEXT    NOT NULL,
    UNIQUE (diff_sha256, build_id, report_version)
);
CREATE INDEX analyses_by_target ON analyses (target_id);

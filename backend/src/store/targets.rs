//! Kernel targets, the targets each patch follows, and the analyses of revisions against
//! them.

use super::{Database, DbError, Tx};
use crate::clock;
use serde::Serialize;
use sqlx::Row;

/// A registered kernel build, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// Its id.
    pub id: i64,
    /// What people call it (the release for a distribution build).
    pub name: String,
    /// The vmlinux's GNU build-id.
    pub build_id: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// `debian` or `paths`.
    pub origin: String,
    /// The distribution package version; empty for in-house builds.
    pub package_version: String,
    /// `x86_64`.
    pub arch: String,
    /// The compiler that built it (DW_AT_producer).
    pub compiler: String,
    /// The image with debug information.
    pub vmlinux: String,
    /// Modules with debug information, when registered with them.
    pub modules_dir: Option<String>,
    /// The directory out-of-tree modules are built against.
    pub kbuild_dir: Option<String>,
    /// The build's own source tree.
    pub source_dir: Option<String>,
    /// Its index file.
    pub index_path: String,
    /// The index file's size.
    pub index_bytes: i64,
    /// Objects indexed (vmlinux and modules).
    pub objects: i64,
    /// Functions of the source, as the index counts them.
    pub functions: i64,
    /// Inlined copies.
    pub inline_sites: i64,
    /// Clone symbols (`.isra`, `.constprop`, `.part`, `.cold`).
    pub clones: i64,
    /// Bytes Graftbench keeps for it.
    pub disk_bytes: i64,
    /// When its index was built.
    pub indexed_at: String,
    /// Who registered it.
    pub created_by: String,
    /// When.
    pub created_at: String,
    /// When it was retired, if it was.
    pub retired_at: Option<String>,
}

impl Target {
    /// Whether new analyses are made for it.
    pub fn is_active(&self) -> bool {
        self.retired_at.is_none()
    }
}

/// A target to insert: everything but the id and the retirement (also what a
/// registration job produces).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NewTarget {
    /// [`Target::name`].
    pub name: String,
    /// [`Target::build_id`].
    pub build_id: String,
    /// [`Target::kernel_release`].
    pub kernel_release: String,
    /// [`Target::origin`].
    pub origin: String,
    /// [`Target::package_version`].
    pub package_version: String,
    /// [`Target::arch`].
    pub arch: String,
    /// [`Target::compiler`].
    pub compiler: String,
    /// [`Target::vmlinux`].
    pub vmlinux: String,
    /// [`Target::modules_dir`].
    pub modules_dir: Option<String>,
    /// [`Target::kbuild_dir`].
    pub kbuild_dir: Option<String>,
    /// [`Target::source_dir`].
    pub source_dir: Option<String>,
    /// [`Target::index_path`].
    pub index_path: String,
    /// The index's counts and size.
    pub counts: IndexCounts,
    /// [`Target::disk_bytes`].
    pub disk_bytes: i64,
    /// [`Target::created_by`].
    pub created_by: String,
}

/// What an index holds, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct IndexCounts {
    /// The index file's size.
    pub index_bytes: i64,
    /// Objects.
    pub objects: i64,
    /// Functions.
    pub functions: i64,
    /// Inlined copies.
    pub inline_sites: i64,
    /// Clone symbols.
    pub clones: i64,
}

const TARGET_COLUMNS: &str = "id, name, build_id, kernel_release, origin, package_version, \
     arch, compiler, vmlinux, modules_dir, kbuild_dir, source_dir, index_path, index_bytes, \
     objects, functions, inline_sites, clones, disk_bytes, indexed_at, created_by, \
     created_at, retired_at";

fn target_from_row(r: &sqlx::any::AnyRow) -> Result<Target, DbError> {
    Ok(Target {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        build_id: r.try_get("build_id")?,
        kernel_release: r.try_get("kernel_release")?,
        origin: r.try_get("origin")?,
        package_version: r.try_get("package_version")?,
        arch: r.try_get("arch")?,
        compiler: r.try_get("compiler")?,
        vmlinux: r.try_get("vmlinux")?,
        modules_dir: r.try_get("modules_dir")?,
        kbuild_dir: r.try_get("kbuild_dir")?,
        source_dir: r.try_get("source_dir")?,
        index_path: r.try_get("index_path")?,
        index_bytes: r.try_get("index_bytes")?,
        objects: r.try_get("objects")?,
        functions: r.try_get("functions")?,
        inline_sites: r.try_get("inline_sites")?,
        clones: r.try_get("clones")?,
        disk_bytes: r.try_get("disk_bytes")?,
        indexed_at: r.try_get("indexed_at")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        retired_at: r.try_get("retired_at")?,
    })
}

/// Inserts `target` in `tx`: its id, or `None` when a target of that name or build-id
/// exists already.
pub async fn insert_target(tx: &mut Tx, target: &NewTarget) -> Result<Option<i64>, DbError> {
    let now = clock::now();
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO targets (name, build_id, kernel_release, origin, package_version, arch,
             compiler, vmlinux, modules_dir, kbuild_dir, source_dir, index_path, index_bytes,
             objects, functions, inline_sites, clones, disk_bytes, indexed_at, created_by,
             created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
             $18, $19, $20, $19)
         ON CONFLICT DO NOTHING
         RETURNING id",
    )
    .bind(&target.name)
    .bind(&target.build_id)
    .bind(&target.kernel_release)
    .bind(&target.origin)
    .bind(&target.package_version)
    .bind(&target.arch)
    .bind(&target.compiler)
    .bind(&target.vmlinux)
    .bind(&target.modules_dir)
    .bind(&target.kbuild_dir)
    .bind(&target.source_dir)
    .bind(&target.index_path)
    .bind(target.counts.index_bytes)
    .bind(target.counts.objects)
    .bind(target.counts.functions)
    .bind(target.counts.inline_sites)
    .bind(target.counts.clones)
    .bind(target.disk_bytes)
    .bind(&now)
    .bind(&target.created_by)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(id)
}

/// Records a rebuilt index of target `id`.
pub async fn store_reindexed(
    tx: &mut Tx,
    id: i64,
    counts: &IndexCounts,
    disk_bytes: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE targets SET index_bytes = $1, objects = $2, functions = $3, inline_sites = $4,
             clones = $5, disk_bytes = $6, indexed_at = $7
         WHERE id = $8",
    )
    .bind(counts.index_bytes)
    .bind(counts.objects)
    .bind(counts.functions)
    .bind(counts.inline_sites)
    .bind(counts.clones)
    .bind(disk_bytes)
    .bind(clock::now())
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Retires target `id` in `tx`; whether it was active.
pub async fn retire_target(tx: &mut Tx, id: i64) -> Result<bool, DbError> {
    Ok(
        sqlx::query("UPDATE targets SET retired_at = $1 WHERE id = $2 AND retired_at IS NULL")
            .bind(clock::now())
            .bind(id)
            .execute(&mut **tx)
            .await?
            .rows_affected()
            == 1,
    )
}

/// Sets the targets patch `id` follows (none: every active one).
pub async fn set_patch_targets(tx: &mut Tx, patch_id: i64, targets: &[i64]) -> Result<(), DbError> {
    sqlx::query("DELETE FROM patch_targets WHERE patch_id = $1")
        .bind(patch_id)
        .execute(&mut **tx)
        .await?;
    for target in targets {
        sqlx::query("INSERT INTO patch_targets (patch_id, target_id) VALUES ($1, $2)")
            .bind(patch_id)
            .bind(target)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The active targets patch `patch_id` is analysed for, in `tx`: those it names, else
/// every active one.
pub async fn targets_of_patch_in(tx: &mut Tx, patch_id: i64) -> Result<Vec<Target>, DbError> {
    let rows = sqlx::query(&TARGETS_OF_PATCH)
        .bind(patch_id)
        .fetch_all(&mut **tx)
        .await?;
    active_targets_of(&rows)
}

/// The targets a patch names, or every active one when it names none: one statement,
/// read by every patch page (twice: the page and its impact panel).
static TARGETS_OF_PATCH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {TARGET_COLUMNS} FROM targets
         WHERE id IN (SELECT target_id FROM patch_targets WHERE patch_id = $1)
            OR (retired_at IS NULL
                AND NOT EXISTS (SELECT 1 FROM patch_targets WHERE patch_id = $1))
         ORDER BY id"
    )
});

fn active_targets_of(rows: &[sqlx::any::AnyRow]) -> Result<Vec<Target>, DbError> {
    let targets: Vec<Target> = rows.iter().map(target_from_row).collect::<Result<_, _>>()?;
    Ok(targets.into_iter().filter(Target::is_active).collect())
}

impl Database {
    /// [`targets_of_patch_in`] outside a transaction: one statement sees one snapshot.
    pub async fn targets_of_patch(&self, patch_id: i64) -> Result<Vec<Target>, DbError> {
        let rows = sqlx::query(&TARGETS_OF_PATCH)
            .bind(patch_id)
            .fetch_all(&self.pool)
            .await?;
        active_targets_of(&rows)
    }
}

/// How one revision came out against one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A report.
    Analysed,
    /// The fix changes no code of the build.
    NoCode,
    /// A hunk does not apply to the build (or is applied already, or contradicts its
    /// debug information): no live patch of this fix can be built for it.
    NotApplicable,
    /// Changed lines the analysis could not tie to code (a macro, without the source).
    Incomplete,
    /// No analysis could be made (the error is the summary).
    Failed,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Analysed => "analysed",
            Outcome::NoCode => "no_code",
            Outcome::NotApplicable => "not_applicable",
            Outcome::Incomplete => "incomplete",
            Outcome::Failed => "failed",
        }
    }

    fn parse(name: &str) -> Option<Outcome> {
        [
            Outcome::Analysed,
            Outcome::NoCode,
            Outcome::NotApplicable,
            Outcome::Incomplete,
            Outcome::Failed,
        ]
        .into_iter()
        .find(|o| o.as_str() == name)
    }
}

/// An analysis to record.
#[derive(Debug, Clone)]
pub struct NewAnalysis<'a> {
    /// The revision's SHA-256.
    pub diff_sha256: &'a str,
    /// The target.
    pub target_id: i64,
    /// Its build-id.
    pub build_id: &'a str,
    /// The report format version.
    pub report_version: i64,
    /// How it came out.
    pub outcome: Outcome,
    /// Functions to replace, for a report.
    pub functions_to_replace: Option<i64>,
    /// One line.
    pub summary: &'a str,
    /// The report, JSON.
    pub report: Option<&'a serde_json::Value>,
}

/// An analysis as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// Its id.
    pub id: i64,
    /// The revision's SHA-256.
    pub diff_sha256: String,
    /// The target's id.
    pub target_id: i64,
    /// The target's name.
    pub target: String,
    /// The build-id analysed.
    pub build_id: String,
    /// The report format version.
    pub report_version: i64,
    /// How it came out.
    pub outcome: Outcome,
    /// Functions to replace, for a report.
    pub functions_to_replace: Option<i64>,
    /// One line.
    pub summary: String,
    /// The report, JSON.
    pub report: Option<serde_json::Value>,
    /// When.
    pub created_at: String,
}

/// Records `analysis` in `tx`: `true` when it is new, `false` when the same diff, build
/// and report version were analysed already (the row is kept as it was).
pub async fn insert_analysis(tx: &mut Tx, analysis: &NewAnalysis<'_>) -> Result<bool, DbError> {
    Ok(sqlx::query(
        "INSERT INTO analyses (diff_sha256, target_id, build_id, report_version, outcome,
             functions_to_replace, summary, report, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (diff_sha256, build_id, report_version) DO NOTHING",
    )
    .bind(analysis.diff_sha256)
    .bind(analysis.target_id)
    .bind(analysis.build_id)
    .bind(analysis.report_version)
    .bind(analysis.outcome.as_str())
    .bind(analysis.functions_to_replace)
    .bind(analysis.summary)
    .bind(analysis.report.map(ToString::to_string))
    .bind(clock::now())
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

/// The most functions to replace of any target's analysis of the current revision of
/// patch `patch_id` (report version `version`), in `tx`: the scope of its widest module,
/// counting partial analyses too (a fix that does not apply somewhere replaces at least
/// that much). `None` while no target has a count.
pub async fn widest_scope_in(
    tx: &mut Tx,
    patch_id: i64,
    version: i64,
) -> Result<Option<i64>, DbError> {
    let widest: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(a.functions_to_replace) FROM analyses a
         WHERE a.report_version = $2
           AND a.diff_sha256 = (SELECT diff_sha256 FROM revisions WHERE patch_id = $1
                                ORDER BY number DESC LIMIT 1)",
    )
    .bind(patch_id)
    .bind(version)
    .fetch_one(&mut **tx)
    .await?;
    Ok(widest)
}

/// Why the current revision's analyses (report version `version`) say no complete live
/// patch can be built from it for some target, in `tx`: `TARGET: summary; ...`.
pub async fn analysis_problem_in(
    tx: &mut Tx,
    patch_id: i64,
    version: i64,
) -> Result<Option<String>, DbError> {
    let rows = sqlx::query(
        "SELECT t.name, a.summary FROM analyses a JOIN targets t ON t.id = a.target_id
         WHERE a.report_version = $2 AND a.outcome IN ('not_applicable', 'incomplete', 'failed')
           AND a.diff_sha256 = (SELECT diff_sha256 FROM revisions WHERE patch_id = $1
                                ORDER BY number DESC LIMIT 1)
         ORDER BY t.name",
    )
    .bind(patch_id)
    .bind(version)
    .fetch_all(&mut **tx)
    .await?;
    let problems: Vec<String> = rows
        .iter()
        .map(|r| -> Result<String, DbError> {
            let name: String = r.try_get("name")?;
            let summary: String = r.try_get("summary")?;
            Ok(format!("{name}: {summary}"))
        })
        .collect::<Result<_, _>>()?;
    Ok((!problems.is_empty()).then(|| problems.join("; ")))
}

/// Brings the patch's stored scope and analysis problem up to date with its current
/// revision's analyses, in `tx` (the patch locked by the caller).
pub async fn refresh_scope_in(tx: &mut Tx, patch_id: i64) -> Result<(), DbError> {
    let version = i64::from(analyzer::impact::REPORT_VERSION);
    let widest = widest_scope_in(tx, patch_id, version).await?;
    let problem = analysis_problem_in(tx, patch_id, version).await?;
    sqlx::query(
        "UPDATE patches SET functions_to_replace = $1, analysis_problem = $2 WHERE id = $3",
    )
    .bind(widest)
    .bind(problem)
    .bind(patch_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The open patches whose current revision is the diff `sha256`, with that revision's
/// number, in `tx`.
pub async fn patches_at_current_diff_in(
    tx: &mut Tx,
    sha256: &str,
) -> Result<Vec<(i64, i64)>, DbError> {
    let rows = sqlx::query(
        "SELECT r.patch_id, r.number FROM revisions r JOIN patches p ON p.id = r.patch_id
         WHERE r.diff_sha256 = $1 AND p.phase IN ('draft', 'open')
           AND r.number = (SELECT MAX(number) FROM revisions WHERE patch_id = r.patch_id)
         ORDER BY r.patch_id",
    )
    .bind(sha256)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("patch_id")?, r.try_get("number")?)))
        .collect()
}

fn analysis_from_row(r: &sqlx::any::AnyRow) -> Result<Analysis, DbError> {
    let outcome: String = r.try_get("outcome")?;
    let report: Option<String> = r.try_get("report")?;
    Ok(Analysis {
        id: r.try_get("id")?,
        diff_sha256: r.try_get("diff_sha256")?,
        target_id: r.try_get("target_id")?,
        target: r.try_get("name")?,
        build_id: r.try_get("build_id")?,
        report_version: r.try_get("report_version")?,
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| DbError::Corrupt(format!("analysis outcome {outcome:?}")))?,
        functions_to_replace: r.try_get("functions_to_replace")?,
        summary: r.try_get("summary")?,
        report: report
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| DbError::Corrupt(format!("an analysis report: {e}")))?,
        created_at: r.try_get("created_at")?,
    })
}

impl Database {
    /// Every target, active ones first, then by name.
    pub async fn targets(&self) -> Result<Vec<Target>, DbError> {
        sqlx::query(&format!(
            "SELECT {TARGET_COLUMNS} FROM targets
             ORDER BY CASE WHEN retired_at IS NULL THEN 0 ELSE 1 END, name"
        ))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(target_from_row)
        .collect()
    }

    /// Target `id`.
    pub async fn target(&self, id: i64) -> Result<Option<Target>, DbError> {
        sqlx::query(&format!(
            "SELECT {TARGET_COLUMNS} FROM targets WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(target_from_row)
        .transpose()
    }

    /// The target named `name` or with build-id `build_id`, if any.
    pub async fn target_named(
        &self,
        name: &str,
        build_id: &str,
    ) -> Result<Option<Target>, DbError> {
        sqlx::query(&format!(
            "SELECT {TARGET_COLUMNS} FROM targets WHERE name = $1 OR build_id = $2"
        ))
        .bind(name)
        .bind(build_id)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(target_from_row)
        .transpose()
    }

    /// How many analyses each target has, by target id.
    pub async fn analyses_per_target(
        &self,
    ) -> Result<std::collections::HashMap<i64, i64>, DbError> {
        let rows = sqlx::query("SELECT target_id, COUNT(*) AS n FROM analyses GROUP BY target_id")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("target_id")?, r.try_get("n")?)))
            .collect()
    }

    /// The analyses of the diff `sha256` (any target, the newest report version first).
    pub async fn analyses_of(&self, sha256: &str) -> Result<Vec<Analysis>, DbError> {
        sqlx::query(
            "SELECT a.id, a.diff_sha256, a.target_id, t.name, a.build_id, a.report_version,
                 a.outcome, a.functions_to_replace, a.summary, a.report, a.created_at
             FROM analyses a JOIN targets t ON t.id = a.target_id
             WHERE a.diff_sha256 = $1
             ORDER BY a.report_version DESC, t.name",
        )
        .bind(sha256)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(analysis_from_row)
        .collect()
    }

    /// The current revision of every open patch, with the patch: what a new or
    /// re-indexed target is analysed for.
    pub async fn current_open_revisions(&self) -> Result<Vec<(i64, i64, String)>, DbError> {
        let rows = sqlx::query(
            "SELECT r.patch_id, r.number, r.diff_sha256 FROM revisions r
             JOIN patches p ON p.id = r.patch_id
             WHERE p.phase IN ('draft', 'open')
               AND r.number = (SELECT MAX(number) FROM revisions WHERE patch_id = r.patch_id)
             ORDER BY r.patch_id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("patch_id")?,
                    r.try_get("number")?,
                    r.try_get("diff_sha256")?,
                ))
            })
            .collect()
    }
}

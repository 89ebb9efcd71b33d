//! Kernel targets: registering a build (a Debian release fetched with apt, or files an
//! admin put under the target root), indexing it, retiring it.
//!
//! A registration is checked as far as it can be while the client waits (the release
//! string, the paths, the image's ELF header, build-id and debug information), then
//! queued as a `target.register` job: the worker fetches and unpacks what it needs into
//! `DATA_DIR/targets/.partial-JOB`, indexes it (progress on the job), moves it to
//! `DATA_DIR/targets/BUILD_ID` and writes the target row and its audit event in the
//! transaction that completes the job. A registration that fails leaves no row and
//! removes its files.

use super::worker::{BoxFuture, JobHandler, Progress};
use crate::store::jobs::{enqueue_job_in, Job, NewJob};
use crate::store::targets::{self, IndexCounts, NewTarget, Target};
use crate::store::{audit, Database, DbError, Tx};
use analyzer::cache::{self, KernelBuild};
use analyzer::image::{self, ImageFacts};
use graftbench_app::model::{Role, SessionUser};
use graftbench_domain::audit::{AuditAction, AuditSubject};
use graftbench_domain::Refusal;
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The job kind that registers a target.
pub const REGISTER: &str = "target.register";
/// The job kind that builds a target's index again.
pub const REINDEX: &str = "target.reindex";

/// The longest target name.
const MAX_NAME: usize = 64;

/// Where targets live and where registrations may look.
#[derive(Debug, Clone)]
pub struct TargetSettings {
    /// The data directory: targets go under `targets/`.
    pub data_dir: PathBuf,
    /// The only directory in-house builds may be registered from; none: refused.
    pub paths_root: Option<PathBuf>,
    /// Downloaded and unpacked distribution kernels, kept across registrations and data
    /// directories.
    pub cache_dir: PathBuf,
}

impl TargetSettings {
    /// Settings for `data_dir`, with the cache under the user's cache directory
    /// (`$GRAFTBENCH_KERNEL_CACHE`, else `$XDG_CACHE_HOME/graftbench/kernels`, else
    /// `~/.cache/graftbench/kernels`).
    pub fn new(data_dir: &Path, paths_root: Option<PathBuf>) -> TargetSettings {
        let cache_dir = std::env::var_os("GRAFTBENCH_KERNEL_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME")
                    .map(|d| PathBuf::from(d).join("graftbench/kernels"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/graftbench/kernels"))
            })
            .unwrap_or_else(|| data_dir.join("kernel-cache"));
        TargetSettings {
            data_dir: data_dir.to_owned(),
            paths_root,
            cache_dir,
        }
    }

    fn targets_dir(&self) -> PathBuf {
        self.data_dir.join("targets")
    }

    /// `text` with this server's directories named by their role (`$DATA_DIR`,
    /// `$KERNEL_CACHE`, `$TARGET_ROOT`): job errors are shown to every user, and where
    /// the service keeps its files (its home directory among them) is not theirs to know.
    pub fn redact(&self, text: &str) -> String {
        let mut roots: Vec<(String, &str)> = Vec::new();
        let mut add = |dir: &Path, name: &'static str| {
            for form in [Some(dir.to_owned()), dir.canonicalize().ok()]
                .into_iter()
                .flatten()
            {
                let form = form.to_string_lossy().trim_end_matches('/').to_owned();
                // Absolute forms only: a relative `data` would replace the word anywhere.
                if form.len() > 1 && form.starts_with('/') {
                    roots.push((form, name));
                }
            }
        };
        add(&self.cache_dir, "$KERNEL_CACHE");
        add(&self.data_dir, "$DATA_DIR");
        if let Some(root) = &self.paths_root {
            add(root, "$TARGET_ROOT");
        }
        // The longest first: the cache may sit inside the data directory.
        roots.sort_by_key(|(form, _)| std::cmp::Reverse(form.len()));
        let mut text = text.to_owned();
        for (form, name) in roots {
            text = text.replace(&form, name);
        }
        text
    }

    /// A job's error as it is stored and shown: logged in full for the operator, then
    /// [`TargetSettings::redact`]ed.
    pub fn job_error(&self, job: &Job, error: String) -> String {
        tracing::warn!(job = job.id, kind = %job.kind, attempt = job.attempts, %error, "a job's attempt failed");
        self.redact(&error)
    }
}

/// Why a target could not be registered, retired or found.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The request is not one that can be registered; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// Not allowed for this user.
    #[error("{0}")]
    Forbidden(String),
    /// No such target or release.
    #[error("{0}")]
    NotFound(String),
    /// A target of that name or build exists, or one is being registered.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A helper program or the file system failed on the server's side.
    #[error("{0}")]
    Server(String),
}

impl TargetError {
    /// How it is answered.
    pub fn refusal(&self) -> Refusal {
        match self {
            TargetError::Invalid(_) => Refusal::Invalid,
            TargetError::Forbidden(_) => Refusal::Forbidden,
            TargetError::NotFound(_) => Refusal::NotFound,
            TargetError::Conflict(_) => Refusal::Conflict,
            TargetError::Db(_) | TargetError::Server(_) => Refusal::Internal,
        }
    }
}

fn require_target_manager(user: &SessionUser) -> Result<(), TargetError> {
    if user.has_role(Role::Admin) || user.has_role(Role::ReleaseManager) {
        Ok(())
    } else {
        Err(TargetError::Forbidden(
            "managing kernel targets needs the admin or release manager role".into(),
        ))
    }
}

/// A registration as a client asks for it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetRequest {
    /// A Debian kernel release (`6.1.0-56-cloud-amd64`), fetched with apt.
    #[serde(default)]
    pub release: Option<String>,
    /// With the release: also fetch and unpack its source package.
    #[serde(default)]
    pub with_source: bool,
    /// An in-house build: the vmlinux with debug information, under the target root.
    #[serde(default)]
    pub vmlinux: Option<String>,
    /// Its modules with debug information.
    #[serde(default)]
    pub modules_dir: Option<String>,
    /// The directory its out-of-tree modules are built against.
    #[serde(default)]
    pub kbuild_dir: Option<String>,
    /// Its source tree.
    #[serde(default)]
    pub source_dir: Option<String>,
    /// The name (default: the release).
    #[serde(default)]
    pub name: Option<String>,
    /// `uname -r` for an image without a `Linux version` banner.
    #[serde(default)]
    pub kernel_release: Option<String>,
}

/// What a registration job is given.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "origin", rename_all = "snake_case")]
enum Registration {
    /// A Debian release.
    Debian {
        name: String,
        release: String,
        with_source: bool,
        created_by: String,
    },
    /// Files under the target root.
    Paths {
        name: String,
        kernel_release: String,
        vmlinux: PathBuf,
        modules_dir: Option<PathBuf>,
        kbuild_dir: Option<PathBuf>,
        source_dir: Option<PathBuf>,
        created_by: String,
    },
}

/// A queued registration.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedRegistration {
    /// The job that registers it.
    pub job: i64,
    /// The name the target will have.
    pub name: String,
    /// Whether the job was queued now (false: the same registration was queued already).
    pub new: bool,
}

/// Checks a target name: letters, digits and `._+-`, at most 64.
fn checked_name(name: &str) -> Result<String, TargetError> {
    let name = name.trim();
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(TargetError::Invalid(format!(
            "`{}` is not a target name: use letters, digits and . _ + -, at most {MAX_NAME}",
            name.chars().take(MAX_NAME + 1).collect::<String>()
        )))
    }
}

/// A Debian kernel release split into its parts: `6.1.0-56-cloud-amd64` is version
/// `6.1.0`, ABI `56`, flavour `cloud-amd64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianRelease {
    /// The whole string.
    pub release: String,
    /// `6.1`: the kbuild and source packages' series.
    pub series: String,
}

/// Checks a release string before it reaches apt: `MAJOR.MINOR.PATCH-ABI-FLAVOUR` with
/// lower-case letters, digits and dashes in the flavour.
pub fn parse_debian_release(release: &str) -> Result<DebianRelease, TargetError> {
    let invalid = || {
        TargetError::Invalid(format!(
            "`{}` is not a Debian kernel release (expected e.g. 6.1.0-56-amd64 or \
             6.1.0-56-cloud-amd64)",
            release.chars().take(80).collect::<String>()
        ))
    };
    if release.len() > MAX_NAME {
        return Err(invalid());
    }
    let mut parts = release.splitn(3, '-');
    let (Some(version), Some(abi), Some(flavour)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let numbers: Vec<&str> = version.split('.').collect();
    let numeric = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    if numbers.len() != 3
        || !numbers.iter().all(|n| numeric(n))
        || !numeric(abi)
        || flavour.is_empty()
        || flavour.starts_with('-')
        || flavour.ends_with('-')
        || !flavour
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid());
    }
    Ok(DebianRelease {
        release: release.to_owned(),
        series: format!("{}.{}", numbers[0], numbers[1]),
    })
}

/// `path` (absolute, or relative to the root) as a file or directory inside the target
/// root. Everything outside is refused with one message, whether it exists or not, so
/// that error messages tell nothing about files outside the root.
fn under_root(root: &Path, path: &str, what: &str) -> Result<PathBuf, TargetError> {
    let outside = || {
        TargetError::Invalid(format!(
            "{what}: only paths under the target root {} can be registered",
            root.display()
        ))
    };
    let given = Path::new(path.trim());
    if path.trim().is_empty() || path.len() > 4096 {
        return Err(TargetError::Invalid(format!("{what}: no path given")));
    }
    if given
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        return Err(outside());
    }
    let joined = if given.is_absolute() {
        given.to_owned()
    } else {
        root.join(given)
    };
    if !joined.starts_with(root) {
        return Err(outside());
    }
    // Symbolic links inside the root may not lead out of it.
    let real = joined.canonicalize().map_err(|_| {
        TargetError::Invalid(format!(
            "{what}: {} does not exist under the target root",
            given.display()
        ))
    })?;
    if !real.starts_with(root) {
        return Err(outside());
    }
    Ok(real)
}

/// Reads the facts of the image at `path`: refused with the reason when it is not a
/// kernel image with debug information.
fn inspect_image(path: &Path, shown: &str) -> Result<ImageFacts, TargetError> {
    let data = cache::map(path)
        .map_err(|e| TargetError::Invalid(format!("{shown}: cannot be read: {e}")))?;
    image::inspect(&data).map_err(|e| TargetError::Invalid(format!("{shown} {e}")))
}

/// Asks for a target to be registered for `user`; the job that does it is returned.
pub async fn request(
    db: &Database,
    settings: &TargetSettings,
    user: &SessionUser,
    request: TargetRequest,
) -> Result<QueuedRegistration, TargetError> {
    require_target_manager(user)?;
    request_as(db, settings, &user.username, request).await
}

/// [`request`] for `actor` (a user name, or `system` for the server's command line),
/// whose right to it the caller checked.
pub async fn request_as(
    db: &Database,
    settings: &TargetSettings,
    actor: &str,
    request: TargetRequest,
) -> Result<QueuedRegistration, TargetError> {
    let registration = match (&request.release, &request.vmlinux) {
        (Some(_), Some(_)) => {
            return Err(TargetError::Invalid(
                "give either a release (a Debian build) or a vmlinux (an in-house build), \
                 not both"
                    .into(),
            ))
        }
        (None, None) => {
            return Err(TargetError::Invalid(
                "give a release (a Debian build, e.g. 6.1.0-56-cloud-amd64) or a vmlinux \
                 (an in-house build under the target root)"
                    .into(),
            ))
        }
        (Some(release), None) => {
            let parsed = parse_debian_release(release.trim())?;
            let name = checked_name(request.name.as_deref().unwrap_or(&parsed.release))?;
            let package = format!("linux-image-{}-dbg", parsed.release);
            let known = tokio::task::spawn_blocking(move || apt_version(&package))
                .await
                .map_err(|e| TargetError::Server(format!("asking apt failed: {e}")))??;
            if known.is_none() {
                return Err(TargetError::NotFound(format!(
                    "the package archive has no linux-image-{}-dbg: is {} a release this \
                     distribution built?",
                    parsed.release, parsed.release
                )));
            }
            Registration::Debian {
                name,
                release: parsed.release,
                with_source: request.with_source,
                created_by: actor.to_owned(),
            }
        }
        (None, Some(vmlinux)) => {
            let Some(root) = &settings.paths_root else {
                return Err(TargetError::Invalid(
                    "in-house builds are registered only from under a root directory the \
                     admin configures (serve --target-root DIR), and none is configured"
                        .into(),
                ));
            };
            let root = root.canonicalize().map_err(|e| {
                TargetError::Server(format!("the target root {}: {e}", root.display()))
            })?;
            let vmlinux = under_root(&root, vmlinux, "vmlinux")?;
            let optional = |path: &Option<String>, what: &str| {
                path.as_deref()
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| under_root(&root, p, what))
                    .transpose()
            };
            let modules_dir = optional(&request.modules_dir, "modules_dir")?;
            let kbuild_dir = optional(&request.kbuild_dir, "kbuild_dir")?;
            let source_dir = optional(&request.source_dir, "source_dir")?;
            for (dir, what) in [
                (&modules_dir, "modules_dir"),
                (&kbuild_dir, "kbuild_dir"),
                (&source_dir, "source_dir"),
            ] {
                if dir.as_ref().is_some_and(|d| !d.is_dir()) {
                    return Err(TargetError::Invalid(format!("{what}: not a directory")));
                }
            }
            if !vmlinux.is_file() {
                return Err(TargetError::Invalid("vmlinux: not a file".into()));
            }
            let image = vmlinux.clone();
            let facts = tokio::task::spawn_blocking(move || inspect_image(&image, "vmlinux"))
                .await
                .map_err(|e| TargetError::Server(format!("reading the image failed: {e}")))??;
            let kernel_release = match (&request.kernel_release, facts.kernel_release) {
                (Some(given), Some(found)) if *given != found => {
                    return Err(TargetError::Invalid(format!(
                        "the image says it is release {found}, not {given}"
                    )))
                }
                (Some(given), _) => checked_name(given)?,
                (None, Some(found)) => found,
                (None, None) => {
                    return Err(TargetError::Invalid(
                        "the image has no `Linux version` banner: give kernel_release".into(),
                    ))
                }
            };
            if let Some(kbuild) = kbuild_dir.clone() {
                let release = kernel_release.clone();
                tokio::task::spawn_blocking(move || {
                    check_headers_release(&kbuild, &release, "the target")
                })
                .await
                .map_err(|e| TargetError::Server(format!("reading the headers failed: {e}")))?
                .map_err(|e| TargetError::Invalid(format!("kbuild_dir: {e}")))?;
            }
            let name = checked_name(request.name.as_deref().unwrap_or(&kernel_release))?;
            if let Some(existing) = db.target_named(&name, &facts.build_id).await? {
                return Err(TargetError::Conflict(format!(
                    "this build or name is registered already, as target {} (build-id {})",
                    existing.name, existing.build_id
                )));
            }
            Registration::Paths {
                name,
                kernel_release,
                vmlinux,
                modules_dir,
                kbuild_dir,
                source_dir,
                created_by: actor.to_owned(),
            }
        }
    };
    let name = match &registration {
        Registration::Debian { name, .. } | Registration::Paths { name, .. } => name.clone(),
    };
    if let Some(existing) = db.target_named(&name, "").await? {
        return Err(TargetError::Conflict(format!(
            "a target named {} is registered already (build-id {})",
            existing.name, existing.build_id
        )));
    }
    let payload = serde_json::to_value(&registration)
        .map_err(|e| TargetError::Server(format!("encoding the job: {e}")))?;
    let mut tx = db.begin().await?;
    let (job, new) = enqueue_job_in(
        &mut tx,
        &NewJob {
            kind: REGISTER.to_owned(),
            key: format!("{REGISTER}:{name}"),
            payload,
            max_attempts: 3,
            // A distribution kernel's debug package is 300-900 MB.
            timeout: Duration::from_secs(3600),
        },
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(QueuedRegistration { job, name, new })
}

/// The most targets one patch may name.
pub const MAX_TARGETS_PER_PATCH: usize = 64;

/// The ids of the active targets named `names` (none named: none, which means every
/// active target); an unknown or retired name is refused.
pub async fn resolve(db: &Database, names: &[String]) -> Result<Vec<i64>, TargetError> {
    if names.len() > MAX_TARGETS_PER_PATCH {
        return Err(TargetError::Invalid(format!(
            "at most {MAX_TARGETS_PER_PATCH} targets per patch"
        )));
    }
    let known = db.targets().await?;
    let mut ids = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let shown: String = name.chars().take(MAX_NAME + 1).collect();
        let target = known
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| TargetError::Invalid(format!("there is no target named `{shown}`")))?;
        if !target.is_active() {
            return Err(TargetError::Invalid(format!(
                "target `{shown}` is retired: it gets no new analyses"
            )));
        }
        if !ids.contains(&target.id) {
            ids.push(target.id);
        }
    }
    Ok(ids)
}

/// Retires target `id` for `user`: kept, with its analyses, but analysed for no more.
pub async fn retire(db: &Database, user: &SessionUser, id: i64) -> Result<Target, TargetError> {
    require_target_manager(user)?;
    retire_as(db, &user.username, id).await
}

/// [`retire`] for `actor`, whose right to it the caller checked.
pub async fn retire_as(db: &Database, actor: &str, id: i64) -> Result<Target, TargetError> {
    let mut tx = db.begin().await?;
    let target = db
        .target(id)
        .await?
        .ok_or_else(|| TargetError::NotFound(format!("target {id} not found")))?;
    if !targets::retire_target(&mut tx, id).await? {
        return Err(TargetError::Conflict(format!(
            "target {} is retired already",
            target.name
        )));
    }
    audit::append(
        &mut tx,
        actor,
        AuditAction::TargetRetired,
        &AuditSubject::Target(target.name.clone()),
        &serde_json::json!({ "build_id": target.build_id }),
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    db.target(id)
        .await?
        .ok_or_else(|| TargetError::NotFound(format!("target {id} not found")))
}

/// Queues a rebuild of target `id`'s index.
pub async fn request_reindex(
    db: &Database,
    user: &SessionUser,
    id: i64,
) -> Result<i64, TargetError> {
    require_target_manager(user)?;
    let target = db
        .target(id)
        .await?
        .ok_or_else(|| TargetError::NotFound(format!("target {id} not found")))?;
    if !target.is_active() {
        return Err(TargetError::Conflict(format!(
            "target {} is retired",
            target.name
        )));
    }
    let (job, _) = db
        .enqueue_job(&NewJob {
            kind: REINDEX.to_owned(),
            key: format!("{REINDEX}:{id}"),
            payload: serde_json::json!({ "target": id, "requested_by": user.username }),
            max_attempts: 3,
            timeout: Duration::from_secs(3600),
        })
        .await?;
    Ok(job)
}

// ---- pages ----

pub(crate) fn job_summary(job: crate::store::jobs::Job) -> graftbench_app::model::JobSummary {
    let label = match job.kind.as_str() {
        REGISTER => format!(
            "register {}",
            job.key
                .strip_prefix(&format!("{REGISTER}:"))
                .unwrap_or(&job.key)
        ),
        REINDEX => "rebuild the index".to_owned(),
        other => other.to_owned(),
    };
    graftbench_app::model::JobSummary {
        id: job.id,
        kind: job.kind,
        label,
        state: job.state.as_str().to_owned(),
        phase: job.phase,
        progress: job.progress,
        attempts: job.attempts,
        max_attempts: job.max_attempts,
        error: job.error,
        updated_at: job.updated_at,
    }
}

fn target_summary(target: Target, analyses: i64) -> graftbench_app::model::TargetSummary {
    graftbench_app::model::TargetSummary {
        id: target.id,
        name: target.name,
        kernel_release: target.kernel_release,
        origin: target.origin,
        package_version: target.package_version,
        arch: target.arch,
        build_id: target.build_id,
        compiler: target.compiler,
        vmlinux: target.vmlinux,
        modules_dir: target.modules_dir,
        kbuild_dir: target.kbuild_dir,
        source_dir: target.source_dir,
        objects: target.objects,
        functions: target.functions,
        inline_sites: target.inline_sites,
        clones: target.clones,
        index_bytes: target.index_bytes,
        disk_bytes: target.disk_bytes,
        indexed_at: target.indexed_at,
        created_by: target.created_by,
        created_at: target.created_at,
        retired_at: target.retired_at,
        analyses,
    }
}

fn can_manage(user: &SessionUser) -> bool {
    require_target_manager(user).is_ok()
}

/// The targets page for `user`.
pub async fn targets_page(
    db: &Database,
    target_root: Option<&Path>,
    user: &SessionUser,
) -> Result<graftbench_app::model::TargetsPage, DbError> {
    let counts = db.analyses_per_target().await?;
    let targets = db
        .targets()
        .await?
        .into_iter()
        .map(|t| {
            let n = counts.get(&t.id).copied().unwrap_or(0);
            target_summary(t, n)
        })
        .collect();
    let registrations = db
        .jobs_with_key_prefix(&format!("{REGISTER}:"), 20)
        .await?
        .into_iter()
        .filter(|j| j.state != crate::store::jobs::JobState::Done)
        .map(job_summary)
        .collect();
    Ok(graftbench_app::model::TargetsPage {
        targets,
        registrations,
        can_manage: can_manage(user),
        target_root: target_root.map(path_text),
    })
}

/// A target's registration and index jobs, newest first.
pub async fn target_jobs(db: &Database, target: &Target) -> Result<Vec<Job>, DbError> {
    // Its own keys exactly (a prefix of `target.reindex:1` also matches target 12's).
    let mut jobs = Vec::new();
    for key in [
        format!("{REINDEX}:{}", target.id),
        format!("{REGISTER}:{}", target.name),
    ] {
        jobs.extend(
            db.jobs_with_key_prefix(&key, 20)
                .await?
                .into_iter()
                .filter(|j| j.key == key),
        );
    }
    jobs.sort_by_key(|j| std::cmp::Reverse(j.id));
    Ok(jobs)
}

/// The page of the target named `name`, if there is one.
pub async fn target_page(
    db: &Database,
    user: &SessionUser,
    name: &str,
) -> Result<Option<graftbench_app::model::TargetPage>, DbError> {
    let Some(target) = db.target_named(name, "").await? else {
        return Ok(None);
    };
    let jobs = target_jobs(db, &target).await?;
    let analyses = db
        .analyses_per_target()
        .await?
        .get(&target.id)
        .copied()
        .unwrap_or(0);
    Ok(Some(graftbench_app::model::TargetPage {
        target: target_summary(target, analyses),
        jobs: jobs.into_iter().map(job_summary).collect(),
        can_manage: can_manage(user),
    }))
}

// ---- apt ----

/// Runs `command` to its end, or kills it when the job is left (a download or an unpack
/// can take minutes): its standard output, or an error with its standard error.
fn run(command: &mut Command, progress: &Progress) -> Result<String, String> {
    run_reading(command, Stdio::null(), progress)
}

/// [`run`] with `stdin` as the command's standard input.
fn run_reading(command: &mut Command, stdin: Stdio, progress: &Progress) -> Result<String, String> {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{shown}: {e}"))?;
    // Both pipes are drained as the command runs: one that fills a pipe would otherwise
    // never end.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<_>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<_>));
    let status = wait_unless_stopped(&mut child, progress).map_err(|e| format!("{shown}: {e}"))?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    } else {
        Err(format!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&stderr).trim()
        ))
    }
}

/// Waits for `child`, killing it when the job is left.
fn wait_unless_stopped(
    child: &mut std::process::Child,
    progress: &Progress,
) -> Result<std::process::ExitStatus, String> {
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        if progress.stopped() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(super::worker::STOPPED.to_owned());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The candidate version of `package` in the archive apt knows, if it has one.
fn apt_version(package: &str) -> Result<Option<String>, TargetError> {
    apt_field(package, "Version")
}

/// Field `field` of `package`'s candidate record.
fn apt_field(package: &str, field: &str) -> Result<Option<String>, TargetError> {
    let out = Command::new("apt-cache")
        .args(["show", "--no-all-versions", package])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TargetError::Server(format!("running apt-cache: {e}")))?;
    if !out.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{field}: ");
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|v| v.trim().to_owned()))
}

/// Downloads `package=version` into `dir`: the .deb's path. Always a fresh download,
/// verified by apt against the archive's signed index; a .deb left in `dir` by an
/// earlier run is not trusted.
fn apt_download(
    package: &str,
    version: &str,
    dir: &Path,
    progress: &Progress,
) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // Into a directory of its own: a download that was killed never looks finished.
    let partial = tempfile::tempdir_in(dir)
        .map_err(|e| format!("creating a directory in {}: {e}", dir.display()))?;
    run(
        Command::new("apt-get")
            .args(["download", "-q", &format!("{package}={version}")])
            .current_dir(partial.path()),
        progress,
    )?;
    let downloaded = std::fs::read_dir(partial.path())
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| format!("apt-get download {package}={version} left no .deb"))?;
    let name = downloaded
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default();
    let placed = dir.join(&name);
    std::fs::rename(&downloaded, &placed)
        .map_err(|e| format!("placing {}: {e}", name.display()))?;
    Ok(placed)
}

/// Fails with the reason when the file system holding `dir` has less than `needed`
/// bytes free (asked of `df`, which every Debian system has).
fn check_free_space(dir: &Path, needed: u64) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let out = run(
        Command::new("df").args(["--output=avail", "-B1"]).arg(dir),
        &Progress::detached(),
    )?;
    let free: u64 = out
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("df gave no free space for {}", dir.display()))?;
    if free < needed {
        return Err(format!(
            "not enough disk space: {:.1} GB free in {}, the registration needs about {:.1} GB",
            free as f64 / 1e9,
            dir.display(),
            needed as f64 / 1e9
        ));
    }
    Ok(())
}

/// Holds an exclusive lock on `path` (created when missing) until dropped: one fetch of
/// the download cache at a time, across processes.
struct CacheLock(#[allow(dead_code)] std::fs::File);

impl CacheLock {
    fn take(path: &Path) -> Result<CacheLock, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        file.lock()
            .map_err(|e| format!("locking {}: {e}", path.display()))?;
        Ok(CacheLock(file))
    }
}

/// Unpacks the members `members` (all when empty) of a .deb's file tree into `dir`.
fn unpack_deb(deb: &Path, dir: &Path, members: &[&str], progress: &Progress) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("running dpkg-deb: {e}"))?;
    let stdout = dpkg
        .stdout
        .take()
        .ok_or_else(|| "dpkg-deb gave no output".to_owned())?;
    let tar = run_reading(
        Command::new("tar")
            .args(["-x", "--no-same-owner", "-C"])
            .arg(dir)
            .args(members),
        Stdio::from(stdout),
        progress,
    );
    // tar gone (done, failed or killed), dpkg-deb ends on its broken pipe.
    let dpkg_status =
        wait_unless_stopped(&mut dpkg, progress).map_err(|e| format!("dpkg-deb: {e}"))?;
    tar.map_err(|e| format!("unpacking {}: {e}", deb.display()))?;
    if !dpkg_status.success() {
        return Err(format!("unpacking {}: dpkg-deb failed", deb.display()));
    }
    Ok(())
}

/// Hard-links the tree `from` to `to` (copies where links cannot be made, e.g. across
/// file systems): the data directory gets the build without a second copy on disk.
fn link_tree(from: &Path, to: &Path, progress: &Progress) -> Result<(), String> {
    let linked = run(Command::new("cp").arg("-al").arg(from).arg(to), progress);
    if linked.is_ok() {
        return Ok(());
    }
    progress.check()?;
    let _ = std::fs::remove_dir_all(to);
    run(Command::new("cp").arg("-a").arg(from).arg(to), progress).map(drop)
}

/// Bytes in the files under `dir` that are its own: files hard-linked from the download
/// cache take no space of their own and are not counted.
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => {
                    total += entry
                        .metadata()
                        .ok()
                        .filter(|m| m.nlink() == 1)
                        .map_or(0, |m| m.len())
                }
                _ => {}
            }
        }
    }
    total
}

/// A Debian build fetched into the cache: its files and versions.
struct FetchedDebian {
    /// The cache directory of the release.
    dir: PathBuf,
    /// The image's package version.
    version: String,
    /// Relative to `dir`.
    vmlinux: PathBuf,
    /// Relative to `dir`: the headers directory out-of-tree modules build against.
    kbuild: PathBuf,
    /// The source, when fetched.
    source: Option<CachedSource>,
}

/// A source tree in the download cache.
struct CachedSource {
    /// The tree.
    tree: PathBuf,
    /// Its identifier index (built on first use).
    identifiers: PathBuf,
    /// Where it goes in a target's directory.
    relative: PathBuf,
}

/// Whether `package=version` can still be downloaded.
fn apt_download_available(package: &str, version: &str) -> bool {
    Command::new("apt-cache")
        .args(["show", &format!("{package}={version}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Fetches (once; the cache keeps it) the debug image, the headers (with their common and
/// kbuild packages) and, when asked, the source of `release` into the cache.
fn fetch_debian(
    cache: &Path,
    release: &DebianRelease,
    with_source: bool,
    progress: &Progress,
) -> Result<FetchedDebian, String> {
    let rel = &release.release;
    // Two registrations of one release (or one source package) would tear each other's
    // half-unpacked files: one fetch at a time.
    let _lock = CacheLock::take(&cache.join("debian").join(".lock"))?;
    let dir = cache.join("debian").join(rel);
    // The debug image unpacks to about twice its package, the source tree to 1.5 GB:
    // refuse at the start rather than fail half-way with a full disk.
    let needed: u64 = if with_source { 5 << 30 } else { 2 << 30 };
    if !dir.join(format!("vmlinux-{rel}")).is_file() || with_source {
        check_free_space(cache, needed)?;
    }
    let debs = cache.join("debian").join("debs");
    let image_package = format!("linux-image-{rel}-dbg");
    let version = apt_version(&image_package)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the package archive has no {image_package}"))?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;

    let vmlinux = PathBuf::from(format!("vmlinux-{rel}"));
    if !dir.join(&vmlinux).is_file() {
        progress.set("downloading the debug image", 0.0);
        let deb = apt_download(&image_package, &version, &debs, progress)?;
        progress.set("unpacking the debug image", 0.3);
        let member = format!("./usr/lib/debug/boot/vmlinux-{rel}");
        let part = dir.join("image.part");
        let _ = std::fs::remove_dir_all(&part);
        unpack_deb(&deb, &part, &[&member], progress)?;
        // A regular file, not a link to something else on this machine.
        let unpacked = part.join(&member);
        if !std::fs::symlink_metadata(&unpacked).is_ok_and(|m| m.is_file()) {
            return Err(format!("{image_package} has no regular file {member}"));
        }
        std::fs::rename(&unpacked, dir.join(&vmlinux))
            .map_err(|e| format!("placing the image: {e}"))?;
        let _ = std::fs::remove_dir_all(&part);
        let _ = std::fs::remove_file(&deb);
    }

    let kbuild = PathBuf::from(format!("headers/usr/src/linux-headers-{rel}"));
    if !dir.join(&kbuild).is_dir() {
        progress.set("fetching the headers", 0.4);
        let headers_package = format!("linux-headers-{rel}");
        let headers_version = apt_version(&headers_package)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the package archive has no {headers_package}"))?;
        if headers_version != version {
            return Err(format!(
                "{headers_package} is version {headers_version} but the image is {version}: \
                 the headers would not match the build"
            ));
        }
        // The headers link `scripts` and `tools` into the kbuild package and include the
        // common headers; `apt-get download` fetches no dependencies, so name them.
        let depends = apt_field(&headers_package, "Depends")
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let mut packages = vec![(headers_package.clone(), headers_version.clone())];
        for dependency in depends.split(',').map(str::trim) {
            let name = dependency.split_whitespace().next().unwrap_or_default();
            if name.starts_with("linux-headers-") || name.starts_with("linux-kbuild-") {
                // kbuild is `>=` the headers: the archive may have only a newer one.
                let pinned = if dependency.contains("(= ") {
                    headers_version.clone()
                } else {
                    apt_version(name)
                        .map_err(|e| e.to_string())?
                        .ok_or_else(|| format!("the package archive has no {name}"))?
                };
                packages.push((name.to_owned(), pinned));
            }
        }
        let part = dir.join("headers.part");
        let _ = std::fs::remove_dir_all(&part);
        for (package, version) in &packages {
            let deb = apt_download(package, version, &debs, progress)?;
            unpack_deb(&deb, &part, &[], progress)?;
            let _ = std::fs::remove_file(&deb);
        }
        check_headers_release(
            &part.join(format!("usr/src/linux-headers-{rel}")),
            rel,
            "the image",
        )?;
        let _ = std::fs::remove_dir_all(dir.join("headers"));
        std::fs::rename(&part, dir.join("headers"))
            .map_err(|e| format!("placing the headers: {e}"))?;
    }

    // The source package is the same for every flavour of a version (amd64, cloud, rt):
    // it is unpacked once per package version, beside the releases.
    let source = if with_source {
        let package = format!("linux-source-{}", release.series);
        // The source of the image's own version when the archive still has it.
        let source_version = if apt_download_available(&package, &version) {
            version.clone()
        } else {
            let newest = apt_version(&package)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("the package archive has no {package}"))?;
            tracing::warn!(%package, %newest, image = %version, "the image's source version is gone; using the newest");
            newest
        };
        let shared = cache
            .join("debian")
            .join("sources")
            .join(format!("{package}_{source_version}"));
        if !shared.join(&package).is_dir() {
            progress.set("fetching the source", 0.45);
            let deb = apt_download(&package, &source_version, &debs, progress)?;
            let part = shared.with_extension("part");
            let _ = std::fs::remove_dir_all(&part);
            let tarball = format!("./usr/src/{package}.tar.xz");
            unpack_deb(&deb, &part, &[&tarball], progress)?;
            let _ = std::fs::remove_file(&deb);
            run(
                Command::new("tar")
                    .args(["-xJf"])
                    .arg(part.join(&tarball))
                    .arg("-C")
                    .arg(&part),
                progress,
            )?;
            let _ = std::fs::remove_dir_all(part.join("usr"));
            let _ = std::fs::remove_dir_all(&shared);
            std::fs::rename(&part, &shared).map_err(|e| format!("placing the source: {e}"))?;
        }
        Some(CachedSource {
            tree: shared.join(&package),
            identifiers: shared.join("source.gbsrc"),
            relative: PathBuf::from("source").join(&package),
        })
    } else {
        None
    };
    Ok(FetchedDebian {
        dir,
        version,
        vmlinux,
        kbuild,
        source,
    })
}

/// Checks that the kernel headers (kbuild directory) `kbuild` are for `release`: modules
/// built against other headers would not load, or worse, load with another layout.
/// Debian's `include/config/kernel.release` holds the upstream version (6.1.192); the
/// release modules are built for is `UTS_RELEASE`.
fn check_headers_release(kbuild: &Path, release: &str, against: &str) -> Result<(), String> {
    use std::io::Read;
    let uts_file = kbuild.join("include/generated/utsrelease.h");
    // A regular file of a few bytes: not a link out of the directory (or to a device or
    // a pipe), read at most 4 KiB; the error does not say what else is there.
    let missing = || "the headers have no include/generated/utsrelease.h file".to_owned();
    if !std::fs::symlink_metadata(&uts_file).is_ok_and(|m| m.is_file()) {
        return Err(missing());
    }
    let mut uts = String::new();
    std::fs::File::open(&uts_file)
        .and_then(|file| file.take(4096).read_to_string(&mut uts))
        .map_err(|_| missing())?;
    let headers_release = uts
        .lines()
        .find_map(|line| line.trim().strip_prefix("#define UTS_RELEASE"))
        .and_then(|value| value.split('"').nth(1))
        .ok_or("the headers' include/generated/utsrelease.h defines no UTS_RELEASE")?;
    if headers_release != release {
        return Err(format!(
            "the headers are for release {headers_release} but {against} is {release}"
        ));
    }
    Ok(())
}

// ---- indexing ----

/// Counts what an index holds.
fn counts(index: &analyzer::index::KernelIndex, index_bytes: u64) -> IndexCounts {
    let sum = |f: &dyn Fn(&analyzer::index::ObjectIndex) -> usize| -> i64 {
        index.objects.iter().map(f).sum::<usize>() as i64
    };
    IndexCounts {
        index_bytes: index_bytes as i64,
        objects: index.objects.len() as i64,
        functions: sum(&|o| o.functions.iter().filter(|f| f.defined).count()),
        inline_sites: sum(&|o| o.inline_sites.len()),
        clones: sum(&|o| o.symbols.functions.iter().filter(|s| s.is_clone()).count()),
    }
}

/// Builds the index of `vmlinux` (and modules) at `index_path`, reporting progress.
fn build_index(
    vmlinux: &Path,
    modules: Option<&Path>,
    index_path: &Path,
    progress: &Progress,
    from: f64,
) -> Result<IndexCounts, String> {
    let build = KernelBuild::new(vmlinux, modules).map_err(|e| e.to_string())?;
    let span = 1.0 - from;
    let stop = || progress.stopped();
    let (index, _) = cache::load_until(
        index_path,
        &build,
        true,
        cache::Objects::All,
        &|p| {
            let fraction = if p.total == 0 {
                0.0
            } else {
                p.done as f64 / p.total as f64
            };
            progress.set("indexing", from + span * fraction);
            hold_for_tests("indexing", progress);
        },
        &stop,
    )
    .map_err(|e| match e {
        cache::CacheError::Stopped => super::worker::STOPPED.to_owned(),
        other => other.to_string(),
    })?;
    progress.check()?;
    let bytes = std::fs::metadata(index_path).map_or(0, |m| m.len());
    let counted = counts(&index, bytes);
    // Hundreds of thousands of small allocations, freed on another thread.
    std::thread::spawn(move || drop(index));
    Ok(counted)
}

/// Builds the identifier index of the source tree `source` at `out` (what follows a
/// changed macro to the code that expands it), reporting progress.
fn build_source_index(source: &Path, out: &Path, progress: &Progress) -> Result<(), String> {
    let index = analyzer::source::SourceIndex::build_until(
        source,
        &|done, total| {
            let fraction = if total == 0 {
                0.0
            } else {
                done as f64 / total as f64
            };
            progress.set("indexing the source", fraction);
        },
        &|| progress.stopped(),
    )
    .map_err(|e| match e {
        analyzer::source::SourceError::Stopped => super::worker::STOPPED.to_owned(),
        other => format!("indexing the source {}: {other}", source.display()),
    })?;
    progress.check()?;
    cache::write_atomically(out, &index.to_bytes()).map_err(|e| e.to_string())
}

/// Tests stop a worker in the middle of a phase to kill it there, or to cancel the job
/// there: with the `test-hooks` feature, `GRAFTBENCH_TEST_HOLD_PHASE=indexing` makes this
/// thread wait (the heartbeat goes on) once the phase is reached, until the worker leaves
/// the job. Without the feature it is nothing.
fn hold_for_tests(phase: &str, progress: &Progress) {
    #[cfg(feature = "test-hooks")]
    if std::env::var("GRAFTBENCH_TEST_HOLD_PHASE").is_ok_and(|p| p == phase) {
        tracing::warn!(phase, "held for a test (GRAFTBENCH_TEST_HOLD_PHASE)");
        while !progress.stopped() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    #[cfg(not(feature = "test-hooks"))]
    let _ = (phase, progress);
}

/// Target `id`, for a job about it: gone is the job's error.
pub async fn target_for_job(db: &Database, id: i64) -> Result<Target, String> {
    db.target(id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("target {id} is gone"))
}

/// Checks that an in-house target's files are still under the target root (they may
/// have been replaced by links since they were registered); a distribution target's
/// files are in the data directory.
pub fn check_files(settings: &TargetSettings, target: &Target) -> Result<(), String> {
    if target.origin == "debian" {
        return Ok(());
    }
    still_under_root(
        settings,
        [
            Some(&target.vmlinux),
            target.modules_dir.as_ref(),
            target.source_dir.as_ref(),
            target.kbuild_dir.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(Path::new),
    )
}

/// Checks, on the worker, that each of `paths` resolves (links followed) under the target
/// root: files may be replaced by links between a request and its job, or after.
fn still_under_root<'p>(
    settings: &TargetSettings,
    paths: impl IntoIterator<Item = &'p Path>,
) -> Result<(), String> {
    let root = settings
        .paths_root
        .as_ref()
        .and_then(|r| r.canonicalize().ok())
        .ok_or("no target root is configured on this worker (--target-root)")?;
    for path in paths {
        let real = path
            .canonicalize()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !real.starts_with(&root) {
            return Err(format!("{} is not under the target root", path.display()));
        }
    }
    Ok(())
}

/// Removes a directory when dropped unless kept: a failed registration leaves no files.
struct Partial(Option<PathBuf>);

impl Partial {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing a failed registration's files");
                }
            }
        }
    }
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

/// Registers a build: fetched or checked, indexed, moved into place.
fn register(
    settings: &TargetSettings,
    job_id: i64,
    attempt: i64,
    registration: Registration,
    existing: &dyn Fn(&str) -> bool,
    progress: &Progress,
) -> Result<NewTarget, String> {
    let targets = settings.targets_dir();
    // One directory per attempt: an attempt that timed out may still be running.
    let partial_dir = targets.join(format!(".partial-{job_id}-{attempt}"));
    // Earlier attempts' files go: this attempt is the job's now (one still running
    // after its timeout finds its directory gone and fails; it can no longer record).
    for earlier in 1..=attempt {
        let _ = std::fs::remove_dir_all(targets.join(format!(".partial-{job_id}-{earlier}")));
    }
    std::fs::create_dir_all(&partial_dir)
        .map_err(|e| format!("creating {}: {e}", partial_dir.display()))?;
    let partial = Partial(Some(partial_dir.clone()));
    let report = |phase: &str, fraction: f64| -> Result<(), String> {
        progress.check()?;
        progress.set(phase, fraction);
        Ok(())
    };
    struct Files {
        vmlinux: PathBuf,
        modules: Option<PathBuf>,
        kbuild: Option<PathBuf>,
        source: Option<PathBuf>,
        /// Whether the files live under the target's directory (moved with it).
        inside: bool,
        /// Where the download cache keeps the source's identifier index.
        cached_source_index: Option<PathBuf>,
    }
    let (name, kernel_release, origin, package_version, created_by, files) = match registration {
        Registration::Debian {
            name,
            release,
            with_source,
            created_by,
        } => {
            let parsed = parse_debian_release(&release).map_err(|e| e.to_string())?;
            let fetched = fetch_debian(&settings.cache_dir, &parsed, with_source, progress)?;
            report("placing the files", 0.5)?;
            let dest = |relative: &Path| partial_dir.join(relative);
            std::fs::hard_link(fetched.dir.join(&fetched.vmlinux), dest(&fetched.vmlinux))
                .or_else(|_| {
                    std::fs::copy(fetched.dir.join(&fetched.vmlinux), dest(&fetched.vmlinux))
                        .map(drop)
                })
                .map_err(|e| format!("placing the image: {e}"))?;
            link_tree(
                &fetched.dir.join("headers"),
                &partial_dir.join("headers"),
                progress,
            )?;
            if let Some(source) = &fetched.source {
                let into = partial_dir.join(&source.relative);
                if let Some(parent) = into.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("creating {}: {e}", parent.display()))?;
                }
                link_tree(&source.tree, &into, progress)?;
            }
            (
                name,
                release,
                "debian",
                fetched.version,
                created_by,
                Files {
                    vmlinux: fetched.vmlinux,
                    modules: None,
                    kbuild: Some(fetched.kbuild),
                    cached_source_index: fetched.source.as_ref().map(|s| s.identifiers.clone()),
                    source: fetched.source.map(|s| s.relative),
                    inside: true,
                },
            )
        }
        Registration::Paths {
            name,
            kernel_release,
            vmlinux,
            modules_dir,
            kbuild_dir,
            source_dir,
            created_by,
        } => {
            // Checked again: the files may have changed since the request.
            still_under_root(
                settings,
                [
                    Some(&vmlinux),
                    modules_dir.as_ref(),
                    kbuild_dir.as_ref(),
                    source_dir.as_ref(),
                ]
                .into_iter()
                .flatten()
                .map(PathBuf::as_path),
            )?;
            (
                name,
                kernel_release,
                "paths",
                String::new(),
                created_by,
                Files {
                    vmlinux,
                    modules: modules_dir,
                    kbuild: kbuild_dir,
                    source: source_dir,
                    inside: false,
                    cached_source_index: None,
                },
            )
        }
    };
    let absolute = |p: &Path| -> PathBuf {
        if files.inside {
            partial_dir.join(p)
        } else {
            p.to_owned()
        }
    };
    let vmlinux = absolute(&files.vmlinux);
    report("reading the image", 0.5)?;
    let facts = inspect_image(&vmlinux, "the image").map_err(|e| e.to_string())?;
    if existing(&facts.build_id) {
        return Err(format!(
            "build {} is registered already as another target",
            facts.build_id
        ));
    }
    if let Some(found) = &facts.kernel_release {
        if found != &kernel_release {
            return Err(format!(
                "the image says it is release {found}, not {kernel_release}"
            ));
        }
    }
    if origin == "paths" {
        if let Some(kbuild) = &files.kbuild {
            check_headers_release(kbuild, &kernel_release, "the target")?;
        }
    }
    let index_in_partial = partial_dir.join("index.gbindex");
    let counts = build_index(
        &vmlinux,
        files.modules.as_deref().map(absolute).as_deref(),
        &index_in_partial,
        progress,
        0.5,
    )?;
    if let Some(source) = &files.source {
        let wanted = super::analysis_queue::source_index_path(&index_in_partial);
        match &files.cached_source_index {
            // A distribution's source tree is the same for every registration of the
            // release: its identifier index is built once, in the cache, and linked.
            Some(cached) => {
                if !cached.is_file() {
                    build_source_index(&absolute(source), cached, progress)?;
                }
                std::fs::hard_link(cached, &wanted)
                    .or_else(|_| std::fs::copy(cached, &wanted).map(drop))
                    .map_err(|e| format!("placing the source index: {e}"))?;
            }
            None => build_source_index(&absolute(source), &wanted, progress)?,
        }
    }
    report("placing the files", 1.0)?;
    let final_dir = targets.join(&facts.build_id);
    if final_dir.parent() != Some(targets.as_path()) {
        return Err(format!(
            "build-id {:?} does not name a directory",
            facts.build_id
        ));
    }
    // Never removed here: another registration of the same build may have just moved
    // its files in and not yet written its row.
    if final_dir.exists() {
        return Err(format!(
            "files for build {} are in place already ({}): it is registered, or being \
             registered, by another job; if neither, a registration died between moving its \
             files and writing its row, and the directory can be removed",
            facts.build_id,
            final_dir.display()
        ));
    }
    let disk = disk_bytes(&partial_dir) as i64;
    std::fs::rename(&partial_dir, &final_dir)
        .map_err(|e| format!("moving the target into place: {e}"))?;
    partial.keep();
    let placed = |p: &Path| -> String {
        if files.inside {
            path_text(&final_dir.join(p))
        } else {
            path_text(p)
        }
    };
    Ok(NewTarget {
        name,
        build_id: facts.build_id,
        kernel_release,
        origin: origin.to_owned(),
        package_version,
        arch: facts.arch,
        compiler: facts.producer.unwrap_or_default(),
        vmlinux: placed(&files.vmlinux),
        modules_dir: files.modules.as_deref().map(placed),
        kbuild_dir: files.kbuild.as_deref().map(placed),
        source_dir: files.source.as_deref().map(placed),
        index_path: path_text(&final_dir.join("index.gbindex")),
        counts,
        disk_bytes: disk,
        created_by,
    })
}

/// The registration job.
pub struct RegisterHandler {
    /// Where targets go.
    pub settings: Arc<TargetSettings>,
    /// To check for a build registered meanwhile.
    pub db: Database,
}

impl JobHandler for RegisterHandler {
    fn kind(&self) -> &'static str {
        REGISTER
    }

    fn run(
        &self,
        job: Job,
        progress: Progress,
    ) -> BoxFuture<'static, Result<serde_json::Value, String>> {
        let settings = Arc::clone(&self.settings);
        let db = self.db.clone();
        let failed = job.clone();
        Box::pin(async move {
            let redactor = Arc::clone(&settings);
            let outcome = async move {
                let registration: Registration = super::worker::payload(&job)?;
                let known: Vec<String> = db
                    .targets()
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|t| t.build_id)
                    .collect();
                let registered = tokio::task::spawn_blocking(move || {
                    register(
                        &settings,
                        job.id,
                        job.attempts,
                        registration,
                        &|id| known.iter().any(|k| k == id),
                        &progress,
                    )
                })
                .await
                .map_err(|e| format!("the registration stopped: {e}"))??;
                serde_json::to_value(&registered).map_err(|e| e.to_string())
            }
            .await;
            outcome.map_err(|e| redactor.job_error(&failed, e))
        })
    }

    fn record<'a>(
        &'a self,
        tx: &'a mut Tx,
        _job: &'a Job,
        result: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            // The job's result is the row to insert.
            let r: NewTarget = serde_json::from_value(result.clone()).map_err(|e| e.to_string())?;
            let id = targets::insert_target(tx, &r)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!(
                        "a target named {} or with build-id {} exists",
                        r.name, r.build_id
                    )
                })?;
            audit::append(
                tx,
                &r.created_by,
                AuditAction::TargetAdded,
                &AuditSubject::Target(r.name.clone()),
                &serde_json::json!({
                    "target": id,
                    "build_id": r.build_id,
                    "kernel_release": r.kernel_release,
                    "origin": r.origin,
                    "package_version": r.package_version,
                    "functions": r.counts.functions,
                }),
            )
            .await
            .map_err(|e| e.to_string())?;
            super::analysis_queue::queue_for_target(tx, id)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// The job that builds a target's index again.
pub struct ReindexHandler {
    /// The store, to read the target.
    pub db: Database,
    /// The target root in-house builds must still be under.
    pub settings: Arc<TargetSettings>,
}

#[derive(Debug, Deserialize)]
struct ReindexPayload {
    target: i64,
    requested_by: String,
}

impl JobHandler for ReindexHandler {
    fn kind(&self) -> &'static str {
        REINDEX
    }

    fn run(
        &self,
        job: Job,
        progress: Progress,
    ) -> BoxFuture<'static, Result<serde_json::Value, String>> {
        let db = self.db.clone();
        let settings = Arc::clone(&self.settings);
        let failed = job.clone();
        Box::pin(async move {
            let redactor = Arc::clone(&settings);
            let outcome = async move {
            let payload: ReindexPayload = super::worker::payload(&job)?;
            let target = target_for_job(&db, payload.target).await?;
            let counts = tokio::task::spawn_blocking(move || {
                check_files(&settings, &target)?;
                // The image must still be the build the target names.
                let facts = inspect_image(Path::new(&target.vmlinux), "the image")
                    .map_err(|e| e.to_string())?;
                if facts.build_id != target.build_id {
                    return Err(format!(
                        "{} is now build {}, not the target's {}: register it as a target of its own",
                        target.vmlinux, facts.build_id, target.build_id
                    ));
                }
                // Built beside the old index and renamed over it: analyses read the old
                // one until then.
                let index_path = Path::new(&target.index_path);
                let counts = build_index(
                    Path::new(&target.vmlinux),
                    target.modules_dir.as_deref().map(Path::new),
                    index_path,
                    &progress,
                    0.0,
                )?;
                // The source does not change with the index: its identifier index is
                // built again only when it is missing.
                let source_index = super::analysis_queue::source_index_path(index_path);
                if let Some(source) = target
                    .source_dir
                    .as_ref()
                    .filter(|_| !source_index.is_file())
                {
                    build_source_index(Path::new(source), &source_index, &progress)?;
                }
                Ok::<_, String>(counts)
            })
            .await
            .map_err(|e| format!("indexing stopped: {e}"))??;
            Ok(serde_json::json!({ "counts": counts }))
            }
            .await;
            outcome.map_err(|e| redactor.job_error(&failed, e))
        })
    }

    fn record<'a>(
        &'a self,
        tx: &'a mut Tx,
        job: &'a Job,
        result: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let payload: ReindexPayload = super::worker::payload(job)?;
            let counts: IndexCounts =
                serde_json::from_value(result["counts"].clone()).map_err(|e| e.to_string())?;
            let target = target_for_job(&self.db, payload.target).await?;
            targets::store_reindexed(tx, target.id, &counts, target.disk_bytes)
                .await
                .map_err(|e| e.to_string())?;
            audit::append(
                tx,
                &payload.requested_by,
                AuditAction::TargetReindexed,
                &AuditSubject::Target(target.name.clone()),
                &serde_json::json!({
                    "target": target.id,
                    "build_id": target.build_id,
                    "functions": counts.functions,
                    "job": job.id,
                }),
            )
            .await
            .map_err(|e| e.to_string())?;
            super::analysis_queue::queue_for_target(tx, target.id)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Removes what registrations that are no longer running left in `DATA_DIR/targets`
/// (a worker killed mid-way): `.partial-JOB` directories whose job is not queued or
/// running.
pub async fn sweep_partial(db: &Database, settings: &TargetSettings) -> Result<(), DbError> {
    let Ok(entries) = std::fs::read_dir(settings.targets_dir()) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_prefix(".partial-"))
            .and_then(|n| n.split('-').next())
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        let active = db.job(id).await?.is_some_and(|job| {
            matches!(
                job.state,
                crate::store::jobs::JobState::Queued | crate::store::jobs::JobState::Running
            )
        });
        if !active {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_strings_are_checked_before_apt_sees_them() {
        let ok = parse_debian_release("6.1.0-56-cloud-amd64").unwrap();
        assert_eq!(ok.series, "6.1");
        assert!(parse_debian_release("6.1.0-56-amd64").is_ok());
        for bad in [
            "",
            "6.1.0",
            "6.1.0-56",
            "6.1.0-56-",
            "6.1-56-amd64",
            "6.1.0-x-amd64",
            "6.1.0-56-AMD64",
            "6.1.0-56-amd64 --yes",
            "6.1.0-56-amd64;rm",
            "-6.1.0-56-amd64",
            "6.1.0-56-amd64/../x",
            &"6.1.0-56-".repeat(20),
        ] {
            assert!(parse_debian_release(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_outside_the_root_are_refused_alike_whether_they_exist_or_not() {
        let root = tempfile::tempdir().unwrap();
        let root_path = root.path().canonicalize().unwrap();
        std::fs::write(root_path.join("vmlinux"), b"x").unwrap();
        assert!(under_root(&root_path, "vmlinux", "vmlinux").is_ok());
        let outside = |p: &str| {
            under_root(&root_path, p, "vmlinux")
                .unwrap_err()
                .to_string()
        };
        let existing = outside("/etc/passwd");
        let missing = outside("/etc/no-such-file");
        assert_eq!(existing, missing);
        assert!(existing.contains("only paths under the target root"));
        assert_eq!(outside("../../etc/passwd"), existing);
        std::os::unix::fs::symlink("/etc/passwd", root_path.join("link")).unwrap();
        assert_eq!(outside("link"), existing);
        assert!(outside("nothing-here").contains("does not exist under the target root"));
    }

    #[test]
    fn a_registration_that_would_fill_the_disk_is_refused_before_it_starts() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_free_space(dir.path(), 0).is_ok());
        let refused = check_free_space(dir.path(), u64::MAX).unwrap_err();
        assert!(refused.starts_with("not enough disk space: "), "{refused}");
    }

    #[test]
    fn headers_for_another_release_are_refused() {
        let kbuild = tempfile::tempdir().unwrap();
        let missing = check_headers_release(kbuild.path(), "6.1.0-56-amd64", "the image");
        assert!(
            missing
                .unwrap_err()
                .contains("no include/generated/utsrelease.h"),
            "headers without their release are refused"
        );
        std::fs::create_dir_all(kbuild.path().join("include/generated")).unwrap();
        let uts = kbuild.path().join("include/generated/utsrelease.h");
        std::fs::write(&uts, "#define UTS_RELEASE \"6.1.0-55-amd64\"\n").unwrap();
        let refused =
            check_headers_release(kbuild.path(), "6.1.0-56-amd64", "the image").unwrap_err();
        assert_eq!(
            refused,
            "the headers are for release 6.1.0-55-amd64 but the image is 6.1.0-56-amd64"
        );
        assert!(check_headers_release(kbuild.path(), "6.1.0-55-amd64", "the image").is_ok());
        std::fs::write(&uts, "/* nothing */\n").unwrap();
        assert!(check_headers_release(kbuild.path(), "6.1.0-55-amd64", "the image").is_err());
    }

    #[test]
    fn a_program_run_for_a_job_is_killed_when_the_job_is_left() {
        let progress = Progress::detached();
        let done = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            &progress,
        );
        assert_eq!(done.unwrap(), "out\n");
        let failed = run(
            Command::new("sh").args(["-c", "echo why >&2; exit 3"]),
            &progress,
        );
        assert!(failed.unwrap_err().ends_with("failed: why"));
        let leaver = progress.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            leaver.leave();
        });
        let started = std::time::Instant::now();
        let stopped = run(Command::new("sleep").arg("600"), &progress).unwrap_err();
        assert!(
            stopped.ends_with(crate::service::worker::STOPPED),
            "{stopped}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the program was killed"
        );
    }

    #[test]
    fn job_errors_name_the_servers_directories_by_their_role() {
        let data = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let mut settings = TargetSettings::new(data.path(), Some(root.path().to_owned()));
        settings.cache_dir = data.path().join("cache");
        let shown = settings.redact(&format!(
            "{}/debian/x.deb: gone; {}/targets/.partial-1-1: full; {}/moved/vmlinux: missing",
            settings.cache_dir.display(),
            data.path().display(),
            root.path().display()
        ));
        assert_eq!(
            shown,
            "$KERNEL_CACHE/debian/x.deb: gone; $DATA_DIR/targets/.partial-1-1: full; \
             $TARGET_ROOT/moved/vmlinux: missing"
        );
    }

    #[test]
    fn a_relative_data_directory_is_redacted_by_its_absolute_form_only() {
        let settings = TargetSettings::new(Path::new("data"), None);
        let shown = settings.redact("no debug data in data/x");
        assert_eq!(shown, "no debug data in data/x");
    }

    #[test]
    fn names_are_short_and_plain() {
        assert!(checked_name("6.1.0-56-amd64").is_ok());
        assert!(checked_name("prod_build+2").is_ok());
        for bad in ["", "-x", "a b", "<script>", "x/y", &"a".repeat(65)] {
            assert!(checked_name(bad).is_err(), "{bad:?}");
        }
    }
}

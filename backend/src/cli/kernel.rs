//! `graftbench index`, `analyze` and `where`: a kernel build's index, and what it says
//! about a fix or a function. They read the kernel's files only; no database.

use super::global::{write_stdout, Global};
use analyzer::cache::{self, Freshness, KernelBuild, Objects, Progress};
use analyzer::impact::TargetSource;
use analyzer::index::KernelIndex;
use analyzer::source::{KernelConfig, SourceDir, SourceIndex};
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct IndexArgs {
    /// The kernel image with debug information (the -dbg package's vmlinux).
    vmlinux: PathBuf,
    /// A directory of modules with debug information (`*.ko`, searched recursively),
    /// such as the -dbg package's lib/modules/VERSION.
    #[arg(long)]
    modules: Option<PathBuf>,
    /// Where to write the index [default: DATA_DIR/indexes/BUILD_ID.gbindex].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Rebuild even when the index is up to date.
    #[arg(long)]
    force: bool,
}

/// Which kernel build to ask: its debug files, its index, or both.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("kernel").required(true).multiple(true).args(["vmlinux", "index"])))]
pub struct KernelArgs {
    /// The kernel image with debug information (the -dbg package's vmlinux). With
    /// --index, the index is checked against it and rebuilt when stale; without, the
    /// index in the data directory is used when there is one.
    #[arg(long)]
    vmlinux: Option<PathBuf>,
    /// A directory of modules with debug information, analysed with vmlinux.
    #[arg(long, requires = "vmlinux")]
    modules: Option<PathBuf>,
    /// An index made by `graftbench index`.
    #[arg(long)]
    index: Option<PathBuf>,
}

#[derive(Args)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    kernel: KernelArgs,
    /// The fix: a unified diff or a git format-patch mail.
    fix: PathBuf,
    /// The kernel build's own source tree: each hunk is found there as patch(1) would
    /// (offset and fuzz), and changed macros, types and data are followed to the code
    /// that uses them. Without it, hunks are checked against the debug information.
    #[arg(long)]
    source: Option<PathBuf>,
    /// Build the source tree's identifier index again (it is kept in the data directory
    /// and reused; rebuild it after the tree changes).
    #[arg(long, requires = "source")]
    reindex_source: bool,
    /// The build's configuration: its `.config`, or `include/generated/autoconf.h`
    /// (default: `.config` in the source tree, when there is one). What the build does
    /// not compile (`#ifdef CONFIG_...` not taken) is then left out, and said so.
    #[arg(long, requires = "source")]
    config: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    format: ReportFormat,
}

#[derive(Args)]
pub struct WhereArgs {
    #[command(flatten)]
    kernel: KernelArgs,
    /// Function names, as in the source.
    #[arg(required = true)]
    functions: Vec<String>,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    format: ReportFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    /// For people.
    Text,
    /// The versioned JSON form (`version` field).
    Json,
}

fn default_index_path(global: &Global, build_id: &str) -> PathBuf {
    global
        .data_dir
        .join("indexes")
        .join(format!("{build_id}.gbindex"))
}

/// A progress bar on the terminal (indicatif hides it elsewhere) for [`cache`]'s builds.
struct Bar(ProgressBar);

impl Bar {
    fn new() -> Bar {
        let bar = ProgressBar::new(1);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>12} [{bar:40}] {bytes}/{total_bytes} of DWARF ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message("indexing");
        Bar(bar)
    }

    fn update(&self, progress: Progress) {
        self.0.set_length(progress.total.max(1));
        self.0.set_position(progress.done);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Names what a freshly built index left out: modules that could not be read, units
/// that could not be decoded.
fn report_skipped(index: &KernelIndex) {
    for object in &index.objects {
        for unit in &object.skipped {
            let unit_name = unit
                .name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            if object.functions.is_empty() && unit.offset == 0 && unit.rest_of_section {
                eprintln!(
                    "graftbench: warning: skipped the module {}: {}",
                    object.name, unit.error
                );
            } else {
                eprintln!(
                    "graftbench: warning: {}: skipped the unit at .debug_info+{:#x}{unit_name}: {}",
                    object.name, unit.offset, unit.error
                );
            }
        }
    }
}

/// Builds or rebuilds the index at `path`, with a progress bar, naming what it skipped.
fn load(
    path: &Path,
    build: &KernelBuild,
    force: bool,
    which: Objects<'_>,
) -> Result<(KernelIndex, Freshness)> {
    let bar = Bar::new();
    let (index, freshness) = cache::load(path, build, force, which, &|p| bar.update(p))?;
    drop(bar);
    if matches!(freshness, Freshness::Rebuilt(_)) {
        report_skipped(&index);
    }
    Ok((index, freshness))
}

pub fn index(global: &Global, args: &IndexArgs) -> Result<()> {
    let build = KernelBuild::new(&args.vmlinux, args.modules.as_deref())?;
    let path = match &args.output {
        Some(path) => path.clone(),
        None => {
            global.create_data_dir()?;
            default_index_path(global, &build.build_id()?)
        }
    };
    let started = std::time::Instant::now();
    // Up to date is decided by build-ids, and then every table is read and checked.
    let (index, freshness) = load(&path, &build, args.force, Objects::All)?;
    match freshness {
        Freshness::UpToDate => println!("{} is up to date", path.display()),
        Freshness::Rebuilt(why) => {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let functions: usize = index.objects.iter().map(|o| o.functions.len()).sum();
            println!(
                "wrote {} ({why}): {} object(s), {functions} functions, {:.1} MB, {:.2} s",
                path.display(),
                index.objects.len(),
                size as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// The index of the kernel build `kernel` names (the objects `which` asks for): read,
/// checked, rebuilt when stale.
fn load_index(global: &Global, kernel: &KernelArgs, which: Objects<'_>) -> Result<KernelIndex> {
    let index = match (&kernel.index, &kernel.vmlinux) {
        (Some(path), None) => cache::read(path, which)?,
        (Some(path), Some(vmlinux)) => {
            let build = KernelBuild::new(vmlinux, kernel.modules.as_deref())?;
            let (index, freshness) = load(path, &build, false, which)?;
            if let Freshness::Rebuilt(why) = freshness {
                eprintln!("rebuilt {} ({why})", path.display());
            }
            index
        }
        (None, Some(vmlinux)) => {
            // The index `graftbench index` left in the data directory, when it matches;
            // else the debug information itself (nothing is written unasked).
            let build = KernelBuild::new(vmlinux, kernel.modules.as_deref())?;
            let cached = build
                .build_id()
                .ok()
                .map(|id| default_index_path(global, &id))
                .filter(|path| path.exists());
            let up_to_date = |path: &Path| -> Result<bool> {
                let bytes = cache::map(path)?;
                match KernelIndex::build_ids(&bytes) {
                    Ok(ids) => Ok(build.matches(&ids)?),
                    Err(_) => Ok(false),
                }
            };
            match cached {
                Some(path) if up_to_date(&path)? => cache::read(&path, which)?,
                _ => {
                    let bar = Bar::new();
                    let index = build.index(&|p| bar.update(p))?;
                    drop(bar);
                    report_skipped(&index);
                    index
                }
            }
        }
        (None, None) => bail!("give --vmlinux or --index"),
    };
    Ok(index)
}

pub fn where_(global: &Global, args: &WhereArgs) -> Result<()> {
    let index = load_index(global, &args.kernel, Objects::All)?;
    let mut found = Vec::new();
    for name in &args.functions {
        let placements = analyzer::placement::placements(&index, name);
        if placements.is_empty() {
            bail!("no function named `{name}` in the debug information");
        }
        found.extend(placements);
    }
    std::mem::forget(index);
    let text = match args.format {
        ReportFormat::Text => found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        ReportFormat::Json => serde_json::to_string_pretty(&found)? + "\n",
    };
    write_stdout(&text)
}

/// The identifier index of the source tree `dir`, kept in the data directory by the
/// tree's path: read when there, else (or with `rebuild`) built with a progress bar.
fn source_index(global: &Global, dir: &Path, rebuild: bool) -> Result<SourceIndex> {
    use sha2::Digest;
    let canonical = dir
        .canonicalize()
        .with_context(|| format!("--source {}", dir.display()))?;
    let key = hex::encode(sha2::Sha256::digest(
        canonical.as_os_str().as_encoded_bytes(),
    ));
    let path = global
        .data_dir
        .join("source-indexes")
        .join(format!("{}.gbsrc", &key[..16]));
    if !rebuild {
        if let Ok(bytes) = cache::map(&path) {
            if let Ok(index) = SourceIndex::from_bytes(&bytes) {
                return Ok(index);
            }
        }
    }
    global.create_data_dir()?;
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} files ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("indexing the source");
    let index = SourceIndex::build(&canonical, &|done, total| {
        bar.set_length(total.max(1));
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    cache::write_atomically(&path, &index.to_bytes())?;
    eprintln!(
        "indexed the source tree {} ({} files) into {}",
        canonical.display(),
        index.files().len(),
        path.display()
    );
    Ok(index)
}

pub fn analyze(global: &Global, args: &AnalyzeArgs) -> Result<()> {
    let fix =
        std::fs::read(&args.fix).with_context(|| format!("reading {}", args.fix.display()))?;
    let patch = analyzer::patch::parse(&fix)
        .with_context(|| format!("{} is not a usable fix", args.fix.display()))?;
    let tree = args
        .source
        .as_deref()
        .map(SourceDir::new)
        .transpose()
        .context("--source")?;
    // Read before the indexes are built: a bad file fails at once.
    let config_path = args.config.clone().or_else(|| {
        let found = args.source.as_ref()?.join(".config");
        found.is_file().then(|| {
            eprintln!("using the configuration {}", found.display());
            found
        })
    });
    let config = config_path
        .map(|path| KernelConfig::read(&path).context("--config"))
        .transpose()?;
    let identifiers = match &args.source {
        Some(dir) => Some(source_index(global, dir, args.reindex_source)?),
        None => None,
    };
    // Only the objects whose debug information names a file the fix changes; with the
    // source, a change may expand anywhere, so every object.
    let changed = analyzer::impact::changed_lines(&patch);
    let paths: Vec<&str> = changed.iter().map(|c| c.path.as_str()).collect();
    let which = if tree.is_some() {
        Objects::All
    } else {
        Objects::For(&paths)
    };
    let index = load_index(global, &args.kernel, which)?;
    let source = tree.as_ref().map(|tree| TargetSource {
        tree,
        index: identifiers.as_ref(),
        config: config.as_ref(),
    });
    let report = analyzer::impact::analyze_on(&patch, &index, source)
        .with_context(|| format!("analysing {}", args.fix.display()))?;
    // Hundreds of thousands of small allocations: the process is about to exit, and
    // freeing them one by one would take longer than the analysis.
    std::mem::forget(index);
    let text = match args.format {
        ReportFormat::Text => report.to_string(),
        ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    write_stdout(&text)
}

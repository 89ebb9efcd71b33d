//! Building a module directory: rustc for the scaffolding, objtool as kbuild runs it,
//! `make -C KDIR M=DIR modules` under a time limit, logs kept.

use super::relocations::klp_relocate;
use super::scaffold::layout_rs;
use super::{write, KernelDir};
use crate::error::{io, ModuleError};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The flags kernel code needs from rustc: the kernel code model, no red zone, no SSE,
/// abort on panic, no unwind tables.
pub const RUSTC_FLAGS: [&str; 16] = [
    "--edition=2021",
    "--crate-type=lib",
    "--emit=obj",
    "--target=x86_64-unknown-linux-gnu",
    "-Ccode-model=kernel",
    "-Crelocation-model=static",
    "-Ctarget-feature=-sse,-sse2,+soft-float",
    "-Cpanic=abort",
    "-Cno-redzone=yes",
    "-Copt-level=2",
    "-Cforce-unwind-tables=no",
    "-Cdebuginfo=0",
    "-Ccodegen-units=1",
    "-Aunknown_lints",
    "-Aforbidden_lint_groups",
    "--cap-lints=warn",
];

/// Builds the module in `dir` (made by [`generate`]) against `kernel`; returns the `.ko`.
pub fn build(dir: &Path, kernel: &KernelDir, limit: Duration) -> Result<PathBuf, ModuleError> {
    // `make -C KDIR M=DIR` resolves a relative DIR against KDIR, not against the caller.
    let dir = &std::path::absolute(dir).map_err(io(dir))?;
    let kbuild = std::fs::read_to_string(dir.join("Kbuild")).map_err(io(&dir.join("Kbuild")))?;
    let name = kbuild
        .lines()
        .find_map(|l| l.strip_prefix("obj-m := "))
        .and_then(|o| o.strip_suffix(".o"))
        .ok_or_else(|| ModuleError::NoObjM {
            kbuild: dir.join("Kbuild"),
        })?
        .to_owned();
    let started = Instant::now();
    let left = |limit: Duration| limit.saturating_sub(started.elapsed());
    // The layout of the headers built against, which the scaffolding's asserts check.
    let layout = kernel.layout(dir, left(limit))?;
    write(&dir.join("layout.rs"), &layout_rs(&layout))?;
    let object = dir.join("scaffold_rs.o_shipped");
    let mut rustc = Command::new("rustc");
    rustc
        .args(RUSTC_FLAGS)
        .arg(dir.join("scaffold.rs"))
        .arg("-o")
        .arg(&object);
    run_logged(
        &mut rustc,
        "rustc (scaffold.rs)",
        &dir.join("rustc.log"),
        left(limit),
    )?;
    // objtool, as kbuild runs it on C objects of this configuration.
    let objtool = kernel.path().join("tools/objtool/objtool");
    let mut args = vec!["--module"];
    for (option, flag) in [
        ("CONFIG_UNWINDER_ORC", "--orc"),
        ("CONFIG_RETPOLINE", "--retpoline"),
        ("CONFIG_RETHUNK", "--rethunk"),
        ("CONFIG_SLS", "--sls"),
        ("CONFIG_HAVE_STATIC_CALL_INLINE", "--static-call"),
        ("CONFIG_X86_SMAP", "--uaccess"),
        ("CONFIG_X86_KERNEL_IBT", "--ibt"),
    ] {
        if kernel.enabled(option) {
            args.push(flag);
        }
    }
    if objtool.exists() {
        run_logged(
            Command::new(&objtool).args(&args).arg(&object),
            "objtool (scaffold_rs.o)",
            &dir.join("objtool.log"),
            left(limit),
        )?;
    }
    // modpost reads a .cmd file for every object of a multi-object module.
    write(
        &dir.join(".scaffold_rs.o.cmd"),
        &format!(
            "cmd_{dir}/scaffold_rs.o := rustc {} {dir}/scaffold.rs -o {dir}/scaffold_rs.o_shipped\n",
            RUSTC_FLAGS.join(" "),
            dir = dir.display()
        ),
    )?;
    let log = dir.join("build.log");
    // modpost only warns about symbols the kernel does not export: they become livepatch
    // relocations below.
    run_logged(
        Command::new("make")
            .arg("-C")
            .arg(kernel.path())
            .arg(format!("M={}", dir.display()))
            .arg("KBUILD_MODPOST_WARN=1")
            .arg("modules"),
        "make modules",
        &log,
        left(limit),
    )?;
    // `WARNING: modpost: "saved_command_line" [.../x.ko] undefined!`
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut unexported: Vec<String> = text
        .lines()
        .filter(|l| l.contains("modpost: \"") && l.ends_with("undefined!"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect();
    unexported.sort();
    unexported.dedup();
    let ko = dir.join(format!("{name}.ko"));
    if !ko.exists() {
        return Err(ModuleError::Build {
            step: "make modules".into(),
            errors: Vec::new(),
            detail: format!("{} was not made", ko.display()),
            log: log.display().to_string(),
        });
    }
    if !unexported.is_empty() {
        klp_relocate(dir, &ko, &unexported, &log)?;
    }
    Ok(ko)
}

/// Runs a command with its output in `log`, killed after `limit`.
pub(super) fn run_logged(
    command: &mut Command,
    step: &str,
    log: &Path,
    limit: Duration,
) -> Result<(), ModuleError> {
    let file = std::fs::File::create(log).map_err(io(log))?;
    let err = file.try_clone().map_err(io(log))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| ModuleError::Build {
            step: step.to_owned(),
            errors: Vec::new(),
            detail: format!("cannot start it: {e}"),
            log: log.display().to_string(),
        })?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io(log))? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ModuleError::Timeout {
                step: step.to_owned(),
                seconds: limit.as_secs(),
                log: log.display().to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        let _ = f.read_to_string(&mut text);
    }
    let errors: Vec<String> = text
        .lines()
        .filter(|l| l.contains(": error:") || l.contains(": error[") || l.starts_with("error"))
        .take(10)
        .map(str::to_owned)
        .collect();
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    Err(ModuleError::Build {
        step: step.to_owned(),
        errors,
        detail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        log: log.display().to_string(),
    })
}

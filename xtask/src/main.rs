//! `cargo xtask`: Graftbench's build and test driver.
//!
//! ```text
//! cargo xtask demo [SERVE ARGS]   install what is missing, build, run `graftbench serve --demo`
//! cargo xtask test                install what is missing, check formatting and lints,
//!                                 build the browser bundle, run every test
//! cargo xtask build [--release]   build the browser bundle and the server
//! cargo xtask site                build only the browser bundle into target/site
//! cargo xtask setup [--tests]     only install what is missing (--tests: what the tests use too)
//! cargo xtask structure           the domain crate's dependencies, the backend's module graph
//! ```
//!
//! The browser bundle needs Rust's standard library for `wasm32-unknown-unknown`. Where
//! rustup has that target it is used; where it cannot be downloaded (these build machines)
//! Debian's `rust-web-src` provides the library's source and it is built with
//! `-Zbuild-std`, linked by rustup's `rust-lld`. The `wasm-bindgen` CLI is installed at
//! exactly the version Cargo.lock pins for the `wasm-bindgen` crate.
//!
//! Only the standard library is used here, so this compiles in seconds on a fresh machine.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, String>;

const BUNDLE_NAME: &str = "graftbench_ui";
const HYDRATE_CRATE: &str = "graftbench-hydrate";
const WASM_TARGET: &str = "wasm32-unknown-unknown";
const WASM_PROFILE: &str = "wasm-release";
/// Debian's Rust that ships the standard library's source (`rust-web-src`).
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_STD_SRC: &str = "/usr/lib/rustlib/src/rust/library";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("test") => test(),
        Some("build") => build(args.iter().any(|a| a == "--release")),
        Some("site") => setup(false).and_then(|_| site()),
        Some("setup") => setup(args.iter().any(|a| a == "--tests")),
        Some("structure") => domain_stays_pure().and_then(|()| backend_modules_form_no_cycle()),
        _ => Err(
            "usage: cargo xtask demo|test|build [--release]|site|setup [--tests]|structure".into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    // xtask/ is one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn site_root() -> PathBuf {
    root().join("target").join("site")
}

fn step(name: &str) -> impl Drop {
    struct Step(String, Instant);
    impl Drop for Step {
        fn drop(&mut self) {
            eprintln!(
                "xtask: {} took {:.1}s",
                self.0,
                self.1.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!("xtask: ── {name}");
    Step(name.to_owned(), Instant::now())
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

// ── setup ────────────────────────────────────────────────────────────────────

fn apt_install(packages: &[&str]) -> Result<()> {
    let is_root = output(Command::new("id").arg("-u")).is_some_and(|u| u.trim() == "0");
    let sudo = |program: &str| {
        let mut cmd = if is_root {
            Command::new(program)
        } else {
            let mut c = Command::new("sudo");
            c.arg(program);
            c
        };
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    eprintln!("xtask: installing {} with apt-get", packages.join(" "));
    run(sudo("apt-get").args(["update", "-q"]))?;
    run(sudo("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages))
    .map_err(|e| format!("{e}; install {} by hand", packages.join(" ")))
}

fn rustup_has_wasm_target() -> bool {
    output(Command::new("rustup").args(["target", "list", "--installed"]))
        .is_some_and(|t| t.lines().any(|l| l.trim() == WASM_TARGET))
}

/// The `wasm-bindgen` version Cargo.lock pins.
fn locked_wasm_bindgen() -> Result<String> {
    let lock = fs::read_to_string(root().join("Cargo.lock"))
        .map_err(|e| format!("reading Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\"" {
            if let Some(version) = lines
                .next()
                .and_then(|l| l.strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
            {
                return Ok(version.to_owned());
            }
        }
    }
    Err("Cargo.lock has no wasm-bindgen entry".into())
}

fn wasm_bindgen_version() -> Option<String> {
    output(Command::new("wasm-bindgen").arg("--version"))
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
}

/// What the tests need beyond the build: the browser, and the kernel lab (the Debian
/// kernel's headers with kbuild, objtool and `sign-file`; `modinfo`, `openssl`; QEMU, a
/// static busybox and cpio to boot the kernel). The kernel image itself is downloaded by
/// the test that boots it.
const TEST_TOOLS: [(&str, &str); 8] = [
    ("/usr/bin/chromium", "chromium"),
    (
        "/usr/lib/linux-kbuild-6.1/scripts/sign-file",
        "linux-headers-6.1.0-56-amd64",
    ),
    ("/sbin/modinfo", "kmod"),
    ("/usr/bin/openssl", "openssl"),
    ("/usr/bin/qemu-system-x86_64", "qemu-system-x86"),
    // The dynamic busybox package also provides /bin/busybox; the initramfs needs this one.
    ("/usr/share/doc/busybox-static", "busybox-static"),
    ("/bin/cpio", "cpio"),
    // The linker for the test run: every test binary links the whole server.
    ("/usr/bin/mold", "mold"),
];

/// axe-core, the accessibility engine the browser tests evaluate in each page through the
/// DevTools protocol (so the page's Content-Security-Policy stays as served): pinned by
/// version and by the registry's SHA-512 of the package.
const AXE_VERSION: &str = "4.14.1";
const AXE_INTEGRITY: &str =
    "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==";

/// Where the tests find axe-core (`graftbench_tests::axe_script` reads it).
fn axe_path() -> PathBuf {
    root()
        .join("target")
        .join("test-tools")
        .join(format!("axe-{AXE_VERSION}.min.js"))
}

/// Fetches axe-core from the npm registry once, checking its integrity.
fn fetch_axe() -> Result<()> {
    let target = axe_path();
    if target.exists() {
        return Ok(());
    }
    let _s = step("axe-core");
    let dir = target.parent().ok_or("axe path has no parent")?;
    let scratch = dir.join("axe-download");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| format!("creating {}: {e}", scratch.display()))?;
    let packed = output(
        Command::new("npm")
            .args(["pack", "--json", "--pack-destination"])
            .arg(&scratch)
            .arg(format!("axe-core@{AXE_VERSION}")),
    )
    .ok_or("`npm pack axe-core` failed (the tests need node and npm, and the npm registry)")?;
    let integrity = packed
        .split('"')
        .skip_while(|field| *field != "integrity")
        .nth(2)
        .unwrap_or_default();
    if integrity != AXE_INTEGRITY {
        return Err(format!(
            "axe-core {AXE_VERSION} from the registry has integrity {integrity:?}, not the pinned {AXE_INTEGRITY}"
        ));
    }
    let tarball = scratch.join(format!("axe-core-{AXE_VERSION}.tgz"));
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&scratch)
        .arg("package/axe.min.js"))?;
    fs::rename(scratch.join("package").join("axe.min.js"), &target)
        .map_err(|e| format!("moving axe.min.js to {}: {e}", target.display()))?;
    let _ = fs::remove_dir_all(&scratch);
    Ok(())
}

fn setup(for_tests: bool) -> Result<()> {
    let _s = step("setup");
    let mut missing = Vec::new();
    let debian_wasm_toolchain =
        Path::new(DEBIAN_CARGO).exists() && Path::new(DEBIAN_STD_SRC).exists();
    if !rustup_has_wasm_target() && !debian_wasm_toolchain {
        missing.extend(["rustc-web", "cargo-web", "rust-web-src"]);
    }
    // The site's files are served precompressed; brotli makes the `.br` copies.
    if !Path::new("/usr/bin/brotli").exists() {
        missing.push("brotli");
    }
    if for_tests {
        missing.extend(
            TEST_TOOLS
                .iter()
                .filter(|(path, _)| !Path::new(path).exists())
                .map(|(_, package)| *package),
        );
    }
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    if for_tests {
        fetch_axe()?;
    }
    if !root().join("Cargo.lock").exists() {
        run(cargo().arg("generate-lockfile"))?;
    }
    let wanted = locked_wasm_bindgen()?;
    if wasm_bindgen_version().as_deref() != Some(wanted.as_str()) {
        eprintln!("xtask: installing wasm-bindgen-cli {wanted} (several minutes, once)");
        run(cargo().args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            &format!("={wanted}"),
        ]))?;
    }
    Ok(())
}

fn ensure_postgres() -> Result<()> {
    let up = || {
        TcpStream::connect_timeout(
            &"127.0.0.1:5432".parse().expect("literal address"),
            Duration::from_secs(2),
        )
        .is_ok()
    };
    if up() || env::var_os("GRAFTBENCH_TEST_PG").is_some() {
        return Ok(());
    }
    eprintln!("xtask: PostgreSQL is not answering on 127.0.0.1:5432; starting it");
    let versions = fs::read_dir("/etc/postgresql").map_err(|_| {
        "PostgreSQL is not running and not installed; the tests need one (set GRAFTBENCH_TEST_PG to its URL)".to_owned()
    })?;
    for version in versions.flatten() {
        let _ = run(Command::new("pg_ctlcluster").args([
            OsStr::new("--skip-systemctl-redirect"),
            version.file_name().as_os_str(),
            OsStr::new("main"),
            OsStr::new("start"),
        ]));
    }
    for _ in 0..30 {
        if up() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Err("PostgreSQL did not come up on 127.0.0.1:5432".into())
}

// ── builds ───────────────────────────────────────────────────────────────────

/// Builds the hydration bundle into target/site: wasm, wasm-bindgen, stylesheet.
fn site() -> Result<()> {
    site_built_in(&root().join("target").join("wasm"))
}

/// [`site`], building the WebAssembly in `wasm_target_dir`.
fn site_built_in(wasm_target_dir: &Path) -> Result<()> {
    {
        let _s = step("browser bundle (wasm)");
        let mut cmd;
        if rustup_has_wasm_target() {
            cmd = cargo();
            cmd.args(["build", "--profile", WASM_PROFILE, "--target", WASM_TARGET]);
        } else {
            // rust-lld comes with rustup's toolchain, not with Debian's rustc.
            let sysroot = output(Command::new("rustc").args(["--print", "sysroot"]))
                .ok_or("cannot ask rustc for its sysroot")?;
            let lld =
                Path::new(sysroot.trim()).join("lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld");
            if !lld.exists() {
                return Err(format!("rust-lld not found at {}", lld.display()));
            }
            let path = format!("/usr/bin:{}", env::var("PATH").unwrap_or_default());
            cmd = Command::new(DEBIAN_CARGO);
            cmd.env("PATH", path)
                .env("RUSTC", DEBIAN_RUSTC)
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", lld)
                .env_remove("RUSTC_WRAPPER")
                .env_remove("RUSTUP_TOOLCHAIN")
                .args(["build", "--profile", WASM_PROFILE, "--target", WASM_TARGET])
                .arg("-Zbuild-std=std,panic_abort");
        }
        // Its own target directory: the two compilers must never share artifacts.
        cmd.env("CARGO_TARGET_DIR", wasm_target_dir)
            .args(["-p", HYDRATE_CRATE]);
        run(&mut cmd)?;
    }
    let pkg = site_root().join("pkg");
    {
        let _s = step("wasm-bindgen");
        let wasm = wasm_target_dir
            .join(WASM_TARGET)
            .join(WASM_PROFILE)
            .join(format!("{BUNDLE_NAME}.wasm"));
        run(Command::new("wasm-bindgen")
            .args([
                "--target",
                "web",
                "--remove-name-section",
                "--remove-producers-section",
            ])
            .arg("--out-dir")
            .arg(&pkg)
            .args(["--out-name", BUNDLE_NAME])
            .arg(&wasm))?;
    }
    let style = site_root().join("style");
    fs::create_dir_all(&style).map_err(|e| format!("creating {}: {e}", style.display()))?;
    for entry in fs::read_dir(root().join("style")).map_err(|e| format!("reading style/: {e}"))? {
        let entry = entry.map_err(|e| e.to_string())?;
        fs::copy(entry.path(), style.join(entry.file_name()))
            .map_err(|e| format!("copying {}: {e}", entry.path().display()))?;
    }
    let size = fs::metadata(pkg.join(format!("{BUNDLE_NAME}_bg.wasm")))
        .map(|m| m.len())
        .unwrap_or(0);
    fingerprint_and_compress()?;
    eprintln!(
        "xtask: site ready in {} (wasm {} KiB)",
        site_root().display(),
        size / 1024
    );
    Ok(())
}

/// The files pages load, by the name the build writes and the name pages ask for.
const FINGERPRINTED: [(&str, &str); 3] = [
    ("js", "pkg/graftbench_ui.js"),
    ("wasm", "pkg/graftbench_ui_bg.wasm"),
    ("css", "style/graftbench.css"),
];

/// Copies each file pages load to a name carrying its content's hash
/// (`pkg/graftbench_ui_bg.3f2a….wasm`), with `.gz` and `.br` beside it, and writes
/// `assets.json` naming them: the server links pages to those names and lets browsers
/// cache them for good, and serves the compressed copies instead of compressing per
/// request. Copies of earlier builds are removed.
fn fingerprint_and_compress() -> Result<()> {
    let _s = step("fingerprint and precompress");
    let site = site_root();
    for dir in ["pkg", "style"] {
        let dir = site.join(dir);
        for entry in fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            let name = path.file_name().and_then(OsStr::to_str).unwrap_or_default();
            if name.split('.').any(is_fingerprint) {
                fs::remove_file(&path).map_err(|e| format!("removing {}: {e}", path.display()))?;
            }
        }
    }
    let mut manifest = Vec::new();
    for (key, relative) in FINGERPRINTED {
        let source = site.join(relative);
        let sum = output(Command::new("sha256sum").arg(&source))
            .ok_or_else(|| format!("sha256sum {}", source.display()))?;
        let hash = sum.get(..16).ok_or("sha256sum printed no hash")?;
        let (stem, extension) = relative
            .rsplit_once('.')
            .ok_or_else(|| format!("{relative} has no extension"))?;
        let named = format!("{stem}.{hash}.{extension}");
        let target = site.join(&named);
        fs::copy(&source, &target).map_err(|e| format!("copying {}: {e}", source.display()))?;
        run(Command::new("gzip")
            .args(["-9", "-n", "-k", "-f"])
            .arg(&target))?;
        run(Command::new("brotli")
            .args(["-q", "11", "-k", "-f"])
            .arg(&target))?;
        manifest.push(format!("  \"{key}\": \"/{named}\""));
    }
    let json = format!("{{\n{}\n}}\n", manifest.join(",\n"));
    fs::write(site.join("assets.json"), json).map_err(|e| format!("writing assets.json: {e}"))
}

/// A content hash in a file name: 16 lower-case hex digits.
fn is_fingerprint(part: &str) -> bool {
    part.len() == 16
        && part
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn build(release: bool) -> Result<()> {
    setup(false)?;
    site()?;
    let _s = step("server");
    let mut cmd = cargo();
    cmd.args(["build", "-p", "graftbench"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)
}

fn demo(serve_args: &[String]) -> Result<()> {
    build(true)?;
    let binary = root().join("target").join("release").join("graftbench");
    let mut cmd = Command::new(binary);
    cmd.args(["serve", "--demo", "--site-root"])
        .arg(site_root())
        .args(serve_args);
    if env::var_os("GRAFTBENCH_DATA_DIR").is_none() {
        cmd.arg("--data-dir").arg(root().join("graftbench-data"));
    }
    run(&mut cmd)
}

/// The domain crate's rules are unit-tested without a server and compiled into the
/// browser bundle: no web, database or runtime crate may creep into its dependencies.
fn domain_stays_pure() -> Result<()> {
    const FORBIDDEN: [&str; 5] = ["leptos", "axum", "sqlx", "tokio", "tower"];
    let tree = output(cargo().current_dir(root()).args([
        "tree",
        "--locked",
        "-p",
        "graftbench-domain",
        "-e",
        "normal",
        "--prefix",
        "none",
    ]))
    .ok_or("cargo tree -p graftbench-domain failed")?;
    let found: Vec<&str> = tree
        .lines()
        .filter(|l| FORBIDDEN.iter().any(|f| l.starts_with(f)))
        .collect();
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "graftbench-domain depends on {}: it must stay free of web, database and runtime crates",
            found.join(", ")
        ))
    }
}

/// Backend modules must not refer to each other in a circle (any `crate::` path, in a
/// `use` or inline): store below service below web, each module one job.
fn backend_modules_form_no_cycle() -> Result<()> {
    let src = root().join("backend/src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    // Module path of each file: store/mod.rs is `store`, lib.rs the crate root.
    let module_of = |path: &Path| -> String {
        let rel = path.strip_prefix(&src).unwrap_or(path).with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts
            .last()
            .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
        {
            parts.pop();
        }
        parts.join("::")
    };
    let modules: Vec<String> = files.iter().map(|f| module_of(f)).collect();
    let mut edges: Vec<(String, String)> = Vec::new();
    for (file, module) in files.iter().zip(&modules) {
        let text = fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        // `super::` from a file module (`service/tree.rs`) is its directory's module; from
        // a `mod.rs` it is the one above.
        let is_dir_module = file
            .file_stem()
            .is_some_and(|stem| stem == "mod" || stem == "lib" || stem == "main");
        let parent = {
            let mut parts: Vec<&str> = module.split("::").filter(|p| !p.is_empty()).collect();
            if !is_dir_module || !parts.is_empty() {
                parts.pop();
            }
            parts.join("::")
        };
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or_default();
            let references = code
                .match_indices("crate::")
                .map(|(at, _)| (String::new(), at + "crate::".len()))
                .chain(
                    code.match_indices("super::")
                        // `super::super::` and `crate::x::super` do not occur here.
                        .filter(|(at, _)| !code[..*at].ends_with("::"))
                        .map(|(at, _)| (parent.clone(), at + "super::".len())),
                );
            for (base, start) in references {
                let path: String = code[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let mut parts: Vec<&str> = base.split("::").filter(|p| !p.is_empty()).collect();
                parts.extend(path.split("::").filter(|p| !p.is_empty()));
                let target = (1..=parts.len())
                    .rev()
                    .map(|n| parts[..n].join("::"))
                    .find(|candidate| modules.contains(candidate));
                if let Some(target) = target.filter(|t| t != module) {
                    edges.push((module.clone(), target));
                }
            }
        }
    }
    edges.sort();
    edges.dedup();
    for (from, to) in &edges {
        if edges.iter().any(|(a, b)| a == to && b == from) {
            return Err(format!(
                "backend modules refer to each other: {from} <-> {to} (crate:: and super:: paths)"
            ));
        }
    }
    // Longer circles: a depth-first walk from every module.
    fn reaches(edges: &[(String, String)], from: &str, goal: &str, seen: &mut Vec<String>) -> bool {
        for (_, next) in edges.iter().filter(|(a, _)| a == from) {
            if next == goal {
                return true;
            }
            if !seen.contains(next) {
                seen.push(next.clone());
                if reaches(edges, next, goal, seen) {
                    return true;
                }
            }
        }
        false
    }
    for module in &modules {
        if reaches(&edges, module, module, &mut Vec::new()) {
            return Err(format!(
                "backend module {module} refers back to itself through others"
            ));
        }
    }
    Ok(())
}

/// Where `cargo xtask test` keeps its build outside the clone, so that a fresh clone on a
/// machine that built before (CI after a session) compiles only the workspace's own
/// crates: `$GRAFTBENCH_BUILD_CACHE`, else `~/.cache/graftbench-build`.
fn build_cache() -> PathBuf {
    if let Some(dir) = env::var_os("GRAFTBENCH_BUILD_CACHE") {
        return PathBuf::from(dir);
    }
    env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| root().join("target"))
        .join("graftbench-build")
}

/// The bytes under `dir` (files only, symlinks not followed).
fn size_of_dir(dir: &Path) -> u64 {
    let mut total = 0;
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => dirs.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// The cache keeps every clone's own crates beside the shared dependencies: past this
/// size it is emptied, and that run builds everything.
const BUILD_CACHE_LIMIT: u64 = 24 << 30;

fn test() -> Result<()> {
    let started = Instant::now();
    setup(true)?;
    ensure_postgres()?;
    let cache = build_cache();
    if size_of_dir(&cache) > BUILD_CACHE_LIMIT {
        eprintln!(
            "xtask: the build cache {} is over {} GiB: emptying it",
            cache.display(),
            BUILD_CACHE_LIMIT >> 30
        );
        fs::remove_dir_all(&cache).map_err(|e| format!("emptying {}: {e}", cache.display()))?;
    }
    let host_target = cache.join("target");
    // Host builds only: the WebAssembly build has its own linker.
    let host_flags = if Path::new("/usr/bin/mold").exists() {
        "-C link-arg=-fuse-ld=mold"
    } else {
        ""
    };
    let host_cargo = || {
        let mut cmd = cargo();
        cmd.env("CARGO_TARGET_DIR", &host_target)
            .env(
                "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
                host_flags,
            )
            // A whole run gains nothing from incremental state, which for these crates
            // is about as large as the build itself (12 GB seen): leave it out.
            .env("CARGO_INCREMENTAL", "0");
        cmd
    };
    {
        let _s = step("rustfmt");
        run(cargo().args(["fmt", "--all", "--check"]))?;
    }
    {
        let _s = step("clippy");
        run(host_cargo().args([
            "clippy",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    domain_stays_pure()?;
    backend_modules_form_no_cycle()?;
    site_built_in(&cache.join("wasm"))?;
    {
        let _s = step("tests");
        let nextest = output(cargo().args(["nextest", "--version"])).is_some();
        let test_env = |cmd: &mut Command| {
            cmd.env("GRAFTBENCH_SITE_ROOT", site_root())
                .env("GRAFTBENCH_KERNEL_LAB", cache.join("kernel-lab"));
        };
        if nextest {
            // Every test in a process of its own, two at a time across all binaries:
            // the slow ones (the browser, the kernel under QEMU) overlap the rest.
            let mut cmd = host_cargo();
            cmd.args(["nextest", "run", "--locked", "--no-fail-fast"]);
            test_env(&mut cmd);
            run(&mut cmd)?;
            // nextest does not run doctests.
            let mut cmd = host_cargo();
            cmd.args(["test", "--locked", "--doc"]);
            test_env(&mut cmd);
            run(&mut cmd)?;
        } else {
            let mut cmd = host_cargo();
            cmd.args(["test", "--locked", "--no-fail-fast"]);
            test_env(&mut cmd);
            run(&mut cmd)?;
        }
    }
    eprintln!(
        "xtask: all checks passed in {:.1} min",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

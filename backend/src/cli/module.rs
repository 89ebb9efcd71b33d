//! `graftbench module`: signing keys, signing, verifying and inspecting livepatch modules.

use analyzer::cache::write_atomically;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kmod::signature;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum ModuleCommand {
    /// Writes a livepatch module directory: the C replacement, the Rust scaffolding laid
    /// out for the target's headers, the Kbuild file.
    New(NewArgs),
    /// Builds a module directory with the kernel's kbuild.
    Build(BuildArgs),
    /// Makes an RSA signing key (mode 0600) and its self-signed certificate.
    Keygen(KeygenArgs),
    /// Signs a module the way the kernel's sign-file does (replacing any signature).
    Sign(SignArgs),
    /// Verifies a module's signature against a certificate.
    Verify(VerifyArgs),
    /// Shows a module's name, vermagic, livepatch flag, keys and signature.
    Info(InfoArgs),
}

#[derive(Args)]
pub struct NewArgs {
    /// The directory to write (created).
    dir: PathBuf,
    /// The module name (letters, digits, `_`).
    #[arg(long)]
    name: String,
    /// The C source of the replacement functions.
    #[arg(long)]
    source: PathBuf,
    /// A function to replace: OBJECT:FUNCTION[,SYMPOS]=NEW_FUNCTION (repeat).
    #[arg(long = "replace", required_unless_present = "from_report")]
    replacements: Vec<kmod::klp::KlpFunc>,
    /// Replace what an `analyze --format json` report lists: each function FOO (clone
    /// suffix dots as `_`) by `livepatch_FOO` from the source.
    #[arg(long)]
    from_report: Option<PathBuf>,
    /// A cumulative patch: it replaces every livepatch loaded before it.
    #[arg(long)]
    cumulative: bool,
    /// Where a symbol the kernel does not export lives, for a livepatch relocation:
    /// NAME=OBJECT[,SYMPOS] (repeat). Needed only when the patch replaces functions of
    /// several objects; otherwise such symbols are looked up in its one object.
    #[arg(long = "klp-symbol", value_parser = parse_klp_symbol)]
    klp_symbols: Vec<kmod::klp::KlpSymbol>,
    /// A `.modinfo` entry `graftbench.KEY=VALUE` (repeat), e.g. revision=SHA256.
    #[arg(long = "info", value_parser = parse_key_value)]
    keys: Vec<(String, String)>,
    /// The kernel build directory (headers) the module is for.
    #[arg(long, default_value = "/lib/modules/$(uname -r)/build")]
    kdir: String,
}

#[derive(Args)]
pub struct BuildArgs {
    /// A directory made by `graftbench module new`.
    dir: PathBuf,
    /// The kernel build directory (headers).
    #[arg(long, default_value = "/lib/modules/$(uname -r)/build")]
    kdir: String,
    /// Stop a build step running longer than this.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

fn parse_klp_symbol(text: &str) -> Result<kmod::klp::KlpSymbol, String> {
    let bad = || format!("`{text}`: write NAME=OBJECT[,SYMPOS], e.g. saved_command_line=vmlinux");
    let (name, place) = text.split_once('=').ok_or_else(bad)?;
    let (object, sympos) = match place.split_once(',') {
        Some((object, pos)) => (object, pos.parse().map_err(|_| bad())?),
        None => (place, 0),
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    };
    if !ok(name) || !ok(object) {
        return Err(bad());
    }
    Ok(kmod::klp::KlpSymbol {
        name: name.to_owned(),
        object: object.to_owned(),
        sympos,
    })
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}`: write KEY=VALUE"))
}

/// The kernel directory, with `$(uname -r)` standing for the running kernel.
fn kernel_dir(kdir: &str) -> Result<kmod::module::KernelDir> {
    let path = if kdir.contains("$(uname -r)") {
        let release = std::process::Command::new("uname")
            .arg("-r")
            .output()
            .context("running uname -r")?;
        kdir.replace(
            "$(uname -r)",
            String::from_utf8_lossy(&release.stdout).trim(),
        )
    } else {
        kdir.to_owned()
    };
    Ok(kmod::module::KernelDir::new(Path::new(&path))?)
}

#[derive(Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PEM, created mode 0600).
    #[arg(long)]
    key: PathBuf,
    /// Where to write the certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// The certificate's common name (what modinfo shows as the signer).
    #[arg(long, default_value = "Graftbench livepatch signing key")]
    common_name: String,
    /// Key size.
    #[arg(long, default_value_t = 4096)]
    bits: usize,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    days: u64,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct SignArgs {
    /// The module.
    module: PathBuf,
    /// The private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The certificate (PEM or DER).
    #[arg(long)]
    cert: PathBuf,
    /// Write the signed module here instead of replacing the input.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The module.
    module: PathBuf,
    /// The certificate (PEM or DER).
    #[arg(long)]
    cert: PathBuf,
}

#[derive(Args)]
pub struct InfoArgs {
    /// The module.
    module: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

pub fn run(command: ModuleCommand) -> Result<()> {
    match command {
        ModuleCommand::New(args) => {
            let kernel = kernel_dir(&args.kdir)?;
            let c_source = std::fs::read_to_string(&args.source)
                .with_context(|| format!("reading {}", args.source.display()))?;
            let mut replacements = args.replacements;
            if let Some(report) = &args.from_report {
                replacements.extend(kmod::klp::KlpFunc::from_report(report, &read(report)?)?);
            }
            let spec = kmod::module::ModuleSpec {
                name: args.name,
                replacements,
                cumulative: args.cumulative,
                c_source,
                keys: args.keys,
                klp_symbols: args.klp_symbols,
            };
            kmod::module::generate(
                &args.dir,
                &spec,
                &kernel,
                std::time::Duration::from_secs(300),
            )?;
            println!(
                "wrote {} for {} ({} function(s){})",
                args.dir.display(),
                kernel
                    .release()
                    .unwrap_or_else(|| kernel.path().display().to_string()),
                spec.replacements.len(),
                if spec.cumulative { ", cumulative" } else { "" }
            );
            Ok(())
        }
        ModuleCommand::Build(args) => {
            let kernel = kernel_dir(&args.kdir)?;
            let ko = kmod::module::build(
                &args.dir,
                &kernel,
                std::time::Duration::from_secs(args.timeout_secs),
            )?;
            println!("built {}", ko.display());
            Ok(())
        }
        ModuleCommand::Keygen(args) => keygen(&args),
        ModuleCommand::Sign(args) => {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(metadata) = std::fs::metadata(&args.key) {
                if metadata.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(
                        key = %args.key.display(),
                        "the signing key is readable by other users; chmod 600 it"
                    );
                }
            }
            let key = signature::parse_private_key(&read(&args.key)?)
                .with_context(|| format!("reading the key {}", args.key.display()))?;
            let cert = signature::parse_certificate(&read(&args.cert)?)
                .with_context(|| format!("reading the certificate {}", args.cert.display()))?;
            let module = read(&args.module)?;
            kmod::modinfo::read(&module)
                .with_context(|| format!("{} is not a module", args.module.display()))?;
            let signed = signature::sign(&module, &key, &cert)
                .with_context(|| format!("signing {}", args.module.display()))?;
            let out = args.output.as_deref().unwrap_or(&args.module);
            write_atomically(out, &signed)?;
            let info = signature::inspect(&signed)?;
            println!(
                "signed {} by {} (key {}, {})",
                out.display(),
                info.signer,
                info.key_id,
                info.hash
            );
            Ok(())
        }
        ModuleCommand::Verify(args) => {
            let cert = signature::parse_certificate(&read(&args.cert)?)
                .with_context(|| format!("reading the certificate {}", args.cert.display()))?;
            let info = signature::verify(&read(&args.module)?, &cert)
                .with_context(|| format!("{}: bad signature", args.module.display()))?;
            println!(
                "{}: good signature by {} (key {}, {})",
                args.module.display(),
                info.signer,
                info.key_id,
                info.hash
            );
            Ok(())
        }
        ModuleCommand::Info(args) => {
            let info = kmod::modinfo::read(&read(&args.module)?)
                .with_context(|| format!("reading {}", args.module.display()))?;
            let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            println!("name:       {}", shown(&info.name));
            println!("vermagic:   {}", shown(&info.vermagic));
            println!("livepatch:  {}", if info.livepatch { "yes" } else { "no" });
            println!("license:    {}", shown(&info.license));
            println!("sha256:     {}", info.sha256);
            match &info.signature {
                Some(s) => {
                    println!("signer:     {}", s.signer);
                    println!("sig_key:    {}", s.key_id);
                    println!("sig_hash:   {}", s.hash);
                }
                None => println!("signature:  none"),
            }
            for function in &info.replaces {
                println!("replaces:   {function}");
            }
            let own_keys = info
                .keys
                .iter()
                .filter(|(k, _)| k.starts_with("graftbench.") && k != "graftbench.klp_layout");
            for (key, value) in own_keys {
                println!("{key}: {value}");
            }
            Ok(())
        }
    }
}

fn keygen(args: &KeygenArgs) -> Result<()> {
    for path in [&args.key, &args.cert] {
        if path.exists() && !args.force {
            bail!("{} exists: pass --force to replace it", path.display());
        }
    }
    let pair = kmod::keys::generate(&args.common_name, args.bits, args.days)?;
    // The key is created 0600 from the start, never readable by others even briefly.
    if args.force {
        let _ = std::fs::remove_file(&args.key);
    }
    let mut key = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.key)
        .with_context(|| format!("creating {}", args.key.display()))?;
    key.write_all(pair.private_key_pem.as_bytes())
        .with_context(|| format!("writing {}", args.key.display()))?;
    std::fs::write(&args.cert, pair.certificate_pem)
        .with_context(|| format!("writing {}", args.cert.display()))?;
    println!(
        "wrote {} (private, 0600) and {}",
        args.key.display(),
        args.cert.display()
    );
    Ok(())
}

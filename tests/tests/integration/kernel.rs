//! The Debian 6.1 kernel in QEMU loads, runs and unloads the livepatch modules Graftbench
//! generates, builds and signs, and refuses a damaged signature.
//!
//! Needs the headers, qemu-system-x86, busybox-static and cpio (`cargo xtask test`
//! installs them) and the kernel image, which this test downloads once into
//! `$GRAFTBENCH_KERNEL_LAB` (`cargo xtask test` sets it to its build cache, outside the
//! clone), else `target/kernel-lab/` (apt-get download linux-image-6.1.0-56-amd64,
//! 70 MB). The boot is
//! under QEMU's TCG (no KVM on these machines) with a hard time limit; on failure the
//! whole serial console is printed.

use kmod::module::{self, KernelDir, ModuleSpec};
use kmod::signature;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KDIR: &str = "/usr/src/linux-headers-6.1.0-56-amd64";
const IMAGE_PACKAGE: &str = "linux-image-6.1.0-56-amd64";
const VMLINUZ: &str = "./boot/vmlinuz-6.1.0-56-amd64";
const BOOT_LIMIT: Duration = Duration::from_secs(60);

fn run(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The kernel image, downloaded once.
fn vmlinuz() -> PathBuf {
    let lab = std::env::var_os("GRAFTBENCH_KERNEL_LAB")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kernel-lab"));
    let image = lab.join("vmlinuz-6.1.0-56-amd64");
    if image.exists() {
        return image;
    }
    std::fs::create_dir_all(&lab).unwrap();
    run(Command::new("apt-get")
        .args(["download", "-q", IMAGE_PACKAGE])
        .current_dir(&lab));
    let deb = std::fs::read_dir(&lab)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("downloaded package");
    let part = lab.join("vmlinuz.part");
    let script = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -O {VMLINUZ} > '{}'",
        deb.display(),
        part.display()
    );
    run(Command::new("sh").arg("-c").arg(script));
    std::fs::rename(&part, &image).unwrap();
    std::fs::remove_file(deb).unwrap();
    image
}

/// A replacement of fs/proc/cmdline.c's cmdline_proc_show() printing `text`.
fn replacement(function: &str, text: &str) -> String {
    format!(
        "#include <linux/seq_file.h>\n\
         int {function}(struct seq_file *m, void *v);\n\
         int {function}(struct seq_file *m, void *v)\n\
         {{\n\tseq_printf(m, \"%s\\n\", \"{text}\");\n\treturn 0;\n}}\n"
    )
}

/// Generates, builds and signs one module; returns the signed bytes.
fn signed_module(
    work: &Path,
    kernel: &KernelDir,
    name: &str,
    c_source: String,
    cumulative: bool,
    key: &rsa::RsaPrivateKey,
    cert: &x509_cert::Certificate,
) -> Vec<u8> {
    let dir = work.join(name);
    let function = format!("{name}_cmdline_proc_show");
    let spec = ModuleSpec {
        name: name.to_owned(),
        replacements: vec![format!("vmlinux:cmdline_proc_show={function}")
            .parse()
            .unwrap()],
        cumulative,
        c_source,
        keys: vec![("revision".into(), format!("{name}-test"))],
        klp_symbols: Vec::new(),
    };
    let limit = Duration::from_secs(300);
    module::generate(&dir, &spec, kernel, limit).unwrap_or_else(|e| panic!("{e}"));
    let ko = module::build(&dir, kernel, limit).unwrap_or_else(|e| panic!("{e}"));
    signature::sign(&std::fs::read(ko).unwrap(), key, cert).expect("sign")
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
say() { echo "GB: $*"; }
settle() {
    # Wait for the patch's transition to finish (or its directory to go away).
    for i in $(seq 1 200); do
        t=$(cat /sys/kernel/livepatch/$1/transition 2>/dev/null || echo gone)
        [ "$t" = 0 ] || [ "$t" = gone ] && break
        sleep 0.05
    done
}
gone() {
    for i in $(seq 1 200); do [ -d /sys/kernel/livepatch/$1 ] || break; sleep 0.05; done
}
say "before: $(cat /proc/cmdline)"
insmod /gb_cmdline.ko && say "insmod: ok" || say "insmod: failed"
settle gb_cmdline
say "transition: $(cat /sys/kernel/livepatch/gb_cmdline/transition)"
say "enabled: $(cat /sys/kernel/livepatch/gb_cmdline/enabled)"
say "patched: $(cat /proc/cmdline)"
echo 0 > /sys/kernel/livepatch/gb_cmdline/enabled
gone gb_cmdline
rmmod gb_cmdline && say "rmmod: ok" || say "rmmod: failed"
say "after: $(cat /proc/cmdline)"
insmod /gb_bad.ko 2>&1 | sed 's/^/GB: bad: /'
insmod /gb_klp.ko && settle gb_klp && say "klp: $(cat /proc/cmdline)"
echo 0 > /sys/kernel/livepatch/gb_klp/enabled
gone gb_klp
rmmod gb_klp && say "klp rmmod: ok"
say "cumulative"
insmod /gb_v1.ko && settle gb_v1 && say "v1: $(cat /proc/cmdline)"
insmod /gb_v2.ko && settle gb_v2 && gone gb_v1
say "v2: $(cat /proc/cmdline)"
say "v1 patch after v2: $([ -d /sys/kernel/livepatch/gb_v1 ] && echo present || echo gone)"
rmmod gb_v1 && insmod /gb_v1.ko && settle gb_v1 && gone gb_v2
say "downgraded: $(cat /proc/cmdline)"
say "v2 patch after downgrade: $([ -d /sys/kernel/livepatch/gb_v2 ] && echo present || echo gone)"
dmesg | grep -E "livepatch|gb_" | sed 's/^/GB-K: /'
say "done"
poweroff -f
"#;

/// Boots the kernel with an initramfs of busybox, `/init` and `files`; returns the serial
/// console.
fn boot(work: &Path, files: &[(&str, Vec<u8>)]) -> String {
    let root = work.join("initramfs");
    for dir in ["bin", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    std::fs::write(root.join("init"), INIT).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("init"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, bytes) in files {
        std::fs::write(root.join(name), bytes).unwrap();
    }
    let initrd = work.join("initrd.gz");
    run(Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find . | cpio -o -H newc 2>/dev/null | gzip -1 > '{}'",
            initrd.display()
        ))
        .current_dir(&root));
    let console = work.join("console.log");
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "1024",
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(vmlinuz())
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&console).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64");
    let started = Instant::now();
    loop {
        if qemu.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > BOOT_LIMIT {
            let _ = qemu.kill();
            let _ = qemu.wait();
            panic!(
                "the guest did not power off within {} s; console:\n{}",
                BOOT_LIMIT.as_secs(),
                std::fs::read_to_string(&console).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    String::from_utf8_lossy(&std::fs::read(&console).unwrap()).into_owned()
}

/// The tools the lab needs; `cargo xtask test` installs them, a bare `cargo test` is
/// told how.
fn require_tools() {
    for (path, package) in [
        ("/usr/bin/qemu-system-x86_64", "qemu-system-x86"),
        ("/usr/share/doc/busybox-static", "busybox-static"),
        ("/bin/cpio", "cpio"),
        (KDIR, "linux-headers-6.1.0-56-amd64"),
    ] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: `cargo xtask setup --tests` installs {package}"
        );
    }
}

#[test]
fn livepatch_modules_patch_unpatch_replace_and_a_bad_signature_is_refused() {
    require_tools();
    let kernel = KernelDir::new(Path::new(KDIR)).expect("headers");
    let work = tempfile::tempdir().unwrap();
    let pair = kmod::keys::generate("Graftbench kernel test key", 2048, 30).expect("keygen");
    let key = signature::parse_private_key(pair.private_key_pem.as_bytes()).unwrap();
    let cert = signature::parse_certificate(pair.certificate_pem.as_bytes()).unwrap();
    let build = |name: &str, text: &str, cumulative: bool| {
        let c_source = replacement(&format!("{name}_cmdline_proc_show"), text);
        signed_module(
            work.path(),
            &kernel,
            name,
            c_source,
            cumulative,
            &key,
            &cert,
        )
    };
    // The real cmdline_proc_show prints saved_command_line, which vmlinux does not
    // export: reached through a livepatch relocation.
    let klp_source = "#include <linux/seq_file.h>\n\
        extern char *saved_command_line;\n\
        int gb_klp_cmdline_proc_show(struct seq_file *m, void *v);\n\
        int gb_klp_cmdline_proc_show(struct seq_file *m, void *v)\n\
        {\n\tseq_printf(m, \"%s (via klp)\\n\", saved_command_line);\n\treturn 0;\n}\n"
        .to_owned();
    let klp = signed_module(
        work.path(),
        &kernel,
        "gb_klp",
        klp_source,
        false,
        &key,
        &cert,
    );
    let main = build("gb_cmdline", "graftbench live patch active", false);
    // One flipped byte at the start of the PKCS#7 message.
    let (body, message) = signature::split(&main).unwrap();
    let mut bad = main.clone();
    bad[body.len()] ^= 0x01;
    assert_eq!(message[0], 0x30);
    let files = [
        ("gb_cmdline.ko", main.clone()),
        ("gb_bad.ko", bad),
        ("gb_klp.ko", klp),
        ("gb_v1.ko", build("gb_v1", "cumulative v1", true)),
        ("gb_v2.ko", build("gb_v2", "cumulative v2", true)),
    ];
    let console = boot(work.path(), &files);
    let lines: Vec<&str> = console
        .lines()
        .filter_map(|l| l.find("GB: ").map(|i| &l[i + 4..]))
        .map(str::trim_end)
        .collect();
    let expected = [
        "before: console=ttyS0 panic=-1 quiet",
        "insmod: ok",
        "transition: 0",
        "enabled: 1",
        "patched: graftbench live patch active",
        "rmmod: ok",
        "after: console=ttyS0 panic=-1 quiet",
        "bad: insmod: can't insert '/gb_bad.ko': Bad message",
        "klp: console=ttyS0 panic=-1 quiet (via klp)",
        "klp rmmod: ok",
        "cumulative",
        "v1: cumulative v1",
        "v2: cumulative v2",
        "v1 patch after v2: gone",
        "downgraded: cumulative v1",
        "v2 patch after downgrade: gone",
        "done",
    ];
    assert_eq!(lines, expected, "console:\n{console}");
    // The kernel's own account, from its log.
    let kernel_log: Vec<&str> = console
        .lines()
        .filter_map(|l| l.find("GB-K: ").map(|i| &l[i + 6..]))
        .collect();
    for said in [
        "livepatch: enabling patch 'gb_cmdline'",
        "livepatch: 'gb_cmdline': patching complete",
        "livepatch: 'gb_cmdline': unpatching complete",
        "livepatch: enabling patch 'gb_v2'",
        "livepatch: 'gb_v2': patching complete",
    ] {
        assert!(
            kernel_log.iter().any(|l| l.contains(said)),
            "the kernel did not log `{said}`:\n{}",
            kernel_log.join("\n")
        );
    }
}

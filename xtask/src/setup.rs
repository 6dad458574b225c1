//! Idempotent installation of the toolchain and packages; says what it does, does nothing twice.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, anyhow, bail};

/// bpf-linker release known to build against LLVM 22 (the nightly's).
const BPF_LINKER_VERSION: &str = "0.13.0";
/// What the labs and tests run (a shell test that succeeds when it is there), and the Debian
/// package that has each.
const PACKAGES: &[(&str, &str)] = &[
    ("command -v ip", "iproute2"),
    ("command -v ethtool", "ethtool"),
    ("command -v tcpdump", "tcpdump"),
    ("command -v nsenter", "util-linux"),
    ("command -v python3", "python3"),
    // The peer of the interoperability tests and the baseline of the failover bench.
    ("command -v keepalived", "keepalived"),
    // The BGP speaker of active-active directors (e2e_bgp): the routers and the directors'
    // announcers. The policy below keeps the system's bird service from starting.
    ("command -v bird && command -v birdc", "bird2"),
    // The reference parser `/metrics` is checked with.
    (
        "/usr/bin/python3 -c 'import prometheus_client.openmetrics.parser'",
        "python3-prometheus-client",
    ),
    // The DNS server DNS_CHECK is tested against: the binary only, no service to hold back.
    ("command -v dnsmasq", "dnsmasq-base"),
    // The SMTP server SMTP_CHECK is tested against (Debian's, for Debian's python3).
    ("/usr/bin/python3 -c 'import aiosmtpd'", "python3-aiosmtpd"),
    // `systemd-analyze verify` of the unit (packaging tests). Without systemd as PID 1 the
    // package starts nothing, and the policy below holds its services back anyway.
    ("command -v systemd-analyze", "systemd"),
    // The kernel's NAT (nftables DNAT) the NAT bench compares xlb with, in the lab's namespace.
    ("command -v nft", "nftables"),
];

/// Stops Debian's maintainer scripts from starting the services they install (keepalived
/// would start on the machine's own interfaces): invoke-rc.d asks this and obeys 101.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

pub fn ensure() -> Result<()> {
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    ensure_packages()
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn ensure_rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .context("the eBPF crate needs the nightly toolchain (rustup toolchain install nightly)")?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

/// The LLVM major version of the nightly rustc, and its libLLVM.
fn nightly_llvm() -> Result<(String, PathBuf)> {
    let vv = output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let version = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .ok_or_else(|| anyhow!("rustc +nightly -vV printed no LLVM version"))?;
    let major = version.split('.').next().unwrap_or_default().to_string();
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let libllvm = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .ok_or_else(|| anyhow!("no libLLVM.so.* in {}", lib.display()))?;
    Ok((major, libllvm))
}

fn ensure_bpf_linker() -> Result<()> {
    let (major, libllvm) = nightly_llvm()?;
    if bpf_linker_uses_llvm(&major) {
        return Ok(());
    }
    // Link bpf-linker against the nightly's own libLLVM: a prefix with lib/libLLVM.so and the
    // library's own file name both pointing at it.
    let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set"))?;
    let prefix = Path::new(&home).join(".cache/xlb/llvm-prefix");
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib)?;
    let own_name = libllvm
        .file_name()
        .ok_or_else(|| anyhow!("libLLVM has no file name"))?;
    for link in [lib.join("libLLVM.so"), lib.join(own_name)] {
        let _ = fs::remove_file(&link);
        symlink(&libllvm, &link).with_context(|| format!("linking {}", link.display()))?;
    }
    eprintln!(
        "xtask: installing bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {major}"
    );
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
        ])
        .args(["--features", &format!("llvm-{major}")])
        .env("LLVM_PREFIX", &prefix))
}

/// Whether the installed bpf-linker runs and loads an LLVM of the nightly's major version.
fn bpf_linker_uses_llvm(major: &str) -> bool {
    let Ok(path) = output(Command::new("sh").args(["-c", "command -v bpf-linker"])) else {
        return false;
    };
    let Ok(libs) = output(Command::new("ldd").arg(path.trim())) else {
        return false;
    };
    let runs = Command::new(path.trim())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    runs && !libs.contains("not found") && libs.contains(&format!("libLLVM.so.{major}"))
}

/// Whether a shell test succeeds (quietly).
fn have(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", command])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(cmd, _)| !have(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    let own_policy = !std::path::Path::new(POLICY_RC_D).exists();
    if own_policy {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(POLICY_RC_D, "#!/bin/sh\nexit 101\n")
            .with_context(|| format!("writing {POLICY_RC_D}"))?;
        std::fs::set_permissions(POLICY_RC_D, std::fs::Permissions::from_mode(0o755))?;
    }
    let installed = run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    if own_policy {
        let _ = std::fs::remove_file(POLICY_RC_D);
    }
    installed
}

//! `cargo xtask package`: a Debian package of the release `xlb`, built with `dpkg-deb` alone.
//!
//! The tree: `/usr/sbin/xlb`, the unit `/lib/systemd/system/xlb@.service`, the man pages
//! `/usr/share/man/man8/*.8.gz` (`xlb man`), `/usr/share/doc/xlb/{README.md,copyright}`. No
//! conffile: the configuration is the operator's own /etc/keepalived/keepalived.conf, which the
//! package neither ships nor touches.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const LICENSE: &str = "MIT OR Apache-2.0";
const MAINTAINER: &str = "xlb developers <xlb@localhost>";

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Where cargo puts its output: `CARGO_TARGET_DIR`, or `target` in the workspace.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// Builds the package from the release binary (already built); returns the .deb's path.
pub fn build(binary: &Path) -> Result<PathBuf> {
    let root = workspace_root();
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string();
    let out_dir = target_dir().join("package");
    let tree = out_dir.join(format!("xlb_{VERSION}_{arch}"));
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }

    let sbin = tree.join("usr/sbin");
    fs::create_dir_all(&sbin)?;
    install(binary, &sbin.join("xlb"), 0o755)?;
    // Symbols are for debugging builds, not for every director's disk.
    if which("strip") {
        run(Command::new("strip")
            .arg("--strip-unneeded")
            .arg(sbin.join("xlb")))?;
    }

    let units = tree.join("lib/systemd/system");
    fs::create_dir_all(&units)?;
    install(
        &root.join("packaging/xlb@.service"),
        &units.join("xlb@.service"),
        0o644,
    )?;

    let man8 = tree.join("usr/share/man/man8");
    run(Command::new(sbin.join("xlb")).arg("man").arg(&man8))?;
    for page in fs::read_dir(&man8)? {
        let page = page?.path();
        fs::set_permissions(&page, fs::Permissions::from_mode(0o644))?;
        // -n: no name or time stamp inside, so that the same pages give the same package.
        run(Command::new("gzip").args(["-9", "-n", "-f"]).arg(&page))?;
    }

    let doc = tree.join("usr/share/doc/xlb");
    fs::create_dir_all(&doc)?;
    install(&root.join("README.md"), &doc.join("README.md"), 0o644)?;
    fs::write(doc.join("copyright"), copyright())?;
    fs::set_permissions(doc.join("copyright"), fs::Permissions::from_mode(0o644))?;

    let depends = depends(&sbin.join("xlb"))?;
    let installed_kib = du_kib(&tree)?;
    let debian = tree.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    fs::write(
        debian.join("control"),
        control(&arch, &depends, installed_kib),
    )?;
    fs::write(debian.join("md5sums"), md5sums(&tree)?)?;
    for f in ["control", "md5sums"] {
        fs::set_permissions(debian.join(f), fs::Permissions::from_mode(0o644))?;
    }
    // Directories 0755 whatever the umask.
    set_dir_modes(&tree)?;

    let deb = out_dir.join(format!("xlb_{VERSION}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&tree)
        .arg(&deb))?;
    Ok(deb)
}

/// Prints what the package holds, and lintian's opinion where lintian is installed.
pub fn check(deb: &Path) -> Result<()> {
    run(Command::new("dpkg-deb").arg("--info").arg(deb))?;
    run(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    if which("lintian") {
        // Findings are printed, not fatal: lintian's taste changes between releases.
        let _ = run(Command::new("lintian").arg(deb));
    } else {
        eprintln!("xtask: lintian is not installed; skipping it");
    }
    Ok(())
}

fn control(arch: &str, depends: &str, installed_kib: u64) -> String {
    format!(
        "Package: xlb\n\
         Version: {VERSION}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {installed_kib}\n\
         Depends: {depends}\n\
         Section: net\n\
         Priority: optional\n\
         Description: XDP load balancer for highly available virtual IPs\n \
         xlb reads keepalived.conf (virtual_server, real_server, the health checkers\n \
         and vrrp_instance) and forwards the virtual services' traffic in XDP by\n \
         Direct Routing, with weighted Maglev consistent hashing, speaking VRRP as\n \
         keepalived does. It replaces keepalived with LVS on a director.\n \
         .\n \
         One instance per interface: systemctl enable --now xlb@eth0.\n"
    )
}

fn copyright() -> String {
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: xlb\n\
         \n\
         Files: *\n\
         Copyright: the xlb developers\n\
         License: {LICENSE}\n \
         Dual-licensed: MIT, or Apache-2.0 (/usr/share/common-licenses/Apache-2.0), at\n \
         the user's choice.\n"
    )
}

/// The packages of the shared libraries the binary loads (ldd), as a Depends field. libc6
/// gets the newest GLIBC_ symbol version the binary asks for.
fn depends(binary: &Path) -> Result<String> {
    let ldd = output(Command::new("ldd").arg(binary))?;
    let mut packages = std::collections::BTreeSet::new();
    for line in ldd.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        let Some(path) = path else { continue };
        let owner = dpkg_owner(path)?;
        packages.insert(owner);
    }
    if packages.is_empty() {
        bail!(
            "ldd found no shared library in {}:\n{ldd}",
            binary.display()
        );
    }
    let glibc = newest_glibc_symbol(&fs::read(binary)?);
    Ok(packages
        .into_iter()
        .map(|p| match (&*p, &glibc) {
            ("libc6", Some(v)) => format!("libc6 (>= {v})"),
            _ => p,
        })
        .collect::<Vec<_>>()
        .join(", "))
}

/// The package that installed `path` (following /lib -> /usr/lib on merged-/usr systems).
fn dpkg_owner(path: &str) -> Result<String> {
    let mut candidates = vec![path.to_string()];
    if let Ok(real) = fs::canonicalize(path) {
        candidates.push(real.to_string_lossy().into_owned());
    }
    for c in candidates.clone() {
        if let Some(rest) = c.strip_prefix("/usr") {
            candidates.push(rest.to_string());
        } else {
            candidates.push(format!("/usr{c}"));
        }
    }
    for c in &candidates {
        if let Ok(out) = output(Command::new("dpkg").args(["-S", c])) {
            // "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6"
            if let Some(pkg) = out.lines().next().and_then(|l| l.split(':').next()) {
                return Ok(pkg.trim().to_string());
            }
        }
    }
    bail!("no package owns {path} (dpkg -S)")
}

/// The highest `GLIBC_2.N` version string in the binary: what its versioned symbols need.
pub fn newest_glibc_symbol(bytes: &[u8]) -> Option<String> {
    let needle = b"GLIBC_2.";
    let mut best: Option<(u32, u32)> = None;
    let mut i = 0;
    while let Some(pos) = bytes[i..].windows(needle.len()).position(|w| w == needle) {
        let start = i + pos + needle.len();
        let digits = |from: usize| {
            bytes[from..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let minor_len = digits(start);
        i = start;
        if minor_len == 0 {
            continue;
        }
        let minor: u32 = std::str::from_utf8(&bytes[start..start + minor_len])
            .ok()?
            .parse()
            .ok()?;
        let mut patch = 0;
        let after = start + minor_len;
        if bytes.get(after) == Some(&b'.') {
            let n = digits(after + 1);
            if n > 0 {
                patch = std::str::from_utf8(&bytes[after + 1..after + 1 + n])
                    .ok()?
                    .parse()
                    .ok()?;
            }
        }
        best = best.max(Some((minor, patch)));
    }
    best.map(|(minor, patch)| match patch {
        0 => format!("2.{minor}"),
        p => format!("2.{minor}.{p}"),
    })
}

fn du_kib(tree: &Path) -> Result<u64> {
    let mut total = 0;
    for f in files(tree)? {
        total += fs::metadata(tree.join(&f))?.len().div_ceil(1024);
    }
    Ok(total)
}

fn md5sums(tree: &Path) -> Result<String> {
    let mut text = String::new();
    for f in files(tree)? {
        let out = output(Command::new("md5sum").arg(&f).current_dir(tree))?;
        text.push_str(&out);
    }
    Ok(text)
}

/// Regular files of the tree outside DEBIAN, relative, sorted.
fn files(tree: &Path) -> Result<Vec<PathBuf>> {
    fn walk(tree: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let rel = path.strip_prefix(tree)?.to_path_buf();
            if rel == Path::new("DEBIAN") {
                continue;
            }
            if path.is_dir() {
                walk(tree, &path, out)?;
            } else {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(tree, tree, &mut out)?;
    out.sort();
    Ok(out)
}

fn set_dir_modes(dir: &Path) -> Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            set_dir_modes(&path)?;
        }
    }
    Ok(())
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn which(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {command} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_glibc_version_wins() {
        let bytes = b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0GLIBC_PRIVATE\0GLIBC_2.3.4\0";
        assert_eq!(newest_glibc_symbol(bytes).as_deref(), Some("2.34"));
        assert_eq!(
            newest_glibc_symbol(b"GLIBC_2.2.5").as_deref(),
            Some("2.2.5")
        );
        assert_eq!(newest_glibc_symbol(b"nothing here"), None);
    }

    #[test]
    fn the_control_file_has_no_conffiles_and_continues_its_description() {
        let text = control("amd64", "libc6 (>= 2.34)", 4096);
        assert!(text.starts_with("Package: xlb\nVersion: "));
        assert!(text.contains("\nArchitecture: amd64\n"));
        assert!(text.contains("\nDepends: libc6 (>= 2.34)\n"));
        assert!(!text.contains("Conffiles"));
        // Every line after Description: is a continuation (starts with a space).
        let description = text.split("Description: ").nth(1).unwrap();
        for line in description.lines().skip(1) {
            assert!(line.starts_with(' '), "{line:?}");
        }
        assert!(text.ends_with('\n'));
    }
}

//! Where one xlb's data plane lives, and the lock that makes it one process's alone.
//!
//! An xlb instance is an interface in a network namespace. Its pins live in
//! `<bpffs>/xlb/[netns-N/]<interface>/`, its pidfile and control socket in
//! `/run/xlb/[netns-N/]<interface>.{pid,sock}`; the `netns-N` level appears only outside the
//! host's network namespace, so that two xlbs in two namespaces, each on its own `eth0`, never
//! share a pin or a pidfile. The running xlb holds an exclusive `flock` on its pin directory for
//! its whole life: a second one is refused, and nothing that does not hold the lock removes or
//! replaces a pin.

use std::{
    fmt,
    fs::{self, File},
    os::{
        fd::AsRawFd as _,
        unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
    str::FromStr,
};

use anyhow::{Context as _, Result, bail};

/// The kernel's `IFNAMSIZ`: names are at most 15 bytes plus the NUL.
const IFNAMSIZ: usize = 16;

/// A network interface name, valid as the kernel's `dev_valid_name` has it: it is used in
/// paths, so `/`, `.`, `..` and the empty name never get that far.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceName(String);

impl InterfaceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for InterfaceName {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        let why = if name.is_empty() {
            Some("it is empty".to_string())
        } else if name.len() >= IFNAMSIZ {
            Some(format!(
                "it is {} bytes long, the kernel allows {}",
                name.len(),
                IFNAMSIZ - 1
            ))
        } else if name == "." || name == ".." {
            Some("`.` and `..` are not interface names".to_string())
        } else {
            name.chars()
                .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
                .map(|c| format!("it contains {c:?}"))
        };
        match why {
            Some(why) => Err(format!(
                "`{}` is not an interface name: {why}",
                name.escape_debug()
            )),
            None => Ok(Self(name.to_string())),
        }
    }
}

/// The inode the kernel gives the initial network namespace (`PROC_NET_INIT_INO`, Linux 6.x);
/// on older kernels the host's namespace is recognised as PID 1's.
const PROC_NET_INIT_INO: u64 = 0xEFFF_FFF9;

/// `netns-N` when this process runs outside the host's network namespace, else `None`.
pub fn netns_tag() -> Result<Option<String>> {
    let own = fs::metadata("/proc/self/ns/net")
        .context("reading /proc/self/ns/net")?
        .ino();
    if own == PROC_NET_INIT_INO {
        return Ok(None);
    }
    match fs::metadata("/proc/1/ns/net") {
        Ok(init) if init.ino() == own => Ok(None),
        _ => Ok(Some(format!("netns-{own}"))),
    }
}

/// Every path of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstancePaths {
    pub interface: InterfaceName,
    /// The BPF filesystem (or a directory in one) the pins go under.
    pub bpffs: PathBuf,
    pub pin_dir: PathBuf,
    pub pidfile: PathBuf,
    /// The control socket, beside the pidfile.
    pub socket: PathBuf,
}

impl InstancePaths {
    /// The paths of `interface` in this network namespace. A pidfile given on the command line
    /// moves the control socket with it.
    pub fn new(bpffs: &Path, interface: &InterfaceName, pidfile: Option<&Path>) -> Result<Self> {
        let tag = netns_tag()?;
        let mut pin_dir = bpffs.join("xlb");
        let mut run_dir = PathBuf::from("/run/xlb");
        if let Some(tag) = &tag {
            pin_dir.push(tag);
            run_dir.push(tag);
        }
        pin_dir.push(interface.as_str());
        let pidfile = match pidfile {
            Some(p) => p.to_path_buf(),
            None => run_dir.join(format!("{interface}.pid")),
        };
        Ok(Self {
            interface: interface.clone(),
            bpffs: bpffs.to_path_buf(),
            socket: pidfile.with_extension("sock"),
            pin_dir,
            pidfile,
        })
    }
}

/// The exclusive lock on an instance's pin directory, held while the instance runs. The kernel
/// drops it when the process dies, however it dies.
#[derive(Debug)]
pub struct InstanceLock {
    /// Open for as long as the lock is held: closing it releases the lock.
    _dir: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Creates the pin directory if needed and locks it, or says who holds it.
    pub fn acquire(pin_dir: &Path) -> Result<Self> {
        fs::create_dir_all(pin_dir)
            .with_context(|| format!("creating pin directory {}", pin_dir.display()))?;
        match Self::try_acquire(pin_dir)? {
            Some(lock) => Ok(lock),
            None => {
                let holder = lock_holder(pin_dir)
                    .map(|pid| format!("xlb (pid {pid})"))
                    .unwrap_or_else(|| "another xlb".to_string());
                bail!(
                    "{holder} already serves this interface with the pins in {}; stop it first \
                     (or give this one another --bpffs directory)",
                    pin_dir.display()
                )
            }
        }
    }

    /// The lock if nobody holds it, `None` if somebody does.
    pub fn try_acquire(pin_dir: &Path) -> Result<Option<Self>> {
        let dir = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(pin_dir)
            .with_context(|| format!("opening pin directory {}", pin_dir.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(e).with_context(|| format!("locking {}", pin_dir.display()));
        }
        Ok(Some(Self {
            _dir: dir,
            path: pin_dir.to_path_buf(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid holding the lock on `dir`, from /proc/locks (`N: FLOCK ADVISORY WRITE PID MAJ:MIN:INO
/// ...`), if it can be found.
pub fn lock_holder(dir: &Path) -> Option<u32> {
    let meta = fs::metadata(dir).ok()?;
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let want = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A blocked waiter's line starts with `->`; only the holder's has the kind first.
        let at = fields.iter().position(|f| *f == "FLOCK")?;
        let (pid, device) = (fields.get(at + 3)?, fields.get(at + 4)?);
        device_matches(device, &want, major, minor, meta.ino())
            .then(|| pid.parse().ok())
            .flatten()
    })
}

/// /proc/locks prints the device as hex `MAJ:MIN` of at least two digits each.
fn device_matches(field: &str, want: &str, major: u32, minor: u32, ino: u64) -> bool {
    if field == want {
        return true;
    }
    let mut parts = field.split(':');
    let (Some(ma), Some(mi), Some(i)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    u32::from_str_radix(ma, 16) == Ok(major)
        && u32::from_str_radix(mi, 16) == Ok(minor)
        && i.parse::<u64>() == Ok(ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked_as_the_kernel_does() {
        for good in ["eth0", "veth-a.10", "enp0s31f6", "x", "a23456789012345"] {
            assert!(good.parse::<InterfaceName>().is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../xlb/eth0",
            "eth0/",
            "a234567890123456",
            "eth 0",
            "eth0:1",
            "eth\n0",
        ] {
            let e = bad.parse::<InterfaceName>().unwrap_err();
            assert!(e.contains("is not an interface name"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() {
        let dir = std::env::temp_dir().join(format!("xlb-lock-{}", std::process::id()));
        let first = InstanceLock::acquire(&dir).unwrap();
        // flock locks belong to the open file: a second open in this process conflicts too.
        assert!(InstanceLock::try_acquire(&dir).unwrap().is_none());
        let e = InstanceLock::acquire(&dir).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(first);
        assert!(InstanceLock::try_acquire(&dir).unwrap().is_some());
        fs::remove_dir(&dir).unwrap();
    }
}

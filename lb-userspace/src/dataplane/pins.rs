//! The pin set: the program, link and maps an xlb leaves in its pin directory so that a
//! restart takes over without a gap, and the BPF filesystem they live on.
//!
//! Only the holder of the instance lock ([`crate::instance::InstanceLock`]) reads, replaces or
//! removes a pin set. A pin set is adopted only when it belongs to the interface as it is now:
//! one whose XDP link was severed (the interface was deleted, its namespace or veth re-created,
//! the NIC re-plugged) or that is attached elsewhere is removed, and xlb starts clean.

use std::{
    fs,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use lb_common::names;

/// Every map the program pins, by name.
pub const MAP_NAMES: [&str; 18] = [
    names::VIPS,
    names::VIP_FILTER,
    names::VIP_ADDRS,
    names::RINGS,
    names::MEMBERS,
    names::BACKENDS,
    names::TX_PORTS,
    names::CONTROL,
    names::CLAIMS,
    names::VIP_STATS,
    names::BACKEND_STATS,
    names::OUTCOMES,
    names::FLOWS,
    names::FLOW_EVENTS,
    names::RECENT_FLOWS,
    // Carried over with the flow table whose touches it records: a restart that started it
    // afresh would let SYNs skip the entries the old program left.
    names::FLOW_TOUCHES,
    names::NAT_SOURCES,
    names::NAT_FILTER,
];

/// The pinned XDP link and program.
pub const LINK_PIN: &str = "link";
pub const PROGRAM_PIN: &str = "prog";
/// Links to the other interfaces an instance serves (NAT's server side): `link-IFACE`.
const OTHER_LINK_PREFIX: &str = "link-";

/// The pin of the XDP link on `interface`: [`LINK_PIN`] for the instance's own interface (the
/// one its pins are named after), `link-IFACE` for another it also serves.
pub fn link_pin(interface: &str, own: bool) -> String {
    if own {
        LINK_PIN.to_string()
    } else {
        format!("{OTHER_LINK_PREFIX}{interface}")
    }
}

/// Removes every pin of the set and the directory if that leaves it empty.
pub fn remove_pin_set(dir: &Path) -> Result<()> {
    // Links to other interfaces first: removing the last reference detaches each.
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(OTHER_LINK_PREFIX) {
                let path = entry.path();
                fs::remove_file(&path).with_context(|| format!("unpinning {}", path.display()))?;
            }
        }
    }
    for entry in [LINK_PIN, PROGRAM_PIN].into_iter().chain(MAP_NAMES) {
        let path = dir.join(entry);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("unpinning {}", path.display())),
        }
    }
    Ok(())
}

/// Why the pin set in `dir` cannot be adopted for the interface with index `ifindex`, if it
/// cannot: its link is attached to another interface or to none.
pub fn foreign_pin_set(dir: &Path, ifindex: u32) -> Option<String> {
    foreign_link(&dir.join(LINK_PIN), ifindex)
}

/// Why the XDP link pinned at `link` cannot be adopted for the interface with index `ifindex`,
/// if it cannot.
pub fn foreign_link(link: &Path, ifindex: u32) -> Option<String> {
    if !link.exists() {
        return None;
    }
    match pinned_xdp_ifindex(link) {
        Ok(0) => {
            Some("its XDP link was severed: the interface it was attached to is gone".to_string())
        }
        Ok(other) if other != ifindex => Some(format!(
            "its XDP link is attached to interface index {other}, not to this one ({ifindex})"
        )),
        Ok(_) => None,
        Err(e) => Some(format!("its link cannot be read: {e:#}")),
    }
}

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_TYPE_XDP: u32 = 6;

/// The interface index an XDP link pinned at `path` is attached to; 0 once the kernel severed
/// it. (aya's `LinkInfo` does not expose the XDP part of `bpf_link_info`.)
pub fn pinned_xdp_ifindex(path: &Path) -> Result<u32> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .context("pin path contains a NUL byte")?;
    // union bpf_attr for BPF_OBJ_GET: pathname (u64), bpf_fd (u32), file_flags (u32).
    let mut attr = [0u64; 16];
    attr[0] = c_path.as_ptr() as u64;
    // SAFETY: the bpf syscall reads `attr` (and the NUL-terminated path it points to).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("opening {}", path.display()));
    }
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // struct bpf_link_info: type, id, prog_id (u32 each), then a union at offset 16 whose XDP
    // member is `__u32 ifindex`.
    let mut info = [0u32; 16];
    let mut attr = [0u64; 16];
    attr[0] = fd.as_raw_fd() as u64 | ((std::mem::size_of_val(&info) as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    // SAFETY: the kernel writes at most info_len bytes into `info`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("reading the link pinned at {}", path.display()));
    }
    if info[0] != BPF_LINK_TYPE_XDP {
        bail!("{} is not an XDP link (type {})", path.display(), info[0]);
    }
    Ok(info[4])
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into a zeroed struct of the right type.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(c_path.as_ptr(), &mut st) }) == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// The BPF filesystem pins go on. When xlb mounted it itself, it unmounts it again once it
/// holds nothing (a failed start, or a clean stop), and never on top of anyone's files.
#[derive(Debug)]
pub struct Bpffs {
    path: PathBuf,
    /// Set when this process mounted it (and created the directory, when it did).
    mounted: Option<Option<PathBuf>>,
}

impl Bpffs {
    /// Uses the BPF filesystem at `path`, or a directory inside one. Mounts one there only when
    /// `path` does not exist or is an empty directory (as `bpftool` does): mounting over files
    /// would hide them.
    pub fn ensure(path: &Path) -> Result<Self> {
        if is_bpffs(path) {
            return Ok(Self {
                path: path.to_path_buf(),
                mounted: None,
            });
        }
        let created = match fs::symlink_metadata(path) {
            Ok(meta) if !meta.is_dir() => {
                bail!("--bpffs {}: not a directory", path.display())
            }
            Ok(_) => {
                let mut entries =
                    fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?;
                if entries.next().is_some() {
                    bail!(
                        "--bpffs {}: not a BPF filesystem, and not empty; xlb mounts one only on \
                         an empty directory (mount one there yourself, or pick a directory under \
                         /sys/fs/bpf)",
                        path.display()
                    );
                }
                None
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
                // A new directory inside a BPF filesystem is on it already.
                if is_bpffs(path) {
                    return Ok(Self {
                        path: path.to_path_buf(),
                        mounted: None,
                    });
                }
                Some(path.to_path_buf())
            }
            Err(e) => return Err(e).with_context(|| format!("examining {}", path.display())),
        };
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .context("bpffs path contains a NUL byte")?;
        let fstype = c"bpf";
        // SAFETY: valid NUL-terminated strings; no data argument.
        let rc = unsafe {
            libc::mount(
                fstype.as_ptr(),
                c_path.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if let Some(dir) = &created {
                let _ = fs::remove_dir(dir);
            }
            bail!(
                "{} is not a BPF filesystem and mounting one failed: {e}",
                path.display()
            );
        }
        log::info!("mounted a BPF filesystem at {}", path.display());
        Ok(Self {
            path: path.to_path_buf(),
            mounted: Some(created),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmounts what this process mounted, if nothing is left on it (another xlb may have
    /// pinned there since: unmounting would destroy its pins).
    pub fn release(self) {
        let Some(created) = self.mounted else {
            return;
        };
        let xlb = self.path.join("xlb");
        let _ = remove_empty_dirs(&xlb);
        // The kernel's own entries (bpf_preload's iterators) are there on every new mount.
        let empty = fs::read_dir(&self.path).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .all(|e| matches!(e.file_name().to_str(), Some("maps.debug" | "progs.debug")))
        });
        if !empty {
            return;
        }
        let Ok(c_path) = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()) else {
            return;
        };
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } == 0 {
            log::info!("unmounted the BPF filesystem at {}", self.path.display());
            if let Some(dir) = created {
                let _ = fs::remove_dir(dir);
            }
        }
    }
}

/// Removes `dir` and the empty directories under it, depth first; stops at anything else.
fn remove_empty_dirs(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            let _ = remove_empty_dirs(&entry.path());
        }
    }
    fs::remove_dir(dir)
}

/// Removes the pin directory and its `xlb/[netns-N/]` parents when they are left empty.
pub fn remove_empty_parents(pin_dir: &Path, bpffs: &Path) {
    let mut dir = Some(pin_dir);
    while let Some(d) = dir {
        if d == bpffs || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

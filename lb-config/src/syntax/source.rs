//! Opens and reads one configuration file, refusing what is not one.
//!
//! A configuration is a regular file on a real filesystem. Anything else is
//! refused before a byte is read: a FIFO (whose reads block until some writer
//! appears), a device (`/dev/zero` never ends), a socket or a directory, and
//! files on the kernel's own filesystems (procfs, sysfs and friends), which
//! describe the running kernel and are never configurations. The file is
//! checked by path before it is opened (opening a device can act on it), then
//! opened with `O_NONBLOCK`, so that even opening a FIFO, which otherwise
//! waits for a writer, returns at once, and checked again on the open
//! descriptor, so a file swapped in between cannot slip through.

use std::fs::{File, FileType};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// Opening or reading failed (missing, no permission, ...).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Not a regular file, or one on a kernel filesystem: what it is (such
    /// as "a FIFO (named pipe)") and what was expected instead.
    #[error("found {what}, expected {expected}")]
    Refused { what: String, expected: String },
    /// Longer than the bytes left to read in this load.
    #[error("found more than {0} bytes")]
    TooLarge(u64),
}

/// Reads the file at `path` if it is a regular file on a real filesystem and
/// holds at most `limit` bytes. At most `limit + 1` bytes are ever read, so a
/// file whose size lies (or grows while read) cannot run away.
pub(crate) fn read_config(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    // Checked before opening too: opening a device can act on it (a tape
    // rewinds, a watchdog arms), so one is never opened if it can be told
    // from its path.
    refuse_special(std::fs::metadata(path)?.file_type())?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    // And on the open descriptor, against a file swapped in meanwhile.
    let meta = file.metadata()?;
    refuse_special(meta.file_type())?;
    if let Some(fs) = kernel_filesystem_of(&file)? {
        return Err(ReadError::Refused {
            what: format!("a file on {fs}"),
            expected: format!(
                "a file on an ordinary filesystem: {fs} holds kernel state, not configuration"
            ),
        });
    }
    // Sized from what the file says it holds, capped: the read below is
    // what enforces the limit.
    let expected = meta.len().min(limit.saturating_add(1));
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > limit) {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(bytes)
}

/// Refuses anything but a regular file, naming what it is.
fn refuse_special(kind: FileType) -> Result<(), ReadError> {
    if kind.is_file() {
        return Ok(());
    }
    let what = if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "a special file"
    };
    Err(ReadError::Refused {
        what: what.to_string(),
        expected: "a regular file".to_string(),
    })
}

/// The kernel filesystem `file` is on, if any.
fn kernel_filesystem_of(file: &File) -> io::Result<Option<&'static str>> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: fstatfs only writes into the zeroed struct we own, and the
        // descriptor is open for as long as `file` is borrowed.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(kernel_filesystem(st.f_type))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        Ok(None)
    }
}

/// The kernel filesystem at `dir`, if any: the glob walker does not look
/// inside these at all.
pub(crate) fn kernel_filesystem_at(dir: &Path) -> Option<&'static str> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: statfs reads the NUL-terminated path and only writes into
        // the zeroed struct we own.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(path.as_ptr(), &mut st) } != 0 {
            return None;
        }
        kernel_filesystem(st.f_type)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        None
    }
}

/// Filesystems whose files describe or steer the running kernel, by the
/// magic number statfs(2) reports (linux/magic.h). procfs and sysfs are the
/// ones `include /*/*` would reach; the others are mounted below /sys.
/// `f_type`'s width differs between C libraries, and the magic numbers are
/// 32-bit, so only the low 32 bits are compared.
#[cfg(target_os = "linux")]
fn kernel_filesystem<T: TryInto<i64>>(f_type: T) -> Option<&'static str> {
    const KERNEL_FILESYSTEMS: [(u32, &str); 9] = [
        (0x9fa0, "procfs"),
        (0x6265_6572, "sysfs"),
        (0x0027_e0eb, "cgroupfs"),
        (0x6367_7270, "cgroup2fs"),
        (0x6462_6720, "debugfs"),
        (0x7472_6163, "tracefs"),
        (0x7363_6673, "securityfs"),
        (0x6265_6570, "configfs"),
        (0xcafe_4a11, "bpffs"),
    ];
    let magic = f_type.try_into().ok()? as u32;
    KERNEL_FILESYSTEMS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

//! `track_file`: a number in a file that operators (or their tools) write, followed by
//! FILE_CHECK and by vrrp_instances (keepalived's trackers/track_file.c).
//!
//! - The file is read when it is closed after writing, moved in, or deleted (then it counts
//!   as 0): inotify on its directory, as keepalived does, so that a half-written file is
//!   never read. A missing file counts as 0.
//! - The number is read as C's `strtol(buf, NULL, 0)` reads it (`0x10`, `010`, `-3`, text
//!   after the digits ignored, no digits is 0); a number outside 32 bits is logged and
//!   ignored, keeping the previous value.
//! - [`vrrp_effect`] and [`checker_effect`] turn a value into what it does to an instance or
//!   a real server; they do no I/O.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lb_config::TrackFile;
use log::{info, warn};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

/// The value of every watched track_file, by name.
pub type FileValues = Arc<HashMap<String, watch::Receiver<i64>>>;

/// The longest text read from a file (keepalived reads 127 bytes).
const READ_MAX: usize = 127;

/// keepalived's `strtol(buf, NULL, 0)` over the file's text; `None` when the number does not
/// fit what keepalived accepts (it logs "Invalid number" and keeps the previous value).
pub fn parse_value(text: &[u8]) -> Option<i64> {
    let text = &text[..text.len().min(READ_MAX)];
    let mut i = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let negative = match text.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let rest = &text[i..];
    let (radix, digits) = match rest {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => (16, &rest[2..]),
        [b'0', ..] => (8, rest),
        _ => (10, rest),
    };
    let mut value: i128 = 0;
    for &b in digits {
        let Some(d) = (b as char).to_digit(radix) else {
            break;
        };
        value = value * i128::from(radix) + i128::from(d);
        if value > i128::from(i64::MAX) + 1 {
            // strtol's ERANGE.
            return None;
        }
    }
    let value = if negative { -value } else { value };
    (i128::from(i32::MIN)..=i128::from(i32::MAX) + 1)
        .contains(&value)
        .then_some(value as i64)
}

/// Reads a track file as keepalived does: a missing or empty file is 0; `None` is a number
/// to ignore.
pub fn read_value(path: &Path) -> Option<i64> {
    use std::io::Read as _;
    let Ok(mut file) = std::fs::File::open(path) else {
        return Some(0);
    };
    let mut buf = [0u8; READ_MAX];
    match file.read(&mut buf) {
        Ok(n) => {
            let value = parse_value(&buf[..n]);
            if value.is_none() {
                info!(
                    "Invalid number {} read from {} - ignoring",
                    String::from_utf8_lossy(&buf[..n]).trim(),
                    path.display()
                );
            }
            value
        }
        Err(_) => Some(0),
    }
}

/// What a track_file value does to a vrrp_instance that tracks it with `weight`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VrrpEffect {
    Fault,
    /// Added to the priority (keepalived caps it at 253).
    Priority(i32),
}

/// keepalived: with weight 0 a non-zero value is a fault (with `reverse`, a zero one);
/// otherwise value × weight (negated with `reverse`), -254 or below being a fault.
pub fn vrrp_effect(value: i64, weight: i32, reverse: bool) -> VrrpEffect {
    if weight == 0 {
        return if (value != 0) != reverse {
            VrrpEffect::Fault
        } else {
            VrrpEffect::Priority(0)
        };
    }
    let sign = if reverse { -1 } else { 1 };
    let status = i128::from(value) * i128::from(weight) * sign;
    if status <= -254 {
        VrrpEffect::Fault
    } else {
        VrrpEffect::Priority(status.min(253) as i32)
    }
}

/// What a track_file value does to a FILE_CHECK: `None` puts the checker down, `Some(w)`
/// keeps it up and adds w to the real server's weight. keepalived clamps value × weight to
/// 32 bits, the lowest value being its fault mark; with weight 0 a non-zero value (a zero
/// one with `reverse`) is a fault.
pub fn checker_effect(value: i64, weight: i32, reverse: bool) -> Option<i64> {
    if weight == 0 {
        return ((value != 0) == reverse).then_some(0);
    }
    let sign = if reverse { -1 } else { 1 };
    let status = (i128::from(value) * i128::from(weight) * sign)
        .clamp(i128::from(i32::MIN), i128::from(i32::MAX));
    (status > i128::from(i32::MIN)).then_some(status as i64)
}

/// `init_file`: at start-up (never on reload), writes the value to a missing file, or to any
/// file with `overwrite`.
pub fn initialise(files: &[TrackFile]) {
    for f in files {
        let Some(init) = f.init_file else {
            continue;
        };
        let path = Path::new(&f.file);
        let exists = path.exists();
        if exists && !init.overwrite {
            continue;
        }
        if exists && !path.is_file() {
            warn!(
                "Cannot initialise track file {} - it is not a regular file",
                f.name
            );
            continue;
        }
        if let Err(e) = std::fs::write(path, format!("{}\n", init.value)) {
            warn!(
                "Unable to initialise track file {} ({}): {e}",
                f.name, f.file
            );
        }
    }
}

/// A watched file: its name in its directory and the track_files (by name) that read it.
struct Watched {
    dir: PathBuf,
    file_name: Vec<u8>,
    path: PathBuf,
    senders: Vec<watch::Sender<i64>>,
}

/// Watches every file, then reads it; returns each one's value, by track_file name. Must be
/// called within a tokio runtime; the watch ends when every receiver is dropped.
pub fn watch_files(files: &[TrackFile]) -> FileValues {
    let mut watched: BTreeMap<PathBuf, Watched> = BTreeMap::new();
    // Each track_file's path, or None when its directory does not exist.
    let mut paths: Vec<(&str, Option<PathBuf>)> = Vec::new();
    for f in files {
        if paths.iter().any(|(name, _)| *name == f.name) {
            continue;
        }
        let Some((dir, file_name)) = resolve(Path::new(&f.file)) else {
            info!(
                "Track file directory for {} does not exist - it counts as 0",
                f.name
            );
            paths.push((&f.name, None));
            continue;
        };
        let path = dir.join(std::ffi::OsStr::from_bytes(&file_name));
        paths.push((&f.name, Some(path.clone())));
        watched.entry(path.clone()).or_insert_with(|| Watched {
            dir,
            file_name,
            path,
            senders: Vec::new(),
        });
    }
    let mut files: Vec<Watched> = watched.into_values().collect();
    let inotify = match Inotify::new() {
        _ if files.is_empty() => None,
        Ok(i) => Some(i),
        Err(e) => {
            warn!("Unable to monitor track files: {e}");
            None
        }
    };
    // Watched before the files are read: no write is missed in between.
    let by_watch = inotify.as_ref().map(|i| i.watch_all(&files));
    let mut values = HashMap::new();
    for (name, path) in paths {
        let value = path.as_deref().map_or(0, |p| read_value(p).unwrap_or(0));
        let (tx, rx) = watch::channel(value);
        values.insert(name.to_string(), rx);
        if let Some(w) = files.iter_mut().find(|w| Some(&w.path) == path.as_ref()) {
            w.senders.push(tx);
        }
    }
    if let (Some(inotify), Some(by_watch)) = (inotify, by_watch) {
        tokio::spawn(follow(inotify, files, by_watch));
    }
    Arc::new(values)
}

/// The file's directory with symbolic links resolved, and its name in it.
fn resolve(path: &Path) -> Option<(PathBuf, Vec<u8>)> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = path.file_name()?.as_bytes().to_vec();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = std::fs::canonicalize(parent).ok()?;
    dir.is_dir().then_some((dir, name))
}

/// A non-blocking inotify instance.
struct Inotify {
    fd: AsyncFd<OwnedFd>,
}

impl Inotify {
    fn new() -> io::Result<Self> {
        // SAFETY: inotify_init1 takes flags only and returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Inotify {
            // SAFETY: the AsyncFd owns the descriptor, which stays open as long as it does.
            fd: unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?,
        })
    }

    /// Watches a directory for files closed after writing, deleted or moved.
    fn watch(&self, dir: &Path) -> io::Result<i32> {
        let path = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        let mask = libc::IN_CLOSE_WRITE | libc::IN_DELETE | libc::IN_MOVE;
        // SAFETY: a valid inotify descriptor and a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// Watches the directory of each file; returns the files of each watch.
    fn watch_all(&self, files: &[Watched]) -> HashMap<i32, Vec<usize>> {
        let mut by_watch: HashMap<i32, Vec<usize>> = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            match self.watch(&f.dir) {
                Ok(wd) => by_watch.entry(wd).or_default().push(i),
                Err(e) => warn!("Unable to monitor track file {}: {e}", f.path.display()),
            }
        }
        by_watch
    }

    /// Waits for events and returns (watch, mask, name) of each.
    async fn events(&self) -> io::Result<Vec<(i32, u32, Vec<u8>)>> {
        let mut buf = [0u8; 4096];
        loop {
            let mut guard = self.fd.readable().await?;
            let read = guard.try_io(|fd| {
                // SAFETY: reading into a buffer we own, of its length.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match read {
                Ok(Ok(n)) => return Ok(parse_events(&buf[..n])),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Splits a read of inotify events: each is wd (i32), mask, cookie, len (u32), then a name
/// of len bytes padded with NULs.
pub fn parse_events(mut buf: &[u8]) -> Vec<(i32, u32, Vec<u8>)> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let word = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
        let Some(name) = buf.get(16..16 + len) else {
            break;
        };
        let name = name.split(|b| *b == 0).next().unwrap_or(&[]).to_vec();
        out.push((wd, mask, name));
        buf = &buf[16 + len..];
    }
    out
}

async fn follow(inotify: Inotify, files: Vec<Watched>, by_watch: HashMap<i32, Vec<usize>>) {
    // Nobody reads the values any more (a reload replaced them): stop watching.
    let unread = futures_util::future::join_all(
        files
            .iter()
            .flat_map(|f| f.senders.iter().map(|s| s.closed())),
    );
    tokio::pin!(unread);
    loop {
        let events = tokio::select! {
            _ = &mut unread => return,
            events = inotify.events() => events,
        };
        let events = match events {
            Ok(events) => events,
            Err(e) => {
                info!("inotify read() returned error - {e}");
                return;
            }
        };
        for (wd, mask, name) in events {
            if mask & libc::IN_ISDIR != 0 {
                continue;
            }
            for &i in by_watch.get(&wd).into_iter().flatten() {
                let f = &files[i];
                if f.file_name != name {
                    continue;
                }
                // A file deleted or moved away counts as 0.
                let value = if mask & (libc::IN_MOVED_FROM | libc::IN_DELETE) != 0 {
                    Some(0)
                } else {
                    read_value(&f.path)
                };
                if let Some(v) = value {
                    for tx in &f.senders {
                        tx.send_if_modified(|old| std::mem::replace(old, v) != v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_as_strtol_reads_them() {
        let cases: &[(&str, Option<i64>)] = &[
            ("5\n", Some(5)),
            ("  -12 apples", Some(-12)),
            ("+7", Some(7)),
            ("0x1f", Some(31)),
            ("0X1F\n", Some(31)),
            ("010", Some(8)),
            ("09", Some(0)),
            ("0x", Some(0)),
            ("", Some(0)),
            ("none", Some(0)),
            ("2147483648", Some(2_147_483_648)),
            ("2147483649", None),
            ("-2147483648", Some(-2_147_483_648)),
            ("-2147483649", None),
            ("99999999999999999999999", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_value(text.as_bytes()), *expected, "{text:?}");
        }
    }

    #[test]
    fn vrrp_effects_follow_keepalived() {
        use VrrpEffect::*;
        let cases = [
            // (value, weight, reverse, effect)
            (0, 0, false, Priority(0)),
            (1, 0, false, Fault),
            (0, 0, true, Fault),
            (3, 0, true, Priority(0)),
            (2, 10, false, Priority(20)),
            (2, 10, true, Priority(-20)),
            (30, 10, false, Priority(253)),
            (-30, 10, false, Fault),
            (-253, 1, false, Priority(-253)),
            (-254, 1, false, Fault),
        ];
        for (value, weight, reverse, effect) in cases {
            assert_eq!(
                vrrp_effect(value, weight, reverse),
                effect,
                "{value} {weight} {reverse}"
            );
        }
    }

    #[test]
    fn checker_effects_follow_keepalived() {
        let cases = [
            (0, 0, false, Some(0)),
            (5, 0, false, None),
            (0, 0, true, None),
            (4, 3, false, Some(12)),
            (4, 3, true, Some(-12)),
            (i64::from(i32::MIN), 1, false, None),
            (-2_000_000_000, 2, false, None),
            (2_000_000_000, 2, false, Some(i64::from(i32::MAX))),
        ];
        for (value, weight, reverse, effect) in cases {
            assert_eq!(
                checker_effect(value, weight, reverse),
                effect,
                "{value} {weight} {reverse}"
            );
        }
    }

    #[test]
    fn inotify_events_are_split() {
        let mut buf = Vec::new();
        for (wd, mask, name) in [(1i32, 8u32, &b"flag"[..]), (2, 512, b"")] {
            buf.extend_from_slice(&wd.to_ne_bytes());
            buf.extend_from_slice(&mask.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            let padded = if name.is_empty() { 0 } else { 16 };
            buf.extend_from_slice(&(padded as u32).to_ne_bytes());
            let mut n = name.to_vec();
            n.resize(padded, 0);
            buf.extend_from_slice(&n);
        }
        assert_eq!(
            parse_events(&buf),
            [(1, 8, b"flag".to_vec()), (2, 512, Vec::new())]
        );
    }

    /// A real file in a temporary directory: written, rewritten, deleted.
    #[tokio::test]
    async fn a_watched_file_is_read_when_written_and_zero_when_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flag");
        std::fs::write(&path, "3\n").unwrap();
        let file = TrackFile {
            name: "flag".into(),
            file: path.display().to_string(),
            weight: 1,
            weight_reverse: false,
            init_file: None,
            origin: Default::default(),
        };
        let values = watch_files(std::slice::from_ref(&file));
        let mut rx = values["flag"].clone();
        assert_eq!(*rx.borrow(), 3);
        let next = |rx: &mut watch::Receiver<i64>| {
            let mut rx = rx.clone();
            async move {
                tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
                    .await
                    .expect("a change within 5 s")
                    .unwrap();
                *rx.borrow_and_update()
            }
        };
        std::fs::write(&path, "-7").unwrap();
        assert_eq!(next(&mut rx).await, -7);
        rx.mark_unchanged();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(next(&mut rx).await, 0);
    }
}

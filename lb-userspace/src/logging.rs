//! The log on stderr. On a terminal or in a file: millisecond timestamps, as before. Under
//! systemd with stderr connected to the journal: no timestamp (the journal has its own) and a
//! `<N>` syslog priority before every line, which journald takes as the line's level, so that
//! `journalctl -p warning` and the colours work.
//!
//! The filter is `RUST_LOG`, by default `info` with netlink_proto's noise left out.
//!
//! Nothing that logs ever waits for stderr: lines go into a bounded queue that a thread of its
//! own writes out. When stderr is not being read (a stalled journald, a full pipe) the queue
//! fills and further lines are dropped and counted, and the count is logged once stderr moves
//! again. The VRRP thread logs on its real-time path; a blocking write there once stopped its
//! adverts long enough for a backup to take over.

use std::{
    io::Write as _,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    time::Duration,
};

use log::Level;

/// netlink_proto warns whenever a reply arrives for a request that timed out (a neighbour
/// probe, say): noise, not news.
const DEFAULT_FILTER: &str = "info,netlink_proto=error";

/// Lines the queue holds before it drops (a few seconds of the busiest logging xlb does).
const QUEUE_LINES: usize = 4096;
/// How long [`flush`] waits for the queue to be written out.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

enum Message {
    Line(Vec<u8>),
    /// Answered once every line before it was written.
    Flush(SyncSender<()>),
}

/// The logger's end of the queue.
struct Queue {
    tx: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

static QUEUE: OnceLock<SyncSender<Message>> = OnceLock::new();

impl std::io::Write for Queue {
    /// env_logger hands over one whole formatted record per write.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.tx.try_send(Message::Line(buf.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The writer is gone (the process is ending): nothing to write to.
            Err(TrySendError::Disconnected(_)) => {}
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes the queue to stderr. After lines were dropped, says how many (through the logger,
/// so that the notice has the log's format; the queue has room for it now).
fn write_out(rx: Receiver<Message>, dropped: Arc<AtomicU64>) {
    let mut stderr = std::io::stderr();
    for message in rx {
        match message {
            Message::Line(line) => {
                let _ = stderr.write_all(&line);
                let lost = dropped.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    log::warn!("{lost} log line(s) dropped: stderr was not being read");
                }
            }
            Message::Flush(done) => {
                let _ = stderr.flush();
                let _ = done.send(());
            }
        }
    }
}

/// Waits (at most 2 s) until every line logged so far is written: before the process exits.
pub fn flush() {
    let Some(tx) = QUEUE.get() else {
        return;
    };
    let (done_tx, done) = sync_channel(1);
    let deadline = std::time::Instant::now() + FLUSH_LIMIT;
    let mut message = Message::Flush(done_tx);
    // std's SyncSender has no send with a deadline: retry while the queue is full.
    loop {
        match tx.try_send(message) {
            Ok(()) => break,
            Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                message = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return,
        }
    }
    let _ = done.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
}

/// Installs the logger; call once, first thing in `main`.
pub fn init() {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(DEFAULT_FILTER));
    let journal = stderr_is_journal();
    let (tx, rx) = sync_channel(QUEUE_LINES);
    let dropped = Arc::new(AtomicU64::new(0));
    let writer = std::thread::Builder::new().name("xlb-log".into()).spawn({
        let dropped = dropped.clone();
        move || write_out(rx, dropped)
    });
    if writer.is_ok() {
        let _ = QUEUE.set(tx.clone());
        builder.target(env_logger::Target::Pipe(Box::new(Queue { tx, dropped })));
    }
    if journal {
        builder
            .write_style(env_logger::WriteStyle::Never)
            .format(|buf, record| {
                let text = format!("{}: {}", record.target(), record.args());
                buf.write_all(journal_lines(record.level(), &text).as_bytes())
            });
    } else {
        builder.format_timestamp_millis();
    }
    builder.init();
}

/// Whether stderr is the journal's stream: systemd sets `JOURNAL_STREAM=DEV:INODE` to the
/// stream it connected stdout/stderr to. A child that inherited the variable but whose stderr
/// was redirected (a shell in between, `2>file`) does not match and logs as on a terminal.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(parse_journal_stream) else {
        return false;
    };
    // SAFETY: fstat writes into a zeroed struct of the right type.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(libc::STDERR_FILENO, &mut st) }) == 0
        && st.st_dev as u64 == dev
        && st.st_ino as u64 == ino
}

/// `DEV:INODE`, both decimal, as systemd writes `JOURNAL_STREAM`.
pub fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// The syslog priority journald reads from a `<N>` prefix: err, warning, info, debug.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `text` with the level's `<N>` before each of its lines (journald reads one entry a line), and
/// a final newline.
pub fn journal_lines(level: Level, text: &str) -> String {
    let p = priority(level);
    let mut out = String::with_capacity(text.len() + 4);
    for line in text.lines() {
        out.push_str(&format!("<{p}>{line}\n"));
    }
    if out.is_empty() {
        out.push_str(&format!("<{p}>\n"));
    }
    out
}

/// What goes before a line written straight to stderr (not through the logger) at `level`:
/// its `<N>` under the journal, nothing elsewhere.
pub fn stderr_prefix(level: Level) -> String {
    if stderr_is_journal() {
        format!("<{}>", priority(level))
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(Level::Error), 3);
        assert_eq!(priority(Level::Warn), 4);
        assert_eq!(priority(Level::Info), 6);
        assert_eq!(priority(Level::Debug), 7);
        assert_eq!(priority(Level::Trace), 7);
    }

    #[test]
    fn every_line_carries_the_prefix() {
        assert_eq!(
            journal_lines(Level::Info, "lb_userspace::daemon: XDP attached"),
            "<6>lb_userspace::daemon: XDP attached\n"
        );
        assert_eq!(
            journal_lines(Level::Error, "first\nsecond"),
            "<3>first\n<3>second\n"
        );
        assert_eq!(journal_lines(Level::Warn, ""), "<4>\n");
    }

    #[test]
    fn journal_stream_is_device_and_inode() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("x:1"), None);
        assert_eq!(parse_journal_stream(""), None);
    }
}

//! Reading is bounded: include meshes, runaway lines, endless or special
//! files and host-wide globs end quickly with a few clear errors, never a hang
//! or a flood. Every load here runs on its own thread under a generous time
//! bound, so a regression fails the test instead of hanging the suite.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use lb_config::limits::{
    MAX_ERRORS, MAX_FILES, MAX_GLOB_MATCHES, MAX_LINE_BYTES, MAX_TOTAL_BYTES, MAX_WARNINGS,
};
use lb_config::{Errors, Loaded};

/// Far above what any case takes (well under a second): a bound against
/// hangs, not a timing assertion.
const BOUND: Duration = Duration::from_secs(10);

/// Runs `f` on its own thread and returns its result, or fails the test if it
/// takes longer than [`BOUND`]. A thread stuck in, say, an open(2) of a FIFO is
/// left behind; the test binary exits without it.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(BOUND) {
        Ok(value) => {
            eprintln!("{what}: {:?}", start.elapsed());
            value
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after {BOUND:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the load panicked"),
    }
}

fn load_within(what: &str, path: &Path) -> Result<Loaded, Errors> {
    let path = path.to_path_buf();
    within(what, move || lb_config::load(&path))
}

fn parse_within(what: &str, text: String) -> Result<Loaded, Errors> {
    within(what, move || lb_config::parse_str(&text, "test.conf"))
}

fn expect_err(what: &str, result: Result<Loaded, Errors>) -> Errors {
    match result {
        Ok(_) => panic!("{what}: loaded, expected errors"),
        Err(e) => e,
    }
}

/// A FIFO named `name` in `dir`.
fn make_fifo(dir: &TempDir, name: &str) -> PathBuf {
    let path = dir.0.join(name);
    let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL in temp path");
    // SAFETY: mkfifo only reads the NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
    path
}

/// The number of kept diagnostics is bounded, and when errors were dropped the
/// last error says how many.
fn assert_capped(what: &str, e: &Errors, at_least: usize) {
    assert!(
        e.diagnostics.len() <= MAX_ERRORS + MAX_WARNINGS + 2,
        "{what}: {} diagnostics kept",
        e.diagnostics.len()
    );
    assert!(
        e.error_count() >= at_least,
        "{what}: {} errors counted, expected at least {at_least}",
        e.error_count()
    );
    if e.error_count() > MAX_ERRORS {
        let last = e.errors().last().expect("an error");
        assert_eq!(
            last.message,
            format!("... {} more error(s) not shown", e.errors_not_shown),
            "{what}"
        );
        assert_eq!(e.errors().count(), MAX_ERRORS + 1, "{what}");
    }
}

fn messages(e: &Errors) -> Vec<&str> {
    e.errors().map(|d| d.message.as_str()).collect()
}

#[test]
fn include_meshes_end_at_the_file_limit() {
    // n files that each include them all: n! paths without a limit (nine took
    // over 20 s and 876,810 errors, ten never finished).
    for n in [9, 10] {
        let dir = TempDir::new(&format!("mesh{n}"));
        for i in 1..=n {
            dir.write(&format!("m{i}.conf"), "include m*.conf\n");
        }
        let main = dir.write("keepalived.conf", "include m*.conf\n");
        let what = format!("{n}-file include mesh");
        let e = expect_err(&what, load_within(&what, &main));
        assert_capped(&what, &e, 1);
        let limit: Vec<&str> = messages(&e)
            .into_iter()
            .filter(|m| m.contains("(limit)"))
            .collect();
        assert_eq!(
            limit,
            [format!(
                "found more than {MAX_FILES} files to read, repeats counted (limit), \
                 expected fewer: an include mesh?"
            )],
            "{what}: {e}"
        );
        assert!(
            messages(&e).iter().any(|m| m.contains("include cycle")),
            "{what}: {e}"
        );
    }
}

#[test]
fn one_snippet_in_many_virtual_servers_still_loads() {
    let dir = TempDir::new("snippet");
    dir.write(
        "real.conf",
        "real_server 10.2.0.11 80 {\n    TCP_CHECK {\n        connect_timeout 3\n    }\n}\n",
    );
    let mut main = String::new();
    for i in 1..=50 {
        main.push_str(&format!(
            "virtual_server 10.2.0.{i} 80 {{\n    lb_algo mh\n    lb_kind DR\n    include real.conf\n}}\n"
        ));
    }
    let main = dir.write("keepalived.conf", &main);
    let loaded = match load_within("50 includes of one snippet", &main) {
        Ok(l) => l,
        Err(e) => panic!("should load:\n{e}"),
    };
    assert_eq!(loaded.config.virtual_servers.len(), 50);
    assert!(
        loaded
            .config
            .virtual_servers
            .iter()
            .all(|vs| vs.real_servers.len() == 1)
    );
    assert_eq!(loaded.files.len(), 51);
}

#[test]
fn runaway_braces_are_linear_and_capped() {
    let cases: [(&str, String, &str); 5] = [
        (
            "a 1 MiB line of `{`",
            "{".repeat(1 << 20),
            "found a line of 1048576 bytes, expected at most 65536",
        ),
        (
            "200k lines of `{`",
            "{\n".repeat(200_000),
            "found `{`, expected a keyword before it",
        ),
        (
            "100k lines of `}`",
            "}\n".repeat(100_000),
            "found `}`, expected a keyword: no block is open here",
        ),
        (
            "a line of 60k `{` (under the line limit)",
            "{".repeat(60_000),
            "found `{`, expected a keyword before it",
        ),
        (
            "a line of 60k `}` (under the line limit)",
            "}".repeat(60_000),
            "found `}`, expected a keyword: no block is open here",
        ),
    ];
    for (what, text, first) in cases {
        let e = expect_err(what, parse_within(what, text));
        assert_capped(what, &e, 1);
        assert_eq!(messages(&e)[0], first, "{what}");
    }
}

#[test]
fn a_line_over_the_limit_is_one_error_and_skipped() {
    let at_limit = format!("! {}", "x".repeat(MAX_LINE_BYTES - 2));
    assert_eq!(at_limit.len(), MAX_LINE_BYTES);
    parse_ok(&at_limit);

    // The long line's content (a block, an unknown keyword) is not read.
    let text = format!(
        "global_defs {{\n    router_id r1\n}}\nbogus {} {{\n",
        "x".repeat(MAX_LINE_BYTES)
    );
    let e = parse_err(&text);
    let d = only_error(&e);
    assert_eq!((d.line, d.col), (4, 1));
    assert_eq!(
        d.message,
        format!(
            "found a line of {} bytes, expected at most {MAX_LINE_BYTES}",
            MAX_LINE_BYTES + 8
        )
    );
}

#[test]
fn errors_kept_are_the_earliest_in_the_file() {
    // The unsupported block on line 1 is found after every parse error below
    // it (the interpreter runs after the parser), yet it is kept and shown first.
    let text = format!("garp_group g {{\n}}\n{}", "}\n".repeat(150));
    let e = parse_err(&text);
    assert_capped("150 stray braces", &e, 151);
    assert_eq!(e.error_count(), 151);
    assert_eq!(e.errors_not_shown, 51);
    let lines: Vec<u32> = e.errors().take(MAX_ERRORS).map(|d| d.line).collect();
    assert_eq!(lines, (1..=1).chain(3..=101).collect::<Vec<u32>>());
    assert!(e.to_string().ends_with("\n151 errors found"), "{e}");
}

#[test]
fn warnings_are_capped_too() {
    let text = format!(
        "global_defs {{\n{}}}\n",
        "    frobnicate 1\n".repeat(MAX_WARNINGS + 20)
    );
    let loaded = parse_ok(&text);
    assert_eq!(loaded.warnings.len(), MAX_WARNINGS + 1);
    assert_eq!(
        loaded.warnings[MAX_WARNINGS].message,
        "... 20 more warning(s) not shown"
    );
}

#[test]
fn fifos_are_refused_not_waited_on() {
    // No process ever opens these FIFOs for writing: reading one would block
    // for ever, and so would a blocking open(2).
    let dir = TempDir::new("fifo");
    let fifo = make_fifo(&dir, "keepalived.conf");
    let e = expect_err(
        "a FIFO as main file",
        load_within("a FIFO as main file", &fifo),
    );
    assert_eq!(
        only_error(&e).message,
        "found a FIFO (named pipe), expected a regular file"
    );

    make_fifo(&dir, "snippet.conf");
    let main = dir.write("main.conf", "include snippet.conf\n");
    let e = expect_err("an included FIFO", load_within("an included FIFO", &main));
    let d = only_error(&e);
    assert_eq!((d.line, d.col), (1, 9));
    assert_eq!(
        d.message,
        format!(
            "found `{}`, a FIFO (named pipe), expected a regular file",
            dir.0.join("snippet.conf").display()
        )
    );
}

#[test]
fn devices_are_refused_not_read() {
    // /dev/zero never ends: reading it ran until memory ran out.
    let e = expect_err(
        "/dev/zero as main file",
        load_within("/dev/zero as main file", Path::new("/dev/zero")),
    );
    assert_eq!(
        only_error(&e).message,
        "found a character device, expected a regular file"
    );

    let dir = TempDir::new("dev");
    let main = dir.write("main.conf", "include /dev/zero\n");
    let e = expect_err(
        "/dev/zero included",
        load_within("/dev/zero included", &main),
    );
    assert_eq!(
        only_error(&e).message,
        "found `/dev/zero`, a character device, expected a regular file"
    );

    let e = expect_err("a directory", load_within("a directory", &dir.0));
    assert_eq!(
        only_error(&e).message,
        "found a directory, expected a regular file"
    );

    let socket = dir.0.join("keepalived.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    let e = expect_err("a socket", load_within("a socket", &socket));
    assert_eq!(
        only_error(&e).message,
        "found a socket, expected a regular file"
    );
}

#[test]
fn kernel_filesystems_are_never_read() {
    if !Path::new("/proc/self/status").exists() {
        eprintln!("no /proc here, nothing to check");
        return;
    }
    let e = expect_err(
        "/proc/self/status as main file",
        load_within(
            "/proc/self/status as main file",
            Path::new("/proc/self/status"),
        ),
    );
    assert!(
        only_error(&e).message.starts_with("found a file on procfs"),
        "{e}"
    );

    let dir = TempDir::new("proc");
    let cases = [
        (
            "include /proc/self/status\n",
            "found `/proc/self/status`, a file on procfs, expected a file on an ordinary \
             filesystem: procfs holds kernel state, not configuration",
        ),
        // `includea`: keepalived's `include` would skip a pattern that
        // matches nothing with a warning only.
        (
            "includea /proc/*/status\n",
            "found no file matching `/proc/*/status` (looked in /, not inside /proc: \
             procfs holds kernel state, not configuration), expected at least one file to \
             include (`includea` checks it)",
        ),
        (
            "includea /proc/self/*\n",
            "found no file matching `/proc/self/*` (looked in /, not inside /proc/self: \
             procfs holds kernel state, not configuration), expected at least one file to \
             include (`includea` checks it)",
        ),
        (
            "include /*/*/*\n",
            &format!(
                "found more than {MAX_GLOB_MATCHES} paths matching `/*/*/*` (limit), \
                 expected fewer: a pattern this broad is surely a mistake"
            ),
        ),
    ];
    for (text, expected) in cases {
        let main = dir.write("main.conf", text);
        let e = expect_err(text.trim_end(), load_within(text.trim_end(), &main));
        assert_eq!(only_error(&e).message, expected, "{text}");
    }
}

#[test]
fn a_glob_matching_too_many_files_is_refused() {
    let dir = TempDir::new("glob");
    std::fs::create_dir(dir.0.join("conf.d")).expect("conf.d");
    for i in 0..=MAX_GLOB_MATCHES {
        dir.write(&format!("conf.d/{i:04}.conf"), "");
    }
    let main = dir.write("main.conf", "include conf.d/*.conf\n");
    let e = expect_err("a broad glob", load_within("a broad glob", &main));
    assert_eq!(
        only_error(&e).message,
        format!(
            "found more than {MAX_GLOB_MATCHES} paths matching `conf.d/*.conf` (limit), \
             expected fewer: a pattern this broad is surely a mistake"
        )
    );
}

#[test]
fn the_bytes_of_one_load_are_bounded() {
    let dir = TempDir::new("bytes");
    // Sparse: no disk is used for the zeros.
    let big = std::fs::File::create(dir.0.join("big.conf")).expect("big.conf");
    big.set_len(MAX_TOTAL_BYTES + 1).expect("set_len");
    drop(big);
    let e = expect_err(
        "an oversized main file",
        load_within("an oversized main file", &dir.0.join("big.conf")),
    );
    assert_eq!(
        only_error(&e).message,
        format!(
            "found more than {MAX_TOTAL_BYTES} bytes (limit), expected a smaller file: \
             a huge or endless file?"
        )
    );

    // Once the limit is crossed no further include is read: the error in
    // after.conf is never reported.
    dir.write("after.conf", "bogus_block {\n}\n");
    let main = dir.write("main.conf", "include big.conf\ninclude after.conf\n");
    let e = expect_err(
        "an oversized include",
        load_within("an oversized include", &main),
    );
    let d = only_error(&e);
    assert_eq!((d.line, d.col), (1, 9));
    assert_eq!(
        d.message,
        format!(
            "found more than {MAX_TOTAL_BYTES} bytes to read with `{}` (limit), expected \
             fewer: a huge or endless file?",
            dir.0.join("big.conf").display()
        )
    );
}

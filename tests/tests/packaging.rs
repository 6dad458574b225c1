//! xlb as a systemd service: the unit file (`systemd-analyze verify`), the man pages
//! (`xlb man`), the log format under journald, and an `xlb run` started as the unit starts it
//! (its capability bounding set, NOTIFY_SOCKET, JOURNAL_STREAM) that tells the service manager
//! READY=1, RELOADING=1, READY=1 and STOPPING=1 at the right moments.

use std::{
    fs,
    os::unix::{fs::MetadataExt as _, net::UnixDatagram},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use xlb_tests::lab::{DrLab, Process, unique_name, wait_for, xlb_binary};

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/xlb@.service")
}

fn unit_text() -> String {
    fs::read_to_string(unit_path()).expect("reading packaging/xlb@.service")
}

/// Every value of `key=` in the unit (a key may repeat), comments left out.
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
        .collect()
}

/// The capabilities the unit keeps, `CAP_...`.
fn unit_capabilities(text: &str) -> Vec<String> {
    unit_values(text, "CapabilityBoundingSet")
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Every capability Linux has had a name for (capability.h, up to CAP_CHECKPOINT_RESTORE).
const KNOWN_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(unique_name(tag));
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn have(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {command} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// `xlb man DIR`, the pages it wrote.
fn man_pages(dir: &Path) -> Vec<PathBuf> {
    let out = Command::new(xlb_binary())
        .arg("man")
        .arg(dir)
        .output()
        .expect("running xlb man");
    assert!(
        out.status.success(),
        "xlb man failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect()
}

#[test]
fn the_unit_is_what_operators_expect() {
    let text = unit_text();
    let one = |key: &str| {
        let v = unit_values(&text, key);
        assert_eq!(v.len(), 1, "{key}= should appear once: {v:?}");
        v[0].clone()
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(
        one("ExecStart"),
        "/usr/sbin/xlb run -f /etc/keepalived/keepalived.conf -i %i"
    );
    assert_eq!(one("ExecReload"), "/usr/sbin/xlb reload -i %i");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("RuntimeDirectory"), "xlb");
    assert_eq!(one("RuntimeDirectoryPreserve"), "yes");
    assert_eq!(one("LimitMEMLOCK"), "infinity");
    assert_eq!(one("KillSignal"), "SIGTERM");
    assert_eq!(one("After"), "network-online.target");
    assert_eq!(one("Wants"), "network-online.target");
    assert!(one("Documentation").contains("man:xlb(8)"));
    // The VRRP hand-over takes up to Master_Down_Interval: about 4 s at advert_int 1.
    let stop: u64 = one("TimeoutStopSec")
        .trim_end_matches('s')
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!((10..=60).contains(&stop), "TimeoutStopSec={stop}s");
    // Scripts switch to script_user with setuid(): NoNewPrivileges would break setuid helpers.
    assert!(unit_values(&text, "NoNewPrivileges").is_empty());
    assert!(!unit_values(&text, "ExecStart")[0].contains("--pidfile"));

    let caps = unit_capabilities(&text);
    for cap in &caps {
        assert!(
            KNOWN_CAPABILITIES.contains(&cap.as_str()),
            "{cap} is not a capability (systemd ignores unknown names silently)"
        );
    }
    for needed in [
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_KILL",
    ] {
        assert!(
            caps.iter().any(|c| c == needed),
            "{needed} missing: {caps:?}"
        );
    }
    assert!(
        !caps.iter().any(|c| c == "CAP_SYS_ADMIN"),
        "CAP_SYS_ADMIN is not needed"
    );
    // Each capability is explained by the comment above its line.
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("CapabilityBoundingSet=") {
            assert!(
                i > 0 && lines[i - 1].starts_with('#'),
                "no comment above {line}"
            );
        }
    }
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        eprintln!(
            "skipped: systemd-analyze is not installed (`cargo xtask setup` installs systemd for it)"
        );
        return;
    }
    let scratch = Scratch::new("unit");
    // The Documentation= pages, where `man` finds them; without man-db the check is left out.
    let man_root = scratch.0.join("man");
    man_pages(&man_root.join("man8"));
    // /usr/sbin/xlb is not installed here: the built binary stands in.
    let xlb = fs::canonicalize(xlb_binary()).expect("the xlb binary (cargo xtask test builds it)");
    let units = scratch.0.join("units");
    fs::create_dir_all(&units).unwrap();
    let unit = units.join("xlb@.service");
    fs::write(
        &unit,
        unit_text().replace("/usr/sbin/xlb", xlb.to_str().unwrap()),
    )
    .unwrap();

    let verify = |unit: &Path| {
        let mut cmd = Command::new("systemd-analyze");
        cmd.arg("verify");
        if have("man") {
            cmd.env("MANPATH", &man_root);
        } else {
            cmd.arg("--man=no");
        }
        let out = cmd
            .arg(unit)
            .env("SYSTEMD_LOG_LEVEL", "notice")
            .output()
            .expect("running systemd-analyze verify");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // Lines about this unit are problems; anything else is the machine's own business.
        let about_unit: Vec<String> = stderr
            .lines()
            .filter(|l| l.contains("xlb@"))
            .map(str::to_string)
            .collect();
        (out.status.success(), about_unit, stderr)
    };
    let (ok, problems, stderr) = verify(&unit);
    assert!(
        ok && problems.is_empty(),
        "systemd-analyze verify: {problems:?}\n{stderr}"
    );

    // The check sees mistakes: systemd only warns about a bad value and goes on.
    let broken = scratch.0.join("broken");
    fs::create_dir_all(&broken).unwrap();
    let bad = broken.join("xlb@.service");
    fs::write(
        &bad,
        fs::read_to_string(&unit)
            .unwrap()
            .replace("KillMode=mixed", "KillMode=bogus"),
    )
    .unwrap();
    let (_, problems, stderr) = verify(&bad);
    assert!(
        problems.iter().any(|l| l.contains("bogus")),
        "systemd-analyze did not flag KillMode=bogus:\n{stderr}"
    );
}

#[test]
fn man_pages_cover_every_subcommand_and_the_files_and_signals() {
    let scratch = Scratch::new("man");
    let dir = scratch.0.join("man8");
    let pages = man_pages(&dir);
    let mut names: Vec<String> = pages
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "xlb-check.8",
            "xlb-cleanup.8",
            "xlb-reload.8",
            "xlb-run.8",
            "xlb-stats.8",
            "xlb-status.8",
            "xlb-stop.8",
            "xlb.8"
        ],
        "the hidden `man` and `help` get no page"
    );
    let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap();
    let main = read("xlb.8");
    assert!(main.starts_with(".ie \\n(.g .ds Aq"), "{main}");
    assert!(
        main.contains(".TH xlb 8 \"\" \"xlb "),
        "the title line keeps its empty date: {main}"
    );
    for sub in [
        "run", "reload", "check", "status", "stats", "stop", "cleanup",
    ] {
        assert!(
            main.contains(&format!("xlb\\-{sub}(8)")),
            "xlb.8 lists xlb-{sub}"
        );
    }
    for page in [&main, &read("xlb-run.8")] {
        for needle in [
            ".SH FILES",
            ".SH SIGNALS",
            ".SH ENVIRONMENT",
            ".SH \"SEE ALSO\"",
            "/etc/keepalived/keepalived.conf",
            "/run/xlb/IFACE.pid",
            "/run/xlb/IFACE.sock",
            "/sys/fs/bpf/xlb/IFACE",
            "SIGHUP",
            "SIGTERM",
            "NOTIFY_SOCKET",
            "JOURNAL_STREAM",
        ] {
            assert!(page.contains(needle), "{needle} missing:\n{page}");
        }
        assert_eq!(page.matches(".ds Aq \\(aq").count(), 1, "one preamble");
    }
    let run = read("xlb-run.8");
    for option in [
        "\\-\\-config",
        "\\-\\-interface",
        "\\-\\-flow\\-table\\-size",
    ] {
        assert!(run.contains(option), "xlb-run.8 has {option}");
    }
    assert!(
        read("xlb-reload.8").contains("\\fBxlb\\fR(8)"),
        "SEE ALSO xlb(8)"
    );
    assert!(!read("xlb-check.8").contains(".SH SIGNALS"));

    // Every page renders without a warning from groff.
    if have("man") {
        for page in &pages {
            let out = Command::new("man")
                .args(["--warnings", "-l"])
                .arg(page)
                .env("MANWIDTH", "80")
                .stdout(Stdio::null())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stderr.trim().is_empty(),
                "{}: {stderr}",
                page.display()
            );
        }
    } else {
        eprintln!("man is not installed: pages not rendered");
    }
}

/// `xlb check` of `config` with stderr in a file and JOURNAL_STREAM naming that file's
/// device and inode (`matching`) or another one; its stderr.
fn check_stderr(config: &Path, matching: bool, scratch: &Path) -> (bool, String) {
    let err_path = scratch.join(format!("stderr-{matching}"));
    let err = fs::File::create(&err_path).unwrap();
    let meta = err.metadata().unwrap();
    let stream = if matching {
        format!("{}:{}", meta.dev(), meta.ino())
    } else {
        format!("{}:{}", meta.dev(), meta.ino() + 1)
    };
    let status = Command::new(xlb_binary())
        .args(["check", "-f"])
        .arg(config)
        .env("JOURNAL_STREAM", stream)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(err)
        .status()
        .unwrap();
    (status.success(), fs::read_to_string(err_path).unwrap())
}

#[test]
fn logs_carry_syslog_priorities_when_stderr_is_the_journal() {
    let scratch = Scratch::new("journal");
    // A warning (an unknown keyword), logged through the logger.
    let warned = scratch.0.join("warned.conf");
    fs::write(
        &warned,
        "global_defs {\n    no_such_keyword 1\n}\nvirtual_server 10.0.0.1 80 {\n    lb_algo mh\n    lb_kind DR\n    protocol TCP\n    real_server 10.0.1.1 80 {\n    }\n}\n",
    )
    .unwrap();
    let (ok, log) = check_stderr(&warned, true, &scratch.0);
    assert!(ok, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("no_such_keyword"))
        .unwrap_or_else(|| panic!("no warning in {log:?}"));
    assert!(line.starts_with("<4>lb_userspace::cli: "), "{line}");
    assert!(!line.contains(" WARN "), "no level word: {line}");

    // JOURNAL_STREAM inherited while stderr goes elsewhere: the terminal format, timestamped.
    let (_, log) = check_stderr(&warned, false, &scratch.0);
    let line = log.lines().find(|l| l.contains("no_such_keyword")).unwrap();
    assert!(line.starts_with("[20"), "timestamped: {line}");
    assert!(line.contains(" WARN "), "{line}");

    // Errors written straight to stderr get <3>, the last line included.
    let broken = scratch.0.join("broken.conf");
    fs::write(&broken, "virtual_server 10.0.0.1 {\n").unwrap();
    let (ok, log) = check_stderr(&broken, true, &scratch.0);
    assert!(!ok);
    assert!(
        log.lines()
            .any(|l| l.starts_with("<3>") && l.contains("error")),
        "{log}"
    );
    assert!(
        log.lines()
            .last()
            .is_some_and(|l| l.starts_with("<3>xlb: ")),
        "{log}"
    );
}

/// The notifications xlb sent, read off the socket systemd would listen on.
struct Notifications {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Notifications {
    fn bind(path: &Path) -> Self {
        let socket = UnixDatagram::bind(path).expect("binding the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Self {
            socket,
            seen: Vec::new(),
        }
    }

    /// Waits for a datagram from `xlb` that `matches`; returns it. Gives up at once if xlb
    /// exited, showing its log.
    fn expect(
        &mut self,
        xlb: &mut Process,
        log: &Path,
        what: &str,
        limit: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(text.clone());
                if matches(&text) {
                    return text;
                }
            } else if let Ok(Some(status)) = xlb.child.try_wait() {
                panic!(
                    "xlb exited ({status}) before {what}; received {:?}; log:\n{}",
                    self.seen,
                    fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
        panic!(
            "no {what} within {limit:?}; received {:?}; log:\n{}",
            self.seen,
            fs::read_to_string(log).unwrap_or_default()
        );
    }
}

/// `xlb run` in the lab's director namespace as xlb@eth0.service would start it: the unit's
/// capability bounding set (nothing inheritable), the limits of it this machine lets a test
/// raise, NOTIFY_SOCKET, and stderr a file that JOURNAL_STREAM names.
fn start_as_the_unit(
    lab: &DrLab,
    config: &Path,
    notify: &Path,
    log: &Path,
) -> (Process, Vec<String>) {
    let text = unit_text();
    let bounding: Vec<String> = unit_capabilities(&text)
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let mut limits = Vec::new();
    let mut skipped = Vec::new();
    for (key, option) in [("LimitMEMLOCK", "--memlock"), ("LimitRTPRIO", "--rtprio")] {
        for value in unit_values(&text, key) {
            let value = if value == "infinity" {
                "unlimited".to_string()
            } else {
                value
            };
            let arg = format!("{option}={value}:{value}");
            // Raising a hard limit takes CAP_SYS_RESOURCE, which systemd has and a test in a
            // container may not.
            let can = Command::new("prlimit")
                .args([&arg, "--", "true"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if can {
                limits.push(arg);
            } else {
                skipped.push(format!("{key}={value}"));
            }
        }
    }
    let err = fs::File::create(log).unwrap();
    let meta = err.metadata().unwrap();
    let mut cmd = lab.director.command("prlimit");
    cmd.args(&limits)
        .args(["--", "setpriv", "--inh-caps", "-all", "--bounding-set"])
        .arg(format!("-all,{}", bounding.join(",")))
        .arg("--")
        .arg(xlb_binary())
        .args(["run", "-f"])
        .arg(config)
        .args(["-i", "eth0", "--bpffs"])
        .arg(lab.bpffs())
        .arg("--pidfile")
        .arg(lab.pidfile())
        .env("NOTIFY_SOCKET", notify)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    let child = cmd.spawn().expect("starting xlb as the unit does");
    (
        Process {
            child,
            what: "xlb".into(),
        },
        skipped,
    )
}

fn signal(process: &Process, sig: libc::c_int) {
    // SAFETY: signalling our own child (setpriv and prlimit exec xlb in place) by its pid.
    assert_eq!(unsafe { libc::kill(process.pid(), sig) }, 0);
}

fn reload(lab: &DrLab) -> std::process::Output {
    Command::new(xlb_binary())
        .args(["reload", "-i", "eth0", "--pidfile"])
        .arg(lab.pidfile())
        .output()
        .expect("running xlb reload")
}

/// RELOADING=1 with a MONOTONIC_USEC taken between `before` and now.
fn assert_reloading(message: &str, before: u64) {
    let mut lines = message.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{message:?}");
    let usec: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {message:?}"));
    let after = lb_userspace::notify::monotonic_usec();
    assert!(
        (before..=after).contains(&usec),
        "MONOTONIC_USEC={usec} not within {before}..{after}"
    );
}

#[test]
fn xlb_started_as_the_unit_notifies_and_runs_with_its_capabilities() {
    let lab = DrLab::new("svc", 1).expect("building the lab");
    let vrrp_address = "10.99.0.200";
    // A virtual server, a VRRP instance (raw sockets, addresses, gratuitous ARP, SCHED_FIFO)
    // and a MISC_CHECK that runs as nobody and times out (setuid, then kill of its group).
    let mut config_text = fs::read_to_string(lab.write_config("base.conf", &[1]).unwrap()).unwrap();
    config_text += &format!(
        "vrrp_instance VI_SVC {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 77\n    \
         priority 100\n    advert_int 0.1\n    version 3\n    virtual_ipaddress {{\n        \
         {vrrp_address}/32 dev eth0\n    }}\n}}\n"
    );
    config_text += &lab.virtual_server(81, "delay_loop 1", &[(0, 1)], |_| {
        "MISC_CHECK {\n    misc_path \"/bin/sleep 30\"\n    misc_timeout 1\n    user nobody\n}"
            .to_string()
    });
    let config = lab.workdir.join("keepalived.conf");
    fs::write(&config, &config_text).unwrap();
    let notify_path = lab.workdir.join("notify.sock");
    let mut notes = Notifications::bind(&notify_path);
    let log_path = lab.workdir.join("journal.log");
    let log = || fs::read_to_string(&log_path).unwrap_or_default();

    let (mut xlb, skipped) = start_as_the_unit(&lab, &config, &notify_path, &log_path);
    if !skipped.is_empty() {
        eprintln!("not applied (this machine cannot raise them): {skipped:?}");
    }
    notes.expect(
        &mut xlb,
        &log_path,
        "READY=1",
        Duration::from_secs(60),
        |m| m == "READY=1",
    );
    let status = notes.expect(&mut xlb, &log_path, "STATUS", Duration::from_secs(5), |m| {
        m.starts_with("STATUS=")
    });
    assert_eq!(status, "STATUS=serving 2 virtual server(s) on eth0");
    // Ready means attached and applied.
    assert!(log().contains("XDP attached to eth0"), "{}", log());
    assert!(
        lab.pin_dir().exists(),
        "pinned in {}",
        lab.pin_dir().display()
    );

    // Journald's format: a priority on every line, no timestamp.
    let text = log();
    for line in text.lines() {
        assert!(
            line.starts_with("<3>")
                || line.starts_with("<4>")
                || line.starts_with("<6>")
                || line.starts_with("<7>"),
            "a line without its priority: {line:?}"
        );
        assert!(!line.contains("[20"), "a timestamp: {line:?}");
    }
    assert!(text.lines().any(|l| l.starts_with("<6>")), "{text}");

    // VRRP works with the unit's capabilities: MASTER, the address added.
    wait_for(Duration::from_secs(20), || {
        log().contains("(VI_SVC) Entering MASTER STATE")
    })
    .unwrap_or_else(|_| panic!("no MASTER; log:\n{}", log()));
    wait_for(Duration::from_secs(5), || {
        lab.director
            .run(&["ip", "-4", "addr", "show", "dev", "eth0"])
            .is_ok_and(|a| a.contains(vrrp_address))
    })
    .unwrap_or_else(|_| panic!("{vrrp_address} was not added; log:\n{}", log()));
    // The MISC_CHECK ran as nobody and was killed at its timeout.
    wait_for(Duration::from_secs(20), || {
        log().contains("timed out after")
    })
    .unwrap_or_else(|_| panic!("the MISC_CHECK never timed out; log:\n{}", log()));
    std::thread::sleep(Duration::from_millis(500));

    // SIGHUP: RELOADING=1 (with the monotonic clock), then READY=1.
    let before = lb_userspace::notify::monotonic_usec();
    signal(&xlb, libc::SIGHUP);
    let m = notes.expect(
        &mut xlb,
        &log_path,
        "RELOADING=1",
        Duration::from_secs(10),
        |m| m.starts_with("RELOADING=1"),
    );
    assert_reloading(&m, before);
    notes.expect(
        &mut xlb,
        &log_path,
        "READY=1",
        Duration::from_secs(15),
        |m| m == "READY=1",
    );

    // `xlb reload` (ExecReload): the same, and it succeeds.
    let before = lb_userspace::notify::monotonic_usec();
    let out = reload(&lab);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = notes.expect(
        &mut xlb,
        &log_path,
        "RELOADING=1",
        Duration::from_secs(5),
        |m| m.starts_with("RELOADING=1"),
    );
    assert_reloading(&m, before);
    notes.expect(
        &mut xlb,
        &log_path,
        "READY=1",
        Duration::from_secs(5),
        |m| m == "READY=1",
    );

    // A refused file: `xlb reload` fails, the daemon is ready again with the running config.
    fs::write(&config, "virtual_server {\n").unwrap();
    let out = reload(&lab);
    assert!(!out.status.success(), "a broken file must fail the reload");
    notes.expect(
        &mut xlb,
        &log_path,
        "RELOADING=1",
        Duration::from_secs(5),
        |m| m.starts_with("RELOADING=1"),
    );
    notes.expect(
        &mut xlb,
        &log_path,
        "READY=1",
        Duration::from_secs(5),
        |m| m == "READY=1",
    );
    notes.expect(
        &mut xlb,
        &log_path,
        "STATUS=reload refused",
        Duration::from_secs(5),
        |m| m.starts_with("STATUS=reload refused"),
    );
    assert!(
        log()
            .lines()
            .any(|l| l.starts_with("<3>") && l.contains("reload refused")),
        "{}",
        log()
    );

    if std::env::var_os("XLB_SHOW_LOG").is_some() {
        eprintln!("{}", log());
    }
    // SIGTERM: STOPPING=1, then a clean exit that removes the pins.
    signal(&xlb, libc::SIGTERM);
    notes.expect(
        &mut xlb,
        &log_path,
        "STOPPING=1",
        Duration::from_secs(5),
        |m| m == "STOPPING=1",
    );
    // Never a second SIGTERM: wait (a hand-over without a peer takes Master_Down_Interval).
    let mut exited = None;
    let _ = wait_for(Duration::from_secs(20), || {
        exited = xlb.child.try_wait().ok().flatten();
        exited.is_some()
    });
    assert!(
        exited.is_some_and(|s| s.success()),
        "xlb exited with {exited:?}; log:\n{}",
        log()
    );
    assert!(
        !lab.pin_dir().exists(),
        "a clean stop removes {}",
        lab.pin_dir().display()
    );

    // Nothing the unit withholds was missed (SCHED_FIFO aside where LimitRTPRIO is not applied).
    let no_rtprio = skipped.iter().any(|s| s.starts_with("LimitRTPRIO"));
    let text: String = log()
        .lines()
        .filter(|l| !(no_rtprio && l.contains("keeps normal scheduling")))
        .map(|l| format!("{l}\n"))
        .collect();
    for symptom in [
        "Operation not permitted",
        "Permission denied",
        "of process group",
        "failed to terminate",
    ] {
        assert!(!text.contains(symptom), "{symptom:?} in the log:\n{text}");
    }
    if no_rtprio {
        eprintln!("SCHED_FIFO not checked: LimitRTPRIO could not be applied here");
    } else {
        assert!(
            !text.contains("keeps normal scheduling"),
            "LimitRTPRIO did not allow SCHED_FIFO:\n{text}"
        );
    }
}

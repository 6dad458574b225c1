//! Hostile or mistaken local input never hurts a running director: each test reproduces one
//! way an operator or an attacker could take a director down by accident, and shows it fixed.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use xlb_tests::lab::{DrLab, output_within, xlb_binary};

const LIMIT: Duration = Duration::from_secs(20);

fn text(out: &std::process::Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Requests through the VIP all succeed.
fn assert_forwarding(lab: &DrLab, what: &str) {
    let answers = lab.get_many(20, Duration::from_secs(3)).unwrap();
    assert!(
        answers.iter().all(|a| a.is_ok()),
        "{what}: {answers:?}\nxlb log:\n{}",
        lab.log()
    );
}

fn started_lab(tag: &str) -> (DrLab, PathBuf) {
    let mut lab = DrLab::new(tag, 2).expect("building the lab");
    let config = lab.write_config("xlb.conf", &[1, 1]).unwrap();
    lab.start_director(&xlb_binary(), &config).unwrap();
    assert_forwarding(&lab, "before");
    (lab, config)
}

/// `xlb reload --pidfile F` used to SIGHUP whatever number F held: with -1, as root, every
/// process on the host. It now talks to the control socket beside the pidfile and signals
/// nobody. Run in a private pid namespace, so that a regression can only reach the test's own
/// processes: a victim process and the shell that checks it survive.
#[test]
fn reload_never_signals_a_pid_read_from_a_file() {
    let dir = std::env::temp_dir().join(format!("xlb-reload-pid-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("eth0.pid");
    let script = format!(
        r#"
trap 'echo shell-hung-up; exit 1' HUP
sleep 30 &
victim=$!
trap 'echo victim-test-hung-up' HUP
for pid in -1 0 $victim; do
    echo $pid > {pidfile}
    {xlb} reload -i lo --pidfile {pidfile} 2>&1
    echo "rc=$?"
done
kill -0 $victim && echo victim-alive
kill $victim
echo shell-alive
"#,
        pidfile = pidfile.display(),
        xlb = xlb_binary().display()
    );
    let out = output_within(
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "sh", "-c"])
            .arg(&script),
        LIMIT,
    )
    .unwrap();
    let log = text(&out);
    assert!(log.contains("victim-alive"), "{log}");
    assert!(log.contains("shell-alive"), "{log}");
    assert!(!log.contains("hung-up"), "{log}");
    assert_eq!(log.matches("rc=1").count(), 3, "{log}");
    assert_eq!(
        log.matches("no xlb is running here").count(),
        3,
        "a clear error each time: {log}"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// A second `xlb run` on the same interface and BPF filesystem (another pidfile) used to take
/// the first one's pinned link and, when it stopped, remove every pin. It is refused now, and
/// names the xlb that runs.
#[test]
fn a_second_xlb_on_the_same_interface_is_refused() {
    let (lab, config) = started_lab("second");
    let first_pid = fs::read_to_string(lab.pidfile()).unwrap();
    let mut c = lab.director.command(xlb_binary().to_str().unwrap());
    c.args(["run", "-f"])
        .arg(&config)
        .args(["-i", "eth0", "--bpffs"])
        .arg(lab.bpffs())
        .arg("--pidfile")
        .arg(lab.workdir.join("second.pid"));
    let out = output_within(&mut c, LIMIT).unwrap();
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains(&format!("xlb (pid {}) already serves", first_pid.trim())),
        "{log}"
    );
    assert!(lab.pin_dir().join("link").exists(), "the pins stay");
    assert_forwarding(&lab, "after the refused second start");
}

/// Interface names are checked before any path is built: `-i ../xlb/eth0` used to fail to
/// start and remove a running xlb's pins on its way out.
#[test]
fn path_like_interface_names_are_refused() {
    let (lab, config) = started_lab("ifname");
    for name in [
        "../xlb/eth0",
        "",
        ".",
        "..",
        "eth0/../eth0",
        "a-very-long-name-0",
    ] {
        for argv in [
            vec!["run", "-f", config.to_str().unwrap(), "-i", name],
            vec!["stats", "-i", name],
            vec!["reload", "-i", name],
        ] {
            let mut c = lab.director.command(xlb_binary().to_str().unwrap());
            c.args(&argv).arg("--bpffs").arg(lab.bpffs());
            let out = output_within(&mut c, LIMIT).unwrap();
            let log = text(&out);
            assert!(!out.status.success(), "{argv:?}: {log}");
            assert!(log.contains("is not an interface name"), "{argv:?}: {log}");
        }
    }
    assert!(lab.pin_dir().join("link").exists(), "the pins stay");
    assert_forwarding(&lab, "after the bad names");
}

fn mounted(path: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_str().unwrap();
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(path))
}

/// `--bpffs DIR` on an ordinary directory used to mount a BPF filesystem over it (hiding its
/// files) and leave the mount after a failed start.
#[test]
fn bpffs_is_never_mounted_over_files_nor_left_after_a_failure() {
    let (lab, config) = started_lab("bpffs");
    let base = lab.workdir.join("bpffs-cases");
    let full = base.join("full");
    fs::create_dir_all(&full).unwrap();
    fs::write(full.join("precious"), "keep me").unwrap();
    let run = |bpffs: &Path, pidfile: &Path| {
        let mut c = lab.director.command(xlb_binary().to_str().unwrap());
        c.args(["run", "-f"])
            .arg(&config)
            .args(["-i", "eth0", "--bpffs"])
            .arg(bpffs)
            .arg("--pidfile")
            .arg(pidfile);
        output_within(&mut c, LIMIT).unwrap()
    };

    let out = run(&full, &lab.workdir.join("full.pid"));
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("not a BPF filesystem, and not empty"), "{log}");
    assert!(!mounted(&full), "nothing mounted over {}", full.display());
    assert_eq!(
        fs::read_to_string(full.join("precious")).unwrap(),
        "keep me"
    );

    // An empty directory gets a BPF filesystem, but the start fails after the mount (its
    // pidfile cannot be written): the mount goes too.
    let empty = base.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let out = run(&empty, Path::new("/proc/xlb-no-such-dir/eth0.pid"));
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("mounted a BPF filesystem"), "{log}");
    assert!(
        !mounted(&empty),
        "the mount made for a failed start is gone: {log}"
    );
    assert!(fs::read_dir(&empty).unwrap().next().is_none(), "left empty");
    assert_forwarding(&lab, "after the failed starts");
}

/// After a kill -9 the pins stay (for a hitless restart). If the interface is then deleted and
/// created again, its XDP link is severed: the next start used to fail with `bpf_link_update
/// failed: Link has been severed` until someone removed the pins by hand. It now starts clean
/// and says what it replaced.
#[test]
fn a_restart_after_the_interface_was_recreated_starts_clean() {
    let (mut lab, config) = started_lab("replug");
    let pid = lab.process(0).pid();
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = lab.process(0).child.wait();
    assert!(
        lab.pin_dir().join("link").exists(),
        "kill -9 leaves the pins"
    );
    lab.replug_director().unwrap();
    lab.start_director(&xlb_binary(), &config).unwrap();
    let log = lab.log();
    assert!(
        log.contains("not adopting the pins") && log.contains("severed"),
        "{log}"
    );
    assert_forwarding(&lab, "after the restart on the new interface");
}

/// Configs that used to hang or flood `xlb check` and a reload: an include mesh (9! paths),
/// a 1 MB line of braces, a FIFO, /dev/zero. Each is answered within seconds by `xlb check`
/// and by `xlb reload`, with a clear error, and the running config keeps forwarding.
#[test]
fn hostile_configs_are_refused_quickly_and_the_running_config_stays() {
    let (lab, config) = started_lab("hostile");
    let mesh = lab.workdir.join("mesh");
    fs::create_dir_all(&mesh).unwrap();
    for i in 1..=10 {
        fs::write(mesh.join(format!("m{i}.conf")), "include m*.conf\n").unwrap();
    }
    let good = fs::read_to_string(&config).unwrap();
    let fifo = |path: &Path| {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    };
    type Make = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Make, &str)> = vec![
        (
            "include mesh",
            Box::new(move |p: &Path| {
                fs::write(p, format!("include {}/m*.conf\n", mesh.display())).unwrap()
            }),
            "an include mesh?",
        ),
        (
            "1 MB line of braces",
            Box::new(|p: &Path| fs::write(p, "{".repeat(1 << 20)).unwrap()),
            "expected at most 65536",
        ),
        ("FIFO", Box::new(fifo), "FIFO"),
        (
            "/dev/zero",
            Box::new(|p: &Path| std::os::unix::fs::symlink("/dev/zero", p).unwrap()),
            "device",
        ),
    ];
    for (what, make, says) in cases {
        let path = lab.workdir.join("case.conf");
        let _ = fs::remove_file(&path);
        make(&path);
        let out = output_within(
            Command::new(xlb_binary()).args(["check", "-f"]).arg(&path),
            LIMIT,
        )
        .unwrap_or_else(|e| panic!("{what}: xlb check: {e:#}"));
        let log = text(&out);
        assert!(!out.status.success(), "{what}: {log}");
        assert!(log.contains(says), "{what}: xlb check says {says:?}: {log}");
        assert!(
            log.lines().count() < 120,
            "{what}: diagnostics are capped: {log}"
        );

        // The running xlb's own file becomes the hostile one.
        let _ = fs::remove_file(&config);
        make(&config);
        let mut reload = Command::new(xlb_binary());
        reload
            .args(["reload", "-i", "eth0", "--pidfile"])
            .arg(lab.pidfile());
        let out = output_within(&mut reload, LIMIT)
            .unwrap_or_else(|e| panic!("{what}: xlb reload: {e:#}"));
        let log = text(&out);
        assert!(!out.status.success(), "{what}: {log}");
        assert!(log.contains("reload refused"), "{what}: {log}");
        assert!(
            log.contains(says),
            "{what}: the reason reaches the operator: {log}"
        );
        assert_forwarding(&lab, what);
        let _ = fs::remove_file(&config);
        fs::write(&config, &good).unwrap();
    }
}

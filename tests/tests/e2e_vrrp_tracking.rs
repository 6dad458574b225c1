//! keepalived's track_file and vrrp_track_process end to end: two xlb directors, d1 (priority
//! 150) tracking a file and a process, d2 (priority 100) tracking nothing. A value written to
//! the file, a weight-0 file turning non-zero, and the tracked process exiting each move d1
//! below d2, which takes over; undoing each gives d1 its place back. The times from the
//! change to xlb's log line and to the new MASTER are printed.

use std::{
    fs,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use xlb_tests::ha_lab::{HaLab, VrrpSpec};
use xlb_tests::lab::{Process, xlb_binary};

const HIGH: u8 = 150;
const LOW: u8 = 100;
/// The delays of the tracked process, in seconds: long enough to be measured apart from the
/// 200 ms /proc poll.
const FORK_DELAY: f64 = 0.5;
const TERMINATE_DELAY: f64 = 0.8;

/// A process of a name nothing else on the machine has: a copy of sleep(1).
fn start_tracked(path: &std::path::Path) -> Process {
    let child = Command::new(path)
        .arg("600")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the tracked process");
    Process {
        child,
        what: "tracked process".into(),
    }
}

#[test]
fn track_file_and_track_process_move_the_master() {
    let spec = VrrpSpec::v3("0.1");
    let mut lab = HaLab::new("vtrack", 2, 1, &xlb_binary()).expect("building the lab");
    let dir = lab.workdir.clone();
    // /proc/PID/stat holds at most 15 characters of the name.
    let name = format!("xlbtp{}", std::process::id() % 1_000_000);
    let binary = dir.join(&name);
    fs::copy("/bin/sleep", &binary).unwrap();
    let mut tracked = Some(start_tracked(&binary));
    let (drain, stop) = (dir.join("drain"), dir.join("stop"));

    let tracking = format!(
        "track_file drain {{\n    file \"{}\"\n    weight -60\n}}\n\
         track_file stop {{\n    file \"{}\"\n}}\n\
         vrrp_track_process web {{\n    process {name}\n    weight -60\n    \
         fork_delay {FORK_DELAY}\n    terminate_delay {TERMINATE_DELAY}\n}}\n",
        drain.display(),
        stop.display()
    );
    let d1 = VrrpSpec {
        extra: "track_file {\ndrain weight 60\nstop weight 0\n}\ntrack_process {\nweb\n}".into(),
        ..spec.clone()
    };
    lab.start_xlb(0, &format!("{tracking}{}", lab.xlb_config(0, &d1, HIGH)))
        .unwrap();
    lab.start_xlb(1, &lab.xlb_config(1, &spec, LOW)).unwrap();
    lab.wait_master(0, Duration::from_secs(10)).unwrap();

    // Each change: what is done, the line d1 logs, and how long that may take.
    let take_over = Duration::from_secs(2);
    let mut step = |what: &str,
                    act: &mut dyn FnMut(),
                    line: &str,
                    master: usize,
                    bound: Duration| {
        let before = lab.log_count(0, line);
        let started = Instant::now();
        act();
        let logged = lab
            .wait_for_log(0, line, before, bound + Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{what}: {e:#}"))
            .duration_since(started);
        let mastered = lab
            .wait_master(master, take_over + Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{what}: {e:#}"))
            .duration_since(started);
        eprintln!(
            "{what}: {line:?} after {logged:?} (bound {bound:?}), d{} MASTER after {mastered:?}",
            master + 1
        );
        assert!(logged <= bound, "{what}: logged after {logged:?}");
        assert!(
            mastered <= bound + take_over,
            "{what}: MASTER after {mastered:?}"
        );
        logged
    };
    let at_once = Duration::from_secs(1);

    // track_file, weight 60 on the instance (over the file's -60): 150 - 60 = 90 < 100.
    step(
        "track_file -1",
        &mut || fs::write(&drain, "-1\n").unwrap(),
        "(VI_1) Changing effective priority from 150 to 90",
        1,
        at_once,
    );
    step(
        "track_file 0",
        &mut || fs::write(&drain, "0\n").unwrap(),
        "(VI_1) Changing effective priority from 90 to 150",
        0,
        at_once,
    );
    // track_file with weight 0: any non-zero value is a FAULT.
    step(
        "track_file weight 0, value 1",
        &mut || fs::write(&stop, "1\n").unwrap(),
        "(VI_1) Entering FAULT STATE",
        1,
        at_once,
    );
    step(
        "track_file weight 0, value 0",
        &mut || fs::remove_file(&stop).unwrap(),
        "(VI_1) Entering BACKUP STATE",
        0,
        at_once,
    );

    // vrrp_track_process: the process exits; the quorum is lost after terminate_delay.
    let poll = Duration::from_millis(200);
    let lost = step(
        "track_process exit",
        &mut || drop(tracked.take()),
        "Quorum lost for tracked process web",
        1,
        Duration::from_secs_f64(TERMINATE_DELAY) + poll * 2,
    );
    assert!(
        lost >= Duration::from_secs_f64(TERMINATE_DELAY),
        "the quorum was lost after {lost:?}, before terminate_delay"
    );
    let gained = step(
        "track_process start",
        &mut || tracked = Some(start_tracked(&binary)),
        "Quorum gained for tracked process web",
        0,
        Duration::from_secs_f64(FORK_DELAY) + poll * 2,
    );
    assert!(
        gained >= Duration::from_secs_f64(FORK_DELAY),
        "the quorum was gained after {gained:?}, before fork_delay"
    );
    let log = lab.log(0);
    assert!(
        log.contains("(VI_1) Changing effective priority from 150 to 90")
            && log.contains("(VI_1) Changing effective priority from 90 to 150"),
        "{log}"
    );
}

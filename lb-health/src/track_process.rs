//! `vrrp_track_process`: whether the number of running processes of a name is within
//! [quorum, quorum_max] (keepalived's core/track_process.c).
//!
//! keepalived learns of forks, exits and name changes from the kernel's process events
//! connector. That connector only exists in the initial network namespace, where xlb often
//! does not run (containers, and its own tests), so xlb counts the processes in /proc every
//! [`POLL`] instead. What is matched is keepalived's: the process name (/proc/PID/stat's,
//! what `pgrep -x` matches) or, with `full_command` or arguments, the command line with
//! `param_match`; zombies do not count.
//!
//! [`Quorum`] applies keepalived's delays without I/O: gaining the quorum by a new process
//! counts after `fork_delay`, losing it after `terminate_delay`, and a change back within the
//! delay cancels it.

use std::time::{Duration, Instant};

use lb_config::{ParamMatch, VrrpTrackProcess};
use log::info;
use tokio::sync::mpsc;

/// How often /proc is read: well within the delays people write (keepalived's man page
/// suggests them for fork/exec bounces) and cheap (one small read per process).
pub const POLL: Duration = Duration::from_millis(200);

/// The longest command line read; arguments past it are not matched.
const CMDLINE_MAX: usize = 4096;

/// Whether a process, by its name and command line (NUL-separated words), is one `p` counts.
pub fn matches(p: &VrrpTrackProcess, comm: &str, cmdline: &[u8]) -> bool {
    if !p.full_command {
        return comm == p.process;
    }
    let mut words = cmdline.split(|b| *b == 0);
    if words.next() != Some(p.process.as_bytes()) {
        return false;
    }
    let args: Vec<&[u8]> = {
        // A command line ends with a NUL, which leaves an empty last word.
        let mut all: Vec<&[u8]> = words.collect();
        if all.last().is_some_and(|w| w.is_empty()) {
            all.pop();
        }
        all
    };
    let want: Vec<&[u8]> = p.params.iter().map(|s| s.as_bytes()).collect();
    match p.param_match {
        ParamMatch::None => true,
        ParamMatch::Exact => args == want,
        ParamMatch::Partial => args.len() >= want.len() && args[..want.len()] == want[..],
        ParamMatch::Initial => match want.split_last() {
            None => true,
            Some((last, before)) => {
                args.len() >= want.len()
                    && args[..before.len()] == *before
                    && args[before.len()].starts_with(last)
            }
        },
    }
}

/// One process as /proc shows it: its name, its state, its command line if asked for.
struct Proc {
    comm: String,
    zombie: bool,
    cmdline: Vec<u8>,
}

fn read_proc(pid: &str, want_cmdline: bool) -> Option<Proc> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // `PID (comm) S ...`: the name may hold spaces and parentheses, the last `)` ends it.
    let open = stat.iter().position(|b| *b == b'(')?;
    let close = stat.iter().rposition(|b| *b == b')')?;
    let comm = String::from_utf8_lossy(stat.get(open + 1..close)?).into_owned();
    let zombie = stat.get(close + 2) == Some(&b'Z');
    let cmdline = if want_cmdline {
        let mut c = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        c.truncate(CMDLINE_MAX);
        c
    } else {
        Vec::new()
    };
    Some(Proc {
        comm,
        zombie,
        cmdline,
    })
}

/// How many running processes each of `tracked` counts now.
pub fn census(tracked: &[VrrpTrackProcess]) -> Vec<u32> {
    let mut counts = vec![0u32; tracked.len()];
    let want_cmdline = tracked.iter().any(|p| p.full_command);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return counts;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // A process may exit between the listing and the read: it then does not count.
        let Some(proc_) = read_proc(pid, want_cmdline) else {
            continue;
        };
        if proc_.zombie {
            continue;
        }
        for (count, p) in counts.iter_mut().zip(tracked) {
            if matches(p, &proc_.comm, &proc_.cmdline) {
                *count += 1;
            }
        }
    }
    counts
}

/// keepalived's quorum of one tracked process, with its fork and terminate delays.
#[derive(Debug)]
pub struct Quorum {
    quorum: u32,
    quorum_max: u32,
    fork_delay: Duration,
    terminate_delay: Duration,
    count: u32,
    /// What instances are told.
    have_quorum: bool,
    /// A change waiting for its delay.
    pending: Option<Instant>,
}

impl Quorum {
    /// The starting state counts at once, as keepalived's start-up scan does.
    pub fn new(p: &VrrpTrackProcess, count: u32) -> Self {
        let mut q = Quorum {
            quorum: p.quorum,
            quorum_max: p.quorum_max.unwrap_or(u32::MAX),
            fork_delay: p.fork_delay.as_duration(),
            terminate_delay: p.terminate_delay.as_duration(),
            count,
            have_quorum: false,
            pending: None,
        };
        q.have_quorum = q.in_range();
        q
    }

    fn in_range(&self) -> bool {
        self.count >= self.quorum && self.count <= self.quorum_max
    }

    pub fn have_quorum(&self) -> bool {
        self.have_quorum
    }

    /// When [`Self::on_timer`] is due.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending
    }

    /// A new count at `now`; returns the new quorum state if it changed at once.
    pub fn observe(&mut self, count: u32, now: Instant) -> Option<bool> {
        let before = self.in_range();
        let grew = count > self.count;
        self.count = count;
        if self.in_range() == before {
            return None;
        }
        // A crossing back cancels the other direction's delay (keepalived cancels the
        // terminate timer on a fork and the fork timer on an exit) and counts at once.
        if self.pending.take().is_some() {
            return self.settle();
        }
        let delay = if grew {
            self.fork_delay
        } else {
            self.terminate_delay
        };
        if delay.is_zero() {
            return self.settle();
        }
        self.pending = Some(now + delay);
        None
    }

    /// The delay is over: the quorum is what the count says now.
    pub fn on_timer(&mut self, now: Instant) -> Option<bool> {
        match self.pending {
            Some(due) if due <= now => {
                self.pending = None;
                self.settle()
            }
            _ => None,
        }
    }

    fn settle(&mut self) -> Option<bool> {
        let now_up = self.in_range();
        (now_up != self.have_quorum).then(|| {
            self.have_quorum = now_up;
            now_up
        })
    }
}

/// A tracked process's quorum changed (or, at start, is known).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessEvent {
    pub name: String,
    pub have_quorum: bool,
}

/// Counts the processes of `tracked` every [`POLL`], sending each one's quorum once at start
/// and then every change, logged as keepalived logs it. Ends when `events` is closed.
pub async fn watch_processes(
    tracked: Vec<VrrpTrackProcess>,
    events: mpsc::UnboundedSender<ProcessEvent>,
) {
    if tracked.is_empty() {
        return;
    }
    let counts = census(&tracked);
    let mut quorums: Vec<Quorum> = tracked
        .iter()
        .zip(&counts)
        .map(|(p, n)| Quorum::new(p, *n))
        .collect();
    for (p, q) in tracked.iter().zip(&quorums) {
        let event = ProcessEvent {
            name: p.name.clone(),
            have_quorum: q.have_quorum(),
        };
        if events.send(event).is_err() {
            return;
        }
    }
    loop {
        let next_timer = quorums.iter().filter_map(Quorum::deadline).min();
        let sleep = match next_timer {
            Some(due) => POLL.min(due.saturating_duration_since(Instant::now())),
            None => POLL,
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = events.closed() => return,
        }
        let now = Instant::now();
        let counts = census(&tracked);
        for ((p, q), n) in tracked.iter().zip(&mut quorums).zip(counts) {
            let changed = q.observe(n, now).or_else(|| q.on_timer(now));
            if let Some(up) = changed {
                info!(
                    "Quorum {} for tracked process {}",
                    if up { "gained" } else { "lost" },
                    p.name
                );
                let event = ProcessEvent {
                    name: p.name.clone(),
                    have_quorum: up,
                };
                if events.send(event).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_config::Timer;

    fn tracked(process: &str, params: &[&str], param_match: ParamMatch) -> VrrpTrackProcess {
        VrrpTrackProcess {
            name: "t".into(),
            process: process.into(),
            params: params.iter().map(|s| s.to_string()).collect(),
            param_match,
            full_command: param_match != ParamMatch::None,
            weight: 0,
            weight_reverse: false,
            quorum: 1,
            quorum_max: None,
            fork_delay: Timer::default(),
            terminate_delay: Timer::default(),
            origin: Default::default(),
        }
    }

    #[test]
    fn processes_are_matched_as_keepalived_matches_them() {
        use ParamMatch::*;
        let cmd = b"/usr/bin/python3\0-m\0http.server\08080\0";
        /// (process, arguments, param_match, the process's name, its command line, counted)
        type Case<'a> = (&'a str, &'a [&'a str], ParamMatch, &'a str, &'a [u8], bool);
        let cases: &[Case] = &[
            // By name: exact, no pattern (pgrep -x).
            ("python3", &[], None, "python3", b"", true),
            ("python", &[], None, "python3", b"", false),
            // By command line.
            (
                "/usr/bin/python3",
                &["-m", "http.server", "8080"],
                Exact,
                "x",
                cmd,
                true,
            ),
            (
                "/usr/bin/python3",
                &["-m", "http.server"],
                Exact,
                "x",
                cmd,
                false,
            ),
            (
                "/usr/bin/python3",
                &["-m", "http.server"],
                Partial,
                "x",
                cmd,
                true,
            ),
            (
                "/usr/bin/python3",
                &["-m", "http.serv"],
                Partial,
                "x",
                cmd,
                false,
            ),
            (
                "/usr/bin/python3",
                &["-m", "http.serv"],
                Initial,
                "x",
                cmd,
                true,
            ),
            ("/usr/bin/python3", &["-x"], Initial, "x", cmd, false),
            ("/usr/bin/python3", &[], Exact, "x", cmd, false),
            (
                "/usr/bin/python3",
                &[],
                Exact,
                "x",
                b"/usr/bin/python3\0",
                true,
            ),
            ("/usr/bin/python3", &[], Partial, "x", cmd, true),
            ("python3", &[], Partial, "python3", cmd, false),
        ];
        for (process, params, pm, comm, cmdline, expected) in cases {
            let p = tracked(process, params, *pm);
            assert_eq!(
                matches(&p, comm, cmdline),
                *expected,
                "{process} {params:?} {pm:?}"
            );
        }
    }

    #[test]
    fn quorum_follows_counts_with_keepalived_delays() {
        let mut p = tracked("x", &[], ParamMatch::None);
        p.quorum = 2;
        p.quorum_max = Some(3);
        p.fork_delay = Timer::from_secs(1);
        p.terminate_delay = Timer::from_secs(2);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_millis(s);
        let mut q = Quorum::new(&p, 2);
        assert!(q.have_quorum(), "2 of [2, 3] at start, no delay");
        // Lost by an exit: counts after terminate_delay.
        assert_eq!(q.observe(1, at(0)), None);
        assert_eq!(q.deadline(), Some(at(2000)));
        assert_eq!(q.on_timer(at(1999)), None);
        assert_eq!(q.on_timer(at(2000)), Some(false));
        // Regained by a fork: counts after fork_delay.
        assert_eq!(q.observe(2, at(3000)), None);
        assert_eq!(q.on_timer(at(4000)), Some(true));
        // Too many (above quorum_max) is a loss too, by a fork, so after fork_delay.
        assert_eq!(q.observe(4, at(5000)), None);
        assert_eq!(q.deadline(), Some(at(6000)));
        // Back within the delay: cancelled, nothing changes.
        assert_eq!(q.observe(3, at(5500)), None);
        assert_eq!(q.deadline(), None);
        assert!(q.have_quorum());
        // Changes within the range say nothing.
        assert_eq!(q.observe(2, at(7000)), None);
        assert_eq!(q.deadline(), None);
    }

    #[test]
    fn without_delays_changes_count_at_once() {
        let p = tracked("x", &[], ParamMatch::None);
        let mut q = Quorum::new(&p, 0);
        assert!(!q.have_quorum());
        let now = Instant::now();
        assert_eq!(q.observe(1, now), Some(true));
        assert_eq!(q.observe(3, now), None);
        assert_eq!(q.observe(0, now), Some(false));
        let mut none = tracked("x", &[], ParamMatch::None);
        none.quorum = 0;
        none.quorum_max = Some(0);
        let mut q = Quorum::new(&none, 0);
        assert!(q.have_quorum(), "quorum_max 0: up while none runs");
        assert_eq!(q.observe(1, now), Some(false));
    }

    /// This test process itself is found by its name, and by its command line.
    #[test]
    fn the_census_finds_this_process() {
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        let by_name = tracked(me.trim(), &[], ParamMatch::None);
        let exe = std::fs::read("/proc/self/cmdline").unwrap();
        let argv0 = String::from_utf8_lossy(exe.split(|b| *b == 0).next().unwrap()).into_owned();
        let mut by_cmdline = tracked(&argv0, &[], ParamMatch::None);
        by_cmdline.full_command = true;
        let nobody = tracked("no-such-process-xlb", &[], ParamMatch::None);
        let counts = census(&[by_name, by_cmdline, nobody]);
        assert!(counts[0] >= 1 && counts[1] >= 1, "{counts:?}");
        assert_eq!(counts[2], 0);
    }
}

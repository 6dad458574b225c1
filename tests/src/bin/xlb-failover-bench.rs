//! `cargo xtask bench` (after xlb-bench): VRRP failover of xlb beside keepalived 2.2, measured in
//! the same run on the same lab (client, two directors, two DR backends in network namespaces).
//!
//! * failover: from `kill -9` of the MASTER to the first reply through the VIP via the new
//!   MASTER, at version 2 advert_int 1 and version 3 advert_int 0.1 and 0.01;
//! * SIGTERM handover (version 2, advert_int 1): the probing client's longest gap between
//!   replies, and the failed requests of an ordinary client (new connection per GET, 3 s
//!   timeouts) running alongside;
//! * flaps: state changes in 30 s at version 3 advert_int 0.01 with two busy loops running.
//!
//! For kill -9, the client probes back to back from two threads, each probe a new connection to the VIP's
//! echo port that is given up after 5 ms without a SYN-ACK or 50 ms without the answer (and
//! retried at once). To tell which director a reply
//! came through, xlb on d1 balances to b1 only and on d2 to b2 only there; keepalived (VRRP
//! only) delivers VIP traffic to its director's own stack, where a local server answers d1 or
//! d2. For SIGTERM and flaps, both xlb directors balance over both backends, as in production.
//!
//! Prints min/median/max and ratios; asserts nothing. Run counts: XLB_FAILOVER_RUNS (5),
//! XLB_SIGTERM_RUNS (5), XLB_FLAP_RUNS (3), XLB_FLAP_SECONDS (30), XLB_FLAP_LOOPS (busy loops,
//! 2); XLB_BENCH_VERBOSE=1 prints each kill -9 run's timeline.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use rand::Rng as _;
use xlb_tests::{
    ha_lab::{Daemon, HaLab, Probe, VrrpSpec, start_prober},
    lab::{ECHO_PORT, Process},
};

const HIGH: u8 = 150;
const LOW: u8 = 100;
const DAEMONS: [Daemon; 2] = [Daemon::Xlb, Daemon::Keepalived];

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn xlb_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("XLB_BIN") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    let xlb = exe.parent().context("no target dir")?.join("xlb");
    if !xlb.exists() {
        bail!(
            "{} is missing: cargo build --release -p lb-userspace --bins",
            xlb.display()
        );
    }
    Ok(xlb)
}

/// How xlb directors are configured. Split: d1 balances to b1 only and d2 to b2 only, so that
/// an answer tells which director it came through. Shared: both over both backends with the
/// same Maglev table, as in production, so that connections survive a change of director.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backends {
    Split,
    Shared,
}

/// Whether `answer` came through director `d` (for shared xlb backends: through a director).
fn via(lab: &HaLab, daemon: Daemon, backends: Backends, d: usize, answer: &str) -> bool {
    match (daemon, backends) {
        (Daemon::Xlb, Backends::Split) => answer == format!("b{}", d + 1),
        (Daemon::Xlb, Backends::Shared) => answer.starts_with('b'),
        (Daemon::Keepalived, _) => answer == lab.director_name(d),
    }
}

/// A pair: d1 MASTER at priority 150, d2 BACKUP at 100, traffic through d1.
fn pair(daemon: Daemon, spec: &VrrpSpec, backends: Backends, tag: &str) -> Result<HaLab> {
    let mut lab = HaLab::new(tag, 2, 2, &xlb_binary()?)?;
    start(&mut lab, daemon, spec, backends, 0)?;
    start(&mut lab, daemon, spec, backends, 1)?;
    settle_on_d1(&mut lab, daemon, spec, backends)?;
    Ok(lab)
}

fn start(
    lab: &mut HaLab,
    daemon: Daemon,
    spec: &VrrpSpec,
    backends: Backends,
    d: usize,
) -> Result<()> {
    let priority = if d == 0 { HIGH } else { LOW };
    match daemon {
        Daemon::Xlb => {
            let members: Vec<usize> = match backends {
                Backends::Split => vec![d],
                Backends::Shared => (0..lab.backends.len()).collect(),
            };
            let config = lab.vrrp_instance(d, spec, priority) + &lab.virtual_servers(&members);
            lab.start_xlb(d, &config)
        }
        Daemon::Keepalived => {
            let config = lab.keepalived_config(d, spec, priority);
            lab.start_keepalived(d, &config)
        }
    }
}

/// Waits until d1 is the only MASTER and the client's traffic goes through it.
fn settle_on_d1(
    lab: &mut HaLab,
    daemon: Daemon,
    spec: &VrrpSpec,
    backends: Backends,
) -> Result<()> {
    lab.wait_master(
        0,
        spec.master_down_interval(HIGH) * 3 + Duration::from_secs(5),
    )?;
    lab.wait_state(1, "BACKUP", Duration::from_secs(3))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if lab
            .get(Duration::from_millis(500))
            .is_ok_and(|a| via(lab, daemon, backends, 0, &a))
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("traffic does not go through d1; logs:\n{}", lab.logs());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Probers running side by side (one stalled in a TCP retransmission does not hide the others'
/// replies).
const PROBERS: usize = 2;

struct Probers(Vec<xlb_tests::ha_lab::Prober>);

impl Probers {
    fn start(lab: &HaLab) -> Result<Self> {
        let mut v = Vec::new();
        for i in 0..PROBERS {
            v.push(start_prober(
                &lab.client,
                SocketAddr::from((lab.vip, ECHO_PORT)),
                Duration::from_millis(5),
                Duration::from_millis(50),
                Duration::from_secs(60),
            )?);
            if i + 1 < PROBERS {
                thread::sleep(Duration::from_micros(500));
            }
        }
        Ok(Self(v))
    }

    /// Every probe of every prober, by the time it ended.
    fn finish(self) -> Vec<Probe> {
        let mut all: Vec<Probe> = self.0.into_iter().flat_map(|p| p.finish()).collect();
        all.sort_by_key(|p| p.ended);
        all
    }
}

/// One kill -9 failover: ms from the kill to the first reply via d2. Leaves d1 MASTER again.
fn failover_once(lab: &mut HaLab, daemon: Daemon, spec: &VrrpSpec) -> Result<Option<f64>> {
    let probes = Probers::start(lab)?;
    // Kill at a random point of the advert interval.
    let phase = rand::thread_rng().gen_range(0.0..1.0);
    thread::sleep(Duration::from_millis(300) + spec.interval().mul_f64(phase));
    let killed = lab.kill9(0)?;
    let limit = spec.master_down_interval(LOW) * 2 + Duration::from_secs(3);
    let took_over = lab.wait_state(1, "MASTER", limit);
    thread::sleep(Duration::from_millis(300));
    let probes = probes.finish();
    let first = probes.iter().filter(|p| p.ended > killed).find(|p| {
        p.result
            .as_ref()
            .is_ok_and(|a| via(lab, daemon, Backends::Split, 1, a))
    });
    let before = probes.iter().filter(|p| p.ended < killed).any(|p| {
        p.result
            .as_ref()
            .is_ok_and(|a| via(lab, daemon, Backends::Split, 0, a))
    });
    let ms = first
        .filter(|_| before)
        .map(|p| (p.ended - killed).as_secs_f64() * 1000.0);
    if std::env::var_os("XLB_BENCH_VERBOSE").is_some() {
        let last_d1 = probes
            .iter()
            .filter(|p| {
                p.result
                    .as_ref()
                    .is_ok_and(|a| via(lab, daemon, Backends::Split, 0, a))
            })
            .map(|p| p.ended)
            .max();
        let at = |t: Option<Instant>| {
            t.map(|t| {
                if t >= killed {
                    format!("+{:.1}", (t - killed).as_secs_f64() * 1000.0)
                } else {
                    format!("-{:.1}", (killed - t).as_secs_f64() * 1000.0)
                }
            })
        };
        let failures: BTreeMap<String, usize> =
            probes
                .iter()
                .filter(|p| p.ended > killed)
                .fold(BTreeMap::new(), |mut m, p| {
                    let k = match &p.result {
                        Ok(a) => format!("ok {a}"),
                        Err(e) => e.split(':').next_back().unwrap_or("").trim().to_string(),
                    };
                    *m.entry(k).or_default() += 1;
                    m
                });
        eprintln!(
            "    d2 MASTER at {:?} ms, last reply via d1 at {:?} ms, first via d2 at {:?}; after the kill: {failures:?}",
            at(took_over.as_ref().ok().copied()),
            at(last_d1),
            at(first.map(|p| p.ended)),
        );
    }
    took_over?;
    // Back to d1.
    start(lab, daemon, spec, Backends::Split, 0)?;
    settle_on_d1(lab, daemon, spec, Backends::Split)?;
    Ok(ms)
}

/// The longest gap between successful probes from `from` on.
fn longest_gap(probes: &[Probe], from: Instant) -> f64 {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for p in probes.iter().filter(|p| p.ended >= from) {
        if p.result.is_ok() {
            longest = longest.max(p.ended - last);
            last = p.ended;
        }
    }
    longest.as_secs_f64() * 1000.0
}

/// One SIGTERM handover: the probers' longest gap in ms, and the failed requests of an ordinary
/// client (GETs on new connections, 3 s timeout) running alongside. Leaves d1 MASTER again.
fn sigterm_once(lab: &mut HaLab, daemon: Daemon, spec: &VrrpSpec) -> Result<(f64, usize)> {
    let probes = Probers::start(lab)?;
    let load = lab.start_load()?;
    let phase = rand::thread_rng().gen_range(0.0..1.0);
    thread::sleep(Duration::from_millis(300) + spec.interval().mul_f64(phase));
    let from = Instant::now() - Duration::from_millis(100);
    lab.sigterm(0)?;
    let exited = lab.wait_exit(
        0,
        spec.master_down_interval(LOW) * 2 + Duration::from_secs(3),
    );
    let took_over = lab.wait_state(1, "MASTER", Duration::from_secs(5));
    thread::sleep(Duration::from_millis(500));
    let probes = probes.finish();
    let answers = load.finish();
    exited?;
    took_over?;
    let gap = longest_gap(&probes, from);
    let failed = answers.iter().filter(|a| a.result.is_err()).count();
    start(lab, daemon, spec, Backends::Shared, 0)?;
    settle_on_d1(lab, daemon, spec, Backends::Shared)?;
    Ok((gap, failed))
}

/// State changes within `seconds` with `loops` busy loops running: (d2 taking over) + (d1 leaving
/// MASTER).
fn flaps_once(daemon: Daemon, seconds: u64, loops: usize) -> Result<usize> {
    let spec = VrrpSpec::v3("0.01");
    let lab = pair(daemon, &spec, Backends::Shared, "fbflap")?;
    let before = (
        lab.entered(1, "MASTER"),
        lab.entered(0, "BACKUP") + lab.entered(0, "FAULT"),
    );
    let mut busy: Vec<Process> = Vec::new();
    for i in 0..loops {
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a busy loop")?;
        busy.push(Process {
            child,
            what: format!("busy loop {i}"),
        });
    }
    thread::sleep(Duration::from_secs(seconds));
    for mut l in busy {
        // SAFETY: our own child, by pid.
        unsafe { libc::kill(l.pid(), libc::SIGKILL) };
        let _ = l.child.wait();
    }
    let after = (
        lab.entered(1, "MASTER"),
        lab.entered(0, "BACKUP") + lab.entered(0, "FAULT"),
    );
    Ok((after.0 - before.0) + (after.1 - before.1))
}

fn summary(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    Some((v[0], v[v.len() / 2], v[v.len() - 1]))
}

fn fmt3(s: Option<(f64, f64, f64)>) -> String {
    match s {
        Some((a, b, c)) => format!("{a:.0} / {b:.0} / {c:.0}"),
        None => "n/a".into(),
    }
}

fn ratio(a: Option<(f64, f64, f64)>, b: Option<(f64, f64, f64)>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a.1 > 0.0 => format!("{:.2}x", b.1 / a.1),
        _ => "n/a".into(),
    }
}

fn main() -> Result<()> {
    let runs = env_count("XLB_FAILOVER_RUNS", 5);
    let sigterm_runs = env_count("XLB_SIGTERM_RUNS", 5);
    let loops = env_count("XLB_FLAP_LOOPS", 2);
    let flap_runs = env_count("XLB_FLAP_RUNS", 3);
    let flap_seconds = env_count("XLB_FLAP_SECONDS", 30) as u64;
    xlb_binary()?;
    let keepalived = Command::new("keepalived")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let daemons: Vec<Daemon> = DAEMONS
        .into_iter()
        .filter(|d| *d == Daemon::Xlb || keepalived)
        .collect();
    if !keepalived {
        eprintln!("keepalived is not installed (cargo xtask setup): xlb only");
    }
    let cases = [
        ("v2 advert_int 1", VrrpSpec::v2(1, None)),
        ("v3 advert_int 0.1", VrrpSpec::v3("0.1")),
        ("v3 advert_int 0.01", VrrpSpec::v3("0.01")),
    ];

    let mut failover: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let mut missed: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut handover: BTreeMap<&str, (Vec<f64>, Vec<usize>)> = BTreeMap::new();
    let mut flaps: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let started = Instant::now();

    for &daemon in &daemons {
        for (label, spec) in cases.iter().filter(|_| runs > 0) {
            eprintln!("{}: kill -9 failover, {label}, {runs} runs", daemon.name());
            let mut lab = pair(daemon, spec, Backends::Split, "fbkill")?;
            for run in 0..runs {
                match failover_once(&mut lab, daemon, spec) {
                    Ok(Some(ms)) => {
                        eprintln!("  run {}: {ms:.1} ms", run + 1);
                        failover.entry((daemon.name(), label)).or_default().push(ms);
                    }
                    Ok(None) => {
                        eprintln!("  run {}: no reply via the new MASTER", run + 1);
                        *missed.entry((daemon.name(), label)).or_default() += 1;
                    }
                    Err(e) => {
                        eprintln!("  run {}: {e:#}", run + 1);
                        *missed.entry((daemon.name(), label)).or_default() += 1;
                        // Start over on a fresh lab.
                        drop(lab);
                        lab = pair(daemon, spec, Backends::Split, "fbkill")?;
                    }
                }
            }
        }
        let spec = VrrpSpec::v2(1, None);
        if sigterm_runs > 0 {
            eprintln!(
                "{}: SIGTERM handover, v2 advert_int 1, {sigterm_runs} runs",
                daemon.name()
            );
        }
        let mut lab = None;
        for run in 0..sigterm_runs {
            let lab = match &mut lab {
                Some(lab) => lab,
                None => lab.insert(pair(daemon, &spec, Backends::Shared, "fbterm")?),
            };
            match sigterm_once(lab, daemon, &spec) {
                Ok((gap, failed)) => {
                    eprintln!(
                        "  run {}: longest gap {gap:.1} ms, {failed} failed requests",
                        run + 1
                    );
                    let e = handover.entry(daemon.name()).or_default();
                    e.0.push(gap);
                    e.1.push(failed);
                }
                Err(e) => {
                    eprintln!("  run {}: {e:#}", run + 1);
                    // Start over on a fresh lab.
                    *lab = pair(daemon, &spec, Backends::Shared, "fbterm")?;
                }
            }
        }
        drop(lab);
        for run in 0..flap_runs {
            eprintln!(
                "{}: flaps in {flap_seconds} s at v3 advert_int 0.01 with {loops} busy loops, run {}",
                daemon.name(),
                run + 1
            );
            match flaps_once(daemon, flap_seconds, loops) {
                Ok(n) => {
                    eprintln!("  {n} state changes");
                    flaps.entry(daemon.name()).or_default().push(n);
                }
                Err(e) => eprintln!("  {e:#}"),
            }
        }
    }

    let (x, k) = ("xlb", "keepalived");
    println!();
    println!(
        "VRRP failover, xlb vs keepalived 2.2 (same lab, same run; {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    println!();
    println!(
        "kill -9 of the MASTER to the first reply via the new MASTER, ms (min / median / max of {runs}):"
    );
    println!(
        "  {:<22} {:>22} {:>22} {:>16}",
        "", "xlb", "keepalived", "keepalived/xlb"
    );
    for (label, _) in &cases {
        let xs = summary(failover.get(&(x, *label)).map_or(&[][..], Vec::as_slice));
        let ks = summary(failover.get(&(k, *label)).map_or(&[][..], Vec::as_slice));
        let note = |d: &str| {
            missed
                .get(&(d, *label))
                .map(|n| format!(" ({n} missed)"))
                .unwrap_or_default()
        };
        println!(
            "  {:<22} {:>22} {:>22} {:>16}",
            label,
            fmt3(xs) + &note(x),
            fmt3(ks) + &note(k),
            ratio(xs, ks)
        );
    }
    println!();
    println!(
        "SIGTERM of the MASTER (v2 advert_int 1), {sigterm_runs} runs: client's longest gap between replies, ms (min / median / max); failed requests of a client with 3 s timeouts (total):"
    );
    let hs = |d: &str| {
        handover
            .get(d)
            .map(|(g, f)| (summary(g), f.iter().sum::<usize>()))
            .unwrap_or((None, 0))
    };
    let (xg, xf) = hs(x);
    let (kg, kf) = hs(k);
    println!(
        "  {:<22} {:>22} {:>22} {:>16}",
        "longest gap",
        fmt3(xg),
        fmt3(kg),
        ratio(xg, kg)
    );
    println!("  {:<22} {:>22} {:>22}", "failed requests", xf, kf);
    println!();
    println!(
        "flaps in {flap_seconds} s at v3 advert_int 0.01 with {loops} busy loops ({flap_runs} runs):"
    );
    let fs = |d: &str| {
        flaps
            .get(d)
            .map(|v| {
                format!(
                    "{} of {} runs ({} changes)",
                    v.iter().filter(|n| **n > 0).count(),
                    v.len(),
                    v.iter().sum::<usize>()
                )
            })
            .unwrap_or_else(|| "n/a".into())
    };
    println!("  {:<22} {:>22} {:>22}", "runs that flapped", fs(x), fs(k));
    Ok(())
}

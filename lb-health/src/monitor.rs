//! One task per real server, running its checkers with keepalived's timing
//! and state rules (check_api.c, check_tcp.c `tcp_epilog`, check_http.c
//! `epilog`, check_misc.c, ipwrapper.c `update_svr_checker_state` and
//! `perform_svr_state`):
//!
//! - each checker starts after a random delay in `[0, warmup]` (warmup
//!   defaults to the checker's delay_loop), then runs every delay_loop;
//! - a checker that is up and fails is retried `retry` times,
//!   `delay_before_retry` apart, and declared down only when the last retry
//!   fails too; one success puts a down checker back up. The very first
//!   check is not retried: one failure at start-up is enough;
//! - checkers start up, or down with `alpha`;
//! - the real server is up while all its checkers are up; one with no
//!   checkers is always up;
//! - on a change the real server is logged as keepalived logs it
//!   (`Adding service [ip]:tcp:port to VS [vip]:tcp:port`, `Removing ...
//!   from ...`, or `Enabling/Disabling ... of ...` with inhibit_on_failure),
//!   its notify_up/notify_down script runs and a [`HealthEvent`] is sent;
//! - a `misc_dynamic` weight change is logged (`Changing weight from A to B
//!   for [in]active service ...`) and sent as an event while up;
//! - SMTP_CHECK retries within every round, even while down, and its first
//!   check too (check_smtp.c starts each round with no retry spent);
//! - FILE_CHECK is not polled: it follows its track_file, up or down and with a
//!   weight added from the file's value, as soon as the file changes, with no
//!   retries (check_file.c, track_file.c).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lb_config::{Checker, NotifyScript, RealServer, VirtualServer};
use log::{debug, info, warn};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::check::{
    CheckContext, CheckFailure, CheckSuccess, checker_label, failed_line, run_check, success_line,
};
use crate::script::{ScriptOutcome, ScriptRunner};
use crate::track_file::checker_effect;
use crate::{RsKey, VsKey, service_trio};

/// How long a notify_up/notify_down script may run. keepalived starts them
/// and never waits; a bound keeps a hung one from piling up every flap.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);

/// A real server changed: went up or down, or its weight changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    pub virtual_server: VsKey,
    pub real_server: RsKey,
    pub up: bool,
    /// What to forward with: the configured weight, or the one misc_dynamic
    /// set, while up; 0 while down (the weight an inhibited server keeps).
    pub weight: u32,
}

/// What a monitor knows of its real server now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealServerHealth {
    pub up: bool,
    /// The configured weight, or the one misc_dynamic set; kept while down.
    pub weight: u32,
    pub inhibit_on_failure: bool,
    /// Checkers currently down.
    pub failed_checkers: usize,
}

impl RealServerHealth {
    /// The weight to forward with: `weight` while up, 0 while down.
    pub fn forwarding_weight(&self) -> u32 {
        if self.up { self.weight } else { 0 }
    }
}

/// Where monitors keep their real servers' health: blocks of one-word cells that never move.
/// A recomputation of the desired state reads the health of every real server (tens of
/// thousands); from a few contiguous blocks that is a plain load each, where a cell of its own
/// per monitor would be a cache miss each.
#[derive(Debug, Default)]
pub(crate) struct HealthCells {
    blocks: Vec<Arc<CellBlock>>,
    /// Cells given back, for the next monitors.
    free: Vec<u32>,
    /// Cells ever handed out.
    used: u32,
    /// The last owner tag handed out.
    owners: u32,
}

/// 4 KiB of cells.
const CELLS_PER_BLOCK: usize = 512;
type CellBlock = [AtomicU64; CELLS_PER_BLOCK];

impl HealthCells {
    /// A cell for a new monitor, holding `health`.
    pub(crate) fn take(&mut self, health: RealServerHealth) -> HealthCell {
        let index = self.free.pop().unwrap_or_else(|| {
            self.used += 1;
            self.used - 1
        });
        let (block, slot) = (
            index as usize / CELLS_PER_BLOCK,
            index as usize % CELLS_PER_BLOCK,
        );
        if block == self.blocks.len() {
            self.blocks
                .push(Arc::new([const { AtomicU64::new(0) }; CELLS_PER_BLOCK]));
        }
        self.owners = (self.owners + 1) & HealthCell::OWNER_MAX;
        let cell = HealthCell {
            block: self.blocks[block].clone(),
            slot: slot as u16,
            index,
            owner: self.owners,
        };
        // The previous owner's task, aborted but perhaps mid-poll on another thread, can no
        // longer write: its tag no longer matches.
        cell.word().store(cell.pack(health), Ordering::Release);
        cell
    }

    /// Takes back the cell of a stopped monitor.
    pub(crate) fn give_back(&mut self, cell: &HealthCell) {
        self.free.push(cell.index);
    }
}

/// A monitor's [`RealServerHealth`] in one word of a [`HealthCells`] block, tagged with the
/// monitor it belongs to.
#[derive(Clone, Debug)]
pub(crate) struct HealthCell {
    block: Arc<CellBlock>,
    slot: u16,
    index: u32,
    owner: u32,
}

impl HealthCell {
    const UP: u64 = 1 << 32;
    const INHIBIT: u64 = 1 << 33;
    const FAILED_SHIFT: u32 = 34;
    /// Checkers down beyond this many read as this many (a real server has a handful).
    const FAILED_MAX: u64 = 0xff;
    const OWNER_SHIFT: u32 = 42;
    const OWNER_MAX: u32 = (1 << 22) - 1;

    fn word(&self) -> &AtomicU64 {
        &self.block[usize::from(self.slot)]
    }

    fn pack(&self, h: RealServerHealth) -> u64 {
        u64::from(h.weight)
            | if h.up { Self::UP } else { 0 }
            | if h.inhibit_on_failure {
                Self::INHIBIT
            } else {
                0
            }
            | (h.failed_checkers as u64).min(Self::FAILED_MAX) << Self::FAILED_SHIFT
            | u64::from(self.owner) << Self::OWNER_SHIFT
    }

    pub(crate) fn load(&self) -> RealServerHealth {
        let word = self.word().load(Ordering::Acquire);
        RealServerHealth {
            up: word & Self::UP != 0,
            weight: word as u32,
            inhibit_on_failure: word & Self::INHIBIT != 0,
            failed_checkers: ((word >> Self::FAILED_SHIFT) & Self::FAILED_MAX) as usize,
        }
    }

    /// Stores `health` unless the cell went to another monitor.
    fn store(&self, health: RealServerHealth) {
        let new = self.pack(health);
        let word = self.word();
        let mut current = word.load(Ordering::Relaxed);
        while (current >> Self::OWNER_SHIFT) as u32 == self.owner {
            match word.compare_exchange_weak(current, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
    }
}

/// What a monitor reports of its checks, for status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitorReport {
    /// When the real server last came up or went down (its start, before any change).
    pub since: Option<SystemTime>,
    /// The last check that ran: when, how long it took, and what it found.
    pub last_check: Option<CheckRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRecord {
    pub at: SystemTime,
    pub duration: Duration,
    /// `None` on success, else why it failed (keepalived's words).
    pub failure: Option<String>,
    /// The checker's kind, as keepalived names it (`TCP_CHECK`, `HTTP_GET`, ...).
    pub checker: String,
}

/// Configuration changes a running monitor takes without losing its state.
#[derive(Debug)]
struct MonitorUpdate {
    real_server: RealServer,
    scripts: Arc<ScriptRunner>,
}

/// A running monitor of one real server. Dropping it stops the checks
/// (and kills a script a check is running).
#[derive(Debug)]
pub struct RealServerMonitor {
    task: JoinHandle<()>,
    health: HealthCell,
    report: Arc<Mutex<MonitorReport>>,
    updates: mpsc::UnboundedSender<MonitorUpdate>,
    checkers: Vec<Checker>,
    /// The settings the task runs with, so that a reload that changes nothing sends nothing.
    settings: (RealServer, Arc<ScriptRunner>),
}

impl RealServerMonitor {
    /// Starts monitoring `rs` of `vs`. Must be called within a tokio runtime.
    pub fn spawn(
        vs: &VirtualServer,
        rs: &RealServer,
        ctx: CheckContext,
        events: mpsc::Sender<HealthEvent>,
    ) -> Self {
        Self::spawn_in(vs, rs, ctx, events, &mut HealthCells::default())
    }

    /// [`Self::spawn`], keeping the health in one of `cells`.
    pub(crate) fn spawn_in(
        vs: &VirtualServer,
        rs: &RealServer,
        ctx: CheckContext,
        events: mpsc::Sender<HealthEvent>,
        cells: &mut HealthCells,
    ) -> Self {
        let vs_key = VsKey::of(vs);
        // keepalived: checkers start down in alpha mode; a real server with
        // no checkers has nothing failing and is up.
        let checkers_up = !vs.alpha;
        let checkers: Vec<CheckerRun> = rs
            .checkers
            .iter()
            .map(|c| CheckerRun {
                config: Arc::new(c.clone()),
                state: CheckerState::starting(c, checkers_up, &ctx),
            })
            .collect();
        let failed_checkers = checkers.iter().filter(|c| !c.state.up).count();
        let alive = failed_checkers == 0;
        let weight = effective_weight(rs.weight, &checkers);
        let health = cells.take(RealServerHealth {
            up: alive,
            weight,
            inhibit_on_failure: rs.inhibit_on_failure,
            failed_checkers,
        });
        let (updates, updates_rx) = mpsc::unbounded_channel();
        let settings = (rs.clone(), ctx.scripts.clone());
        let report = Arc::new(Mutex::new(MonitorReport {
            since: Some(SystemTime::now()),
            last_check: None,
        }));
        let task = Task {
            vs: vs_key,
            vs_name: vs_key.to_string(),
            rs_key: (rs.address, rs.port),
            rs_name: service_trio(rs.address, rs.port, vs.protocol),
            rs: rs.clone(),
            ctx,
            checkers,
            alive,
            weight,
            last_sent: None,
            health: health.clone(),
            report: report.clone(),
            events,
            updates: updates_rx,
        };
        RealServerMonitor {
            task: tokio::spawn(task.run()),
            health,
            report,
            updates,
            checkers: rs.checkers.clone(),
            settings,
        }
    }

    /// The real server's state now.
    pub fn health(&self) -> RealServerHealth {
        self.health.load()
    }

    /// Where its task keeps the health: what a virtual server's walk over its real servers
    /// reads.
    pub(crate) fn health_cell(&self) -> HealthCell {
        self.health.clone()
    }

    /// Its checks' recent history.
    pub fn report(&self) -> MonitorReport {
        lock(&self.report).clone()
    }

    /// The checkers this monitor runs; a reload keeps the monitor only if
    /// they are unchanged.
    pub fn checkers(&self) -> &[Checker] {
        &self.checkers
    }

    /// Takes new settings that do not need new checks: weight,
    /// inhibit_on_failure, notify scripts, the script runner.
    pub fn update(&mut self, rs: &RealServer, scripts: Arc<ScriptRunner>) {
        if self.settings.0 == *rs && Arc::ptr_eq(&self.settings.1, &scripts) {
            return;
        }
        self.settings = (rs.clone(), scripts.clone());
        // Fails only if the task has ended, when there is nothing to update.
        let _ = self.updates.send(MonitorUpdate {
            real_server: rs.clone(),
            scripts,
        });
    }

    /// Stops the checks and returns the last state.
    pub fn stop(self) -> RealServerHealth {
        self.task.abort();
        self.health()
    }
}

impl Drop for RealServerMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere mid-update of plain data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// keepalived's per-checker state: `is_up`, `has_run`, `retry_it`, and the
/// weight a checker sets: MISC_CHECK's dynamic weight, FILE_CHECK's `cur_weight`.
#[derive(Clone, Debug)]
struct CheckerState {
    up: bool,
    has_run: bool,
    retry_it: u32,
    dynamic_weight: Option<u32>,
    /// Added to the real server's weight while the FILE_CHECK is up.
    file_weight: i64,
}

impl CheckerState {
    fn starting(c: &Checker, up: bool, ctx: &CheckContext) -> Self {
        let mut st = CheckerState {
            up,
            has_run: false,
            // keepalived (check_data.c): "For non alpha mode, one failure is
            // enough initially" - the retries are spent before the first
            // check. SMTP_CHECK starts every round afresh, its first included.
            retry_it: match c {
                Checker::Smtp(_) => 0,
                _ => c.timing().map(|t| t.retry).unwrap_or(0),
            },
            dynamic_weight: None,
            file_weight: 0,
        };
        if let Checker::File(f) = c {
            // keepalived reads the file before checking starts, alpha or not.
            let value = ctx.file_value(&f.track_file);
            st.has_run = true;
            match checker_effect(value, f.weight, f.reverse) {
                Some(w) => (st.up, st.file_weight) = (true, w),
                None => st.up = false,
            }
        }
        st
    }
}

/// keepalived's effective weight: the configured weight moved by every
/// misc_dynamic checker's (status - 2 - weight) and every FILE_CHECK's value.
fn effective_weight(base: u32, checkers: &[CheckerRun]) -> u32 {
    let base = i64::from(base);
    let w = checkers.iter().fold(base, |acc, c| {
        let dynamic = c.state.dynamic_weight.map_or(0, |d| i64::from(d) - base);
        acc + dynamic + c.state.file_weight
    });
    u32::try_from(w.max(0)).unwrap_or(u32::MAX)
}

struct CheckerRun {
    config: Arc<Checker>,
    state: CheckerState,
}

/// What a checker's pending future yields: an attempt's result, or a track_file's new value.
enum Outcome {
    Check(Result<CheckSuccess, CheckFailure>, Duration),
    File(i64),
}

type Attempt = Pin<Box<dyn Future<Output = (usize, Outcome)> + Send>>;

struct Task {
    vs: VsKey,
    vs_name: String,
    rs_key: RsKey,
    rs_name: String,
    rs: RealServer,
    ctx: CheckContext,
    checkers: Vec<CheckerRun>,
    alive: bool,
    weight: u32,
    /// (up, forwarding weight) of the last event sent.
    last_sent: Option<(bool, u32)>,
    health: HealthCell,
    events: mpsc::Sender<HealthEvent>,
    updates: mpsc::UnboundedReceiver<MonitorUpdate>,
    report: Arc<Mutex<MonitorReport>>,
}

impl Task {
    async fn run(mut self) {
        // The starting state, so the data plane can forward to a non-alpha
        // server at once, as keepalived adds it to IPVS at start-up.
        self.publish().await;
        let mut pending: FuturesUnordered<Attempt> = FuturesUnordered::new();
        for idx in 0..self.checkers.len() {
            let Some(timing) = self.checkers[idx].config.timing() else {
                // FILE_CHECK: nothing to activate, its file is followed.
                pending.push(self.attempt(idx, Duration::ZERO));
                continue;
            };
            info!(
                "Activating healthchecker for service {} for VS {}",
                self.rs_name, self.vs_name
            );
            let warmup = timing.warmup.as_micros();
            let delay = if warmup == 0 {
                0
            } else {
                rand::thread_rng().gen_range(0..=warmup)
            };
            pending.push(self.attempt(idx, Duration::from_micros(delay)));
        }
        loop {
            tokio::select! {
                Some((idx, outcome)) = pending.next(), if !pending.is_empty() => {
                    let delay = match outcome {
                        Outcome::Check(result, took) => {
                            self.record(idx, &result, took);
                            self.on_result(idx, result).await
                        }
                        Outcome::File(value) => {
                            self.on_file(idx, value).await;
                            Duration::ZERO
                        }
                    };
                    pending.push(self.attempt(idx, delay));
                }
                update = self.updates.recv() => match update {
                    Some(update) => self.on_update(update).await,
                    // The monitor handle is gone: nobody wants these checks.
                    None => return,
                },
            }
        }
    }

    fn attempt(&self, idx: usize, delay: Duration) -> Attempt {
        let checker = self.checkers[idx].config.clone();
        if let Checker::File(f) = &*checker {
            // The next change of the file; none ever if it is not watched.
            let values = self.ctx.files.get(&f.track_file).cloned();
            return Box::pin(async move {
                if let Some(mut rx) = values
                    && rx.changed().await.is_ok()
                {
                    return (idx, Outcome::File(*rx.borrow_and_update()));
                }
                std::future::pending().await
            });
        }
        let ctx = self.ctx.clone();
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let started = std::time::Instant::now();
            let result = run_check(&checker, &ctx).await;
            (idx, Outcome::Check(result, started.elapsed()))
        })
    }

    fn record(&self, idx: usize, result: &Result<CheckSuccess, CheckFailure>, took: Duration) {
        lock(&self.report).last_check = Some(CheckRecord {
            at: SystemTime::now(),
            duration: took,
            failure: result.as_ref().err().map(|f| f.to_string()),
            checker: checker_label(&self.checkers[idx].config).to_string(),
        });
    }

    /// keepalived's checker epilog: updates the checker's state from one
    /// attempt and returns the delay before the next.
    async fn on_result(
        &mut self,
        idx: usize,
        result: Result<CheckSuccess, CheckFailure>,
    ) -> Duration {
        let checker = self.checkers[idx].config.clone();
        let Some(timing) = checker.timing().cloned() else {
            return Duration::ZERO;
        };
        let label = checker_label(&checker);
        let mut next = timing.delay_loop.as_duration();
        match result {
            Ok(success) => {
                let st = &mut self.checkers[idx].state;
                st.retry_it = 0;
                let first = !st.has_run;
                let was_up = st.up;
                st.has_run = true;
                let weight_changed = if matches!(&*checker, Checker::Misc(m) if m.misc_dynamic)
                    && st.dynamic_weight != success.dynamic_weight
                {
                    st.dynamic_weight = success.dynamic_weight;
                    true
                } else {
                    false
                };
                if !was_up || first {
                    if let Some(line) = success_line(&checker, &self.rs_name, &self.vs_name) {
                        info!("{line}");
                    }
                    self.set_checker_state(idx, true, first).await;
                }
                if weight_changed {
                    self.refresh_weight().await;
                }
            }
            Err(failure) if matches!(&*checker, Checker::Smtp(_)) => {
                return self.on_smtp_failure(idx, &failure, &timing).await;
            }
            Err(failure) => {
                let st = &mut self.checkers[idx].state;
                let first = !st.has_run;
                st.has_run = true;
                if !(st.up || first) {
                    // Already down: keepalived does not retry a dead server.
                    debug!(
                        "{} ({failure})",
                        failure.log_line(&self.rs_name, &self.vs_name, "")
                    );
                    return next;
                }
                // DNS_CHECK says nothing of an attempt it will retry.
                let quiet_retries = matches!(&*checker, Checker::Dns(_));
                if st.retry_it < timing.retry {
                    st.retry_it += 1;
                    next = timing.delay_before_retry.as_duration();
                    let note = if st.retry_it == 1 {
                        format!(
                            ", will do {} {}",
                            timing.retry,
                            plural_retries(timing.retry)
                        )
                    } else {
                        format!(" on retry {}/{}", st.retry_it - 1, timing.retry)
                    };
                    let line = failure.log_line(&self.rs_name, &self.vs_name, &note);
                    if quiet_retries {
                        debug!("{line}");
                    } else {
                        info!("{line}");
                    }
                    debug!("{label} attempt on {} failed: {failure}", self.rs_name);
                    return next;
                }
                st.retry_it = 0;
                // A failed MISC_CHECK gives up its dynamic weight (cur_weight = 0).
                let weight_reset = st.dynamic_weight.take().is_some();
                let note = match &*checker {
                    // dns_final: " after N retries" once the checker has run, even N = 0.
                    Checker::Dns(_) if !first => format!(" after {} retries", timing.retry),
                    Checker::Dns(_) => String::new(),
                    _ if timing.retry == 0 => " with retry disabled".to_string(),
                    _ => format!(" after {} {}", timing.retry, plural_retries(timing.retry)),
                };
                info!("{}", failure.log_line(&self.rs_name, &self.vs_name, &note));
                let retries = (timing.retry > 0 && !first).then_some(timing.retry);
                if let Some(line) = failed_line(&checker, &self.rs_name, &self.vs_name, retries) {
                    info!("{line}");
                }
                debug!("{label} on {} failed: {failure}", self.rs_name);
                self.set_checker_state(idx, false, first).await;
                if weight_reset {
                    self.refresh_weight().await;
                }
            }
        }
        next
    }

    /// keepalived's `smtp_final` for a failed attempt: every round has its retries, down or
    /// not; the failure is logged on the last one while the checker is up or has not run.
    async fn on_smtp_failure(
        &mut self,
        idx: usize,
        failure: &CheckFailure,
        timing: &lb_config::CheckTiming,
    ) -> Duration {
        let st = &mut self.checkers[idx].state;
        let first = !st.has_run;
        let watched = st.up || first;
        let line = failure.log_line(&self.rs_name, &self.vs_name, "");
        if watched && st.retry_it >= timing.retry {
            info!("{line}");
        } else {
            debug!("{line}");
        }
        st.retry_it += 1;
        if st.retry_it <= timing.retry {
            return timing.delay_before_retry.as_duration();
        }
        // The next round starts with its retries unspent.
        st.retry_it = 0;
        if watched {
            self.set_checker_state(idx, false, first).await;
        }
        timing.delay_loop.as_duration()
    }

    /// FILE_CHECK: the track_file now holds `value` (check_file.c,
    /// `process_update_checker_track_file_status`): down on a fault, else up with the value
    /// times the weight added to the real server's weight.
    async fn on_file(&mut self, idx: usize, value: i64) {
        let Checker::File(f) = &*self.checkers[idx].config else {
            return;
        };
        let effect = checker_effect(value, f.weight, f.reverse);
        let st = &mut self.checkers[idx].state;
        match effect {
            None if st.up => {
                st.file_weight = 0;
                self.set_checker_state(idx, false, false).await;
                self.weight = self.effective_weight();
                self.publish().await;
            }
            Some(w) if !st.up => {
                st.file_weight = w;
                self.weight = self.effective_weight();
                self.set_checker_state(idx, true, false).await;
            }
            Some(w) if st.file_weight != w => {
                st.file_weight = w;
                self.refresh_weight().await;
            }
            _ => {}
        }
    }

    /// keepalived's `update_svr_checker_state`.
    async fn set_checker_state(&mut self, idx: usize, up: bool, first_run: bool) {
        let st = &mut self.checkers[idx].state;
        if st.up == up {
            // keepalived runs the notifier on the first result of a checker
            // that starts down (alpha) and stays down, so the script learns
            // the state.
            if first_run && !up && !self.alive {
                self.notify(false);
            }
            return;
        }
        st.up = up;
        let alive = self.checkers.iter().all(|c| c.state.up);
        if alive != self.alive {
            self.alive = alive;
            lock(&self.report).since = Some(SystemTime::now());
            let (verb, prep) = match (alive, self.rs.inhibit_on_failure) {
                (true, false) => ("Adding", "to"),
                (true, true) => ("Enabling", "of"),
                (false, false) => ("Removing", "from"),
                (false, true) => ("Disabling", "of"),
            };
            info!("{verb} service {} {prep} VS {}", self.rs_name, self.vs_name);
            self.notify(alive);
        }
        self.publish().await;
    }

    fn effective_weight(&self) -> u32 {
        effective_weight(self.rs.weight, &self.checkers)
    }

    async fn refresh_weight(&mut self) {
        let new = self.effective_weight();
        if new != self.weight {
            info!(
                "Changing weight from {} to {new} for {}active service {} of VS {}",
                self.weight,
                if self.alive { "" } else { "in" },
                self.rs_name,
                self.vs_name
            );
            self.weight = new;
        }
        self.publish().await;
    }

    async fn on_update(&mut self, update: MonitorUpdate) {
        self.ctx.scripts = update.scripts;
        self.rs = update.real_server;
        self.weight = self.effective_weight();
        self.publish().await;
    }

    /// Shares the state and sends an event if what the data plane sees changed.
    async fn publish(&mut self) {
        let failed = self.checkers.iter().filter(|c| !c.state.up).count();
        let health = RealServerHealth {
            up: self.alive,
            weight: self.weight,
            inhibit_on_failure: self.rs.inhibit_on_failure,
            failed_checkers: failed,
        };
        let sent = (health.up, health.forwarding_weight());
        self.health.store(health);
        if self.last_sent == Some(sent) {
            return;
        }
        self.last_sent = Some(sent);
        let event = HealthEvent {
            virtual_server: self.vs,
            real_server: self.rs_key,
            up: sent.0,
            weight: sent.1,
        };
        // The receiver is gone only when the daemon is shutting down.
        let _ = self.events.send(event).await;
    }

    /// Runs notify_up or notify_down without waiting for it (keepalived's
    /// notify_exec does not wait either).
    fn notify(&self, up: bool) {
        let script = if up {
            &self.rs.notify_up
        } else {
            &self.rs.notify_down
        };
        if let Some(script) = script {
            spawn_notify(self.ctx.scripts.clone(), script.clone(), NOTIFY_TIMEOUT);
        }
    }
}

fn plural_retries(n: u32) -> &'static str {
    if n == 1 { "retry" } else { "retries" }
}

/// Starts a notify script in the background and logs how it went.
pub(crate) fn spawn_notify(scripts: Arc<ScriptRunner>, script: NotifyScript, timeout: Duration) {
    tokio::spawn(async move {
        let outcome = run_notify(&scripts, &script, timeout).await;
        debug!("notify script {} ended: {outcome:?}", script.command);
    });
}

pub(crate) async fn run_notify(
    scripts: &ScriptRunner,
    script: &NotifyScript,
    timeout: Duration,
) -> ScriptOutcome {
    let outcome = scripts
        .run(&script.command, script.user.as_ref(), timeout, &[])
        .await;
    match &outcome {
        ScriptOutcome::Exited(0) | ScriptOutcome::NotRun(_) => {}
        ScriptOutcome::Exited(code) => {
            info!("Notify script {} exited with status {code}", script.command)
        }
        ScriptOutcome::Signaled(sig) => {
            info!("Notify script {} died of signal {sig}", script.command)
        }
        ScriptOutcome::Timeout => warn!(
            "Notify script {} did not finish within {timeout:?} and was killed",
            script.command
        ),
    }
    outcome
}

#[cfg(test)]
mod tests;

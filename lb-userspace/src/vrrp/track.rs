//! What moves a VRRP instance's priority or puts it in FAULT: `vrrp_script` results,
//! interface link states, track_file values and vrrp_track_process quorums, each watched by
//! its own task.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use lb_config::{TrackFile, VrrpInstance, VrrpScript, VrrpTrackProcess};
use lb_health::track_file::{VrrpEffect, vrrp_effect};
use lb_health::track_process::{ProcessEvent, watch_processes};
use lb_health::{ScriptOutcome, ScriptRunner};
use log::{info, warn};
use tokio::sync::mpsc;

use crate::netlink::Netlink;

/// A tracked object changed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackEvent {
    Script { name: String, ok: bool },
    Link { name: String, up: bool },
    File { name: String, value: i64 },
    Process { name: String, have_quorum: bool },
}

/// How often link states are polled: well under any Master_Down_Interval worth having.
const LINK_POLL: Duration = Duration::from_millis(100);

/// Runs a `vrrp_script` every `interval`, with keepalived's fall and rise: `fall` failures in
/// a row make it failed, `rise` successes make it good. It starts good, as in keepalived
/// without `init_fail`.
pub async fn watch_script(
    script: VrrpScript,
    runner: Arc<ScriptRunner>,
    events: mpsc::UnboundedSender<TrackEvent>,
) {
    let interval = Duration::from_secs(script.interval.max(1).into());
    let timeout = Duration::from_secs(script.timeout.max(1).into());
    let (mut ok, mut streak) = (true, 0u32);
    loop {
        let outcome = runner
            .run(&script.script, script.user.as_ref(), timeout, &[])
            .await;
        let success = matches!(outcome, ScriptOutcome::Exited(0));
        if success != ok {
            streak += 1;
            let needed = if ok { script.fall } else { script.rise }.max(1);
            if streak >= needed {
                ok = success;
                streak = 0;
                if ok {
                    info!("VRRP_Script({}) succeeded", script.name);
                } else {
                    warn!("VRRP_Script({}) failed ({outcome:?})", script.name);
                }
                if events
                    .send(TrackEvent::Script {
                        name: script.name.clone(),
                        ok,
                    })
                    .is_err()
                {
                    return;
                }
            }
        } else {
            streak = 0;
        }
        tokio::time::sleep(interval).await;
    }
}

/// Polls the link state of every named interface, reporting each one once at start and then
/// every change.
pub async fn watch_links(
    names: Vec<String>,
    netlink: Netlink,
    events: mpsc::UnboundedSender<TrackEvent>,
) {
    let mut known: BTreeMap<String, bool> = BTreeMap::new();
    loop {
        for name in &names {
            // A missing interface counts as down.
            let up = netlink.link_up(name).await.unwrap_or(false);
            if known.insert(name.clone(), up) != Some(up)
                && events
                    .send(TrackEvent::Link {
                        name: name.clone(),
                        up,
                    })
                    .is_err()
            {
                return;
            }
        }
        tokio::time::sleep(LINK_POLL).await;
    }
}

/// Watches the track_files instances name and sends each one's value at once, then every
/// change. Ends when `events` is closed.
pub async fn watch_track_files(files: Vec<TrackFile>, events: mpsc::UnboundedSender<TrackEvent>) {
    use futures::StreamExt as _;
    let values = lb_health::track_file::watch_files(&files);
    let mut changes = futures::stream::FuturesUnordered::new();
    for (name, rx) in values.iter() {
        let mut rx = rx.clone();
        // The value read at start counts as the first change.
        rx.mark_changed();
        changes.push(next_change(name.clone(), rx));
    }
    drop(values);
    loop {
        let next = tokio::select! {
            next = changes.next() => next,
            // Nobody listens (the VRRP thread is being replaced): stop watching.
            _ = events.closed() => return,
        };
        let Some((name, mut rx, changed)) = next else {
            return;
        };
        if !changed {
            continue;
        }
        let value = *rx.borrow_and_update();
        if events
            .send(TrackEvent::File {
                name: name.clone(),
                value,
            })
            .is_err()
        {
            return;
        }
        changes.push(next_change(name, rx));
    }
}

/// The next change of a track_file's value; false once its watch has ended.
async fn next_change(
    name: String,
    mut rx: tokio::sync::watch::Receiver<i64>,
) -> (String, tokio::sync::watch::Receiver<i64>, bool) {
    let changed = rx.changed().await.is_ok();
    (name, rx, changed)
}

/// Counts the processes of the vrrp_track_processes instances name
/// ([`lb_health::track_process`]) and sends their quorums.
pub async fn watch_track_processes(
    processes: Vec<VrrpTrackProcess>,
    events: mpsc::UnboundedSender<TrackEvent>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<ProcessEvent>();
    let census = tokio::spawn(watch_processes(processes, tx));
    loop {
        let event = tokio::select! {
            event = rx.recv() => event,
            _ = events.closed() => None,
        };
        let Some(ProcessEvent { name, have_quorum }) = event else {
            break;
        };
        if events
            .send(TrackEvent::Process { name, have_quorum })
            .is_err()
        {
            break;
        }
    }
    census.abort();
}

/// The tracked states an instance's fault and priority follow.
#[derive(Clone, Debug, Default)]
pub struct Tracked {
    pub scripts: BTreeMap<String, bool>,
    pub links: BTreeMap<String, bool>,
    pub files: BTreeMap<String, i64>,
    pub processes: BTreeMap<String, bool>,
}

/// keepalived's rule for an object that is good or bad (a script, an interface, a process's
/// quorum): weight 0 puts the instance in FAULT while the object is bad (with `reverse`,
/// while it is good); otherwise the weight, negated with `reverse`, is added while the
/// object is good if the weight is positive, while it is bad if it is negative
/// (vrrp_track.c `process_update_track_process_status`, `initialise_*_tracking_priorities`).
fn weigh(weight: i32, good: bool, reverse: bool, fault: &mut bool, delta: &mut i32) {
    if weight == 0 {
        *fault |= good == reverse;
    } else if (weight > 0) == good {
        *delta += if reverse { -weight } else { weight };
    }
}

impl Tracked {
    pub fn apply(&mut self, event: TrackEvent) {
        match event {
            TrackEvent::Script { name, ok } => {
                self.scripts.insert(name, ok);
            }
            TrackEvent::Link { name, up } => {
                self.links.insert(name, up);
            }
            TrackEvent::File { name, value } => {
                self.files.insert(name, value);
            }
            TrackEvent::Process { name, have_quorum } => {
                self.processes.insert(name, have_quorum);
            }
        }
    }

    /// keepalived's rules: the instance's own interface down puts it in FAULT; scripts,
    /// tracked interfaces and processes follow [`weigh`]; a track_file adds its value times
    /// its weight, a result of -254 or less being a FAULT ([`vrrp_effect`]).
    pub fn fault_and_delta(&self, vi: &VrrpInstance, scripts: &[VrrpScript]) -> (bool, i32) {
        let mut fault = self.links.get(&vi.interface) == Some(&false);
        let mut delta = 0i32;
        for ts in &vi.track_script {
            let Some(ok) = self
                .scripts
                .get(&ts.name)
                .copied()
                .or_else(|| scripts.iter().any(|s| s.name == ts.name).then_some(true))
            else {
                continue;
            };
            weigh(ts.weight, ok, ts.reverse, &mut fault, &mut delta);
        }
        for ti in &vi.track_interface {
            let up = self.links.get(&ti.name).copied().unwrap_or(true);
            weigh(
                ti.weight.unwrap_or(0),
                up,
                ti.reverse,
                &mut fault,
                &mut delta,
            );
        }
        for tf in &vi.track_file {
            // Not read yet: no effect until the watcher's first value.
            let Some(value) = self.files.get(&tf.name) else {
                continue;
            };
            match vrrp_effect(*value, tf.weight, tf.reverse) {
                VrrpEffect::Fault => fault = true,
                VrrpEffect::Priority(p) => delta += p,
            }
        }
        for tp in &vi.track_process {
            if let Some(have_quorum) = self.processes.get(&tp.name) {
                weigh(tp.weight, *have_quorum, tp.reverse, &mut fault, &mut delta);
            }
        }
        (fault, delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> (VrrpInstance, Vec<VrrpScript>) {
        let text = "vrrp_script up {\n  script /bin/true\n  weight 20\n}\nvrrp_script down {\n  script /bin/false\n  weight -30\n}\nvrrp_script must {\n  script /bin/true\n  weight 0\n}\nvrrp_instance V {\n  interface eth0\n  virtual_router_id 1\n  priority 100\n  virtual_ipaddress {\n    10.0.0.1\n  }\n  track_script {\n    up\n    down\n    must\n  }\n  track_interface {\n    eth1 weight -10\n    eth2\n  }\n}\n";
        let c = lb_config::parse_str(text, "t.conf").expect("valid").config;
        (c.vrrp_instances[0].clone(), c.vrrp_scripts.clone())
    }

    #[test]
    fn weights_follow_keepalived() {
        let (vi, scripts) = instance();
        let mut t = Tracked::default();
        assert_eq!(t.fault_and_delta(&vi, &scripts), (false, 20));
        t.apply(TrackEvent::Script {
            name: "down".into(),
            ok: false,
        });
        assert_eq!(t.fault_and_delta(&vi, &scripts), (false, -10));
        t.apply(TrackEvent::Link {
            name: "eth1".into(),
            up: false,
        });
        assert_eq!(t.fault_and_delta(&vi, &scripts), (false, -20));
        t.apply(TrackEvent::Link {
            name: "eth2".into(),
            up: false,
        });
        assert!(
            t.fault_and_delta(&vi, &scripts).0,
            "unweighted interface down"
        );
    }

    /// track_file and track_process, with keepalived's numbers: a file's value times its
    /// weight, a FAULT at -254 or below; a process's weight while the quorum is held (a
    /// positive one) or lost (a negative one), negated with reverse.
    #[test]
    fn files_and_processes_follow_keepalived() {
        let text = "track_file prio {\n  file /tmp/xlb-test-prio\n  weight 10\n}\ntrack_file stop {\n  file /tmp/xlb-test-stop\n  weight 0\n}\nvrrp_track_process web {\n  process nginx\n  weight 15\n}\nvrrp_track_process db {\n  process pg\n  weight -20\n}\nvrrp_track_process must {\n  process m\n}\nvrrp_track_process never {\n  process n\n  weight 5 reverse\n}\nvrrp_instance V {\n  interface eth0\n  virtual_router_id 1\n  virtual_ipaddress {\n    10.0.0.1\n  }\n  track_file {\n    prio\n    stop\n  }\n  track_process {\n    web\n    db\n    must\n    never\n  }\n}\n";
        let c = lb_config::parse_str(text, "t.conf").expect("valid").config;
        let vi = &c.vrrp_instances[0];
        let mut t = Tracked::default();
        let file = |name: &str, value: i64| TrackEvent::File {
            name: name.into(),
            value,
        };
        let process = |name: &str, have_quorum: bool| TrackEvent::Process {
            name: name.into(),
            have_quorum,
        };
        for e in [
            file("prio", 0),
            file("stop", 0),
            process("web", true),
            process("db", true),
            process("must", true),
            process("never", false),
        ] {
            t.apply(e);
        }
        assert_eq!(t.fault_and_delta(vi, &[]), (false, 15));
        t.apply(file("prio", 3));
        assert_eq!(t.fault_and_delta(vi, &[]), (false, 45));
        t.apply(file("prio", -2));
        assert_eq!(t.fault_and_delta(vi, &[]), (false, -5));
        t.apply(process("db", false));
        assert_eq!(t.fault_and_delta(vi, &[]), (false, -25));
        // reverse: a positive weight subtracts while the quorum is held.
        t.apply(process("never", true));
        assert_eq!(t.fault_and_delta(vi, &[]), (false, -30));
        t.apply(file("prio", -26));
        assert!(t.fault_and_delta(vi, &[]).0, "-260 is a FAULT");
        t.apply(file("prio", 0));
        t.apply(file("stop", 1));
        assert!(
            t.fault_and_delta(vi, &[]).0,
            "weight 0 and a non-zero value"
        );
        t.apply(file("stop", 0));
        t.apply(process("must", false));
        assert!(t.fault_and_delta(vi, &[]).0, "weight 0 and no quorum");
    }

    #[test]
    fn own_interface_down_and_weight_zero_scripts_are_faults() {
        let (vi, scripts) = instance();
        let mut t = Tracked::default();
        t.apply(TrackEvent::Link {
            name: "eth0".into(),
            up: false,
        });
        assert!(t.fault_and_delta(&vi, &scripts).0);
        let mut t = Tracked::default();
        t.apply(TrackEvent::Script {
            name: "must".into(),
            ok: false,
        });
        assert!(t.fault_and_delta(&vi, &scripts).0);
    }
}

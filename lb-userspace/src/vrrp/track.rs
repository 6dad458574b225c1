//! What moves a VRRP instance's priority or puts it in FAULT: `vrrp_script` results and
//! interface link states, each watched by its own task.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use lb_config::{VrrpInstance, VrrpScript};
use lb_health::{ScriptOutcome, ScriptRunner};
use log::{info, warn};
use tokio::sync::mpsc;

use crate::netlink::Netlink;

/// A tracked object changed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackEvent {
    Script { name: String, ok: bool },
    Link { name: String, up: bool },
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

/// The tracked states an instance's fault and priority follow.
#[derive(Clone, Debug, Default)]
pub struct Tracked {
    pub scripts: BTreeMap<String, bool>,
    pub links: BTreeMap<String, bool>,
}

impl Tracked {
    pub fn apply(&mut self, event: TrackEvent) {
        match event {
            TrackEvent::Script { name, ok } => self.scripts.insert(name, ok),
            TrackEvent::Link { name, up } => self.links.insert(name, up),
        };
    }

    /// keepalived's rules: the instance's own interface down, a tracked interface without a
    /// weight down, or a failed script of weight 0 put it in FAULT; otherwise a positive weight
    /// is added while its object is good, a negative one while it is bad (`reverse` swaps
    /// good and bad).
    pub fn fault_and_delta(&self, vi: &VrrpInstance, scripts: &[VrrpScript]) -> (bool, i32) {
        let mut fault = self.links.get(&vi.interface) == Some(&false);
        let mut delta = 0i32;
        let mut weigh = |weight: i32, good: bool, reverse: bool, fault: &mut bool| {
            let good = good != reverse;
            if weight == 0 {
                *fault |= !good;
            } else if (weight > 0 && good) || (weight < 0 && !good) {
                delta += weight;
            }
        };
        for ts in &vi.track_script {
            let Some(ok) = self
                .scripts
                .get(&ts.name)
                .copied()
                .or_else(|| scripts.iter().any(|s| s.name == ts.name).then_some(true))
            else {
                continue;
            };
            weigh(ts.weight, ok, ts.reverse, &mut fault);
        }
        for ti in &vi.track_interface {
            let up = self.links.get(&ti.name).copied().unwrap_or(true);
            weigh(ti.weight.unwrap_or(0), up, ti.reverse, &mut fault);
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

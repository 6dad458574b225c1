//! Routers exchanging real encoded adverts over a tiny simulated LAN on a virtual clock:
//! convergence to one master, failover in Master_Down_Interval, fast handover on shutdown,
//! split brain healing, preemption on recovery.

use std::net::IpAddr;
use std::time::Duration;

use lb_vrrp::{Action, Instance, InstanceConfig, RxMeta, State, Version};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address literal")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct Node {
    vr: Instance,
    /// The process runs (a crashed node neither sends nor receives nor runs timers).
    alive: bool,
    /// The node is on the LAN (false: partitioned away).
    connected: bool,
    holds_addresses: bool,
    /// When the node last received an advert it accepted.
    last_rx: Option<Duration>,
    became_master: Vec<Duration>,
}

struct Packet {
    deliver_at: Duration,
    to: usize,
    meta: RxMeta,
    payload: Vec<u8>,
}

struct Lan {
    nodes: Vec<Node>,
    in_flight: Vec<Packet>,
    now: Duration,
    latency: Duration,
    /// Total time during which more than one live node held the addresses.
    overlap: Duration,
}

impl Lan {
    fn new(configs: Vec<InstanceConfig>) -> Lan {
        let nodes = configs
            .into_iter()
            .map(|cfg| Node {
                vr: Instance::new(cfg).expect("valid config"),
                alive: true,
                connected: true,
                holds_addresses: false,
                last_rx: None,
                became_master: Vec::new(),
            })
            .collect();
        Lan {
            nodes,
            in_flight: Vec::new(),
            now: Duration::ZERO,
            latency: ms(1),
            overlap: Duration::ZERO,
        }
    }

    fn start(&mut self, i: usize) {
        self.nodes[i].alive = true;
        let actions = self.nodes[i].vr.start(self.now);
        self.apply(i, actions);
    }

    fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// Kills node `i` without a goodbye (power loss, kernel panic).
    fn crash(&mut self, i: usize) {
        self.nodes[i].alive = false;
        self.nodes[i].holds_addresses = false;
        self.nodes[i].vr = Instance::new(self.nodes[i].vr.config().clone()).expect("valid config");
    }

    fn shutdown(&mut self, i: usize) {
        let actions = self.nodes[i].vr.shutdown(self.now);
        self.apply(i, actions);
    }

    fn holders(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.alive && n.holds_addresses)
            .count()
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].vr.state() == State::Master)
            .collect()
    }

    fn run_until(&mut self, end: Duration) {
        loop {
            let timer = self
                .nodes
                .iter()
                .filter(|n| n.alive)
                .filter_map(|n| n.vr.next_deadline())
                .min();
            let packet = self.in_flight.iter().map(|p| p.deliver_at).min();
            let next = match (timer, packet) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            if self.holders() > 1 {
                self.overlap += next - self.now;
            }
            self.now = next;

            let (due, later): (Vec<_>, Vec<_>) =
                self.in_flight.drain(..).partition(|p| p.deliver_at <= next);
            self.in_flight = later;
            for p in due {
                let node = &mut self.nodes[p.to];
                if !node.alive || !node.connected {
                    continue;
                }
                let before = node.vr.next_deadline();
                let actions = node
                    .vr
                    .on_packet(self.now, &p.payload, &p.meta)
                    .expect("peers' adverts are valid");
                if node.vr.next_deadline() != before || !actions.is_empty() {
                    node.last_rx = Some(self.now);
                }
                self.apply(p.to, actions);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].alive
                    && self.nodes[i]
                        .vr
                        .next_deadline()
                        .is_some_and(|d| d <= self.now)
                {
                    let actions = self.nodes[i].vr.on_timer(self.now);
                    self.apply(i, actions);
                }
            }
        }
        if self.holders() > 1 {
            self.overlap += end - self.now;
        }
        self.now = end;
    }

    fn apply(&mut self, i: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => {
                    if !self.nodes[i].connected {
                        continue;
                    }
                    let src = self.nodes[i].vr.config().primary_address;
                    for out in self.nodes[i].vr.encode_adverts(priority).expect("encodes") {
                        for j in 0..self.nodes.len() {
                            let to_j = out.dst.is_multicast()
                                || out.dst == self.nodes[j].vr.config().primary_address;
                            if j != i && to_j {
                                self.in_flight.push(Packet {
                                    deliver_at: self.now + self.latency,
                                    to: j,
                                    meta: RxMeta::new(src, out.dst),
                                    payload: out.payload.clone(),
                                });
                            }
                        }
                    }
                }
                Action::AddAddresses => self.nodes[i].holds_addresses = true,
                Action::RemoveAddresses => self.nodes[i].holds_addresses = false,
                Action::StateChanged {
                    to: State::Master, ..
                } => self.nodes[i].became_master.push(self.now),
                Action::AnnounceAddresses { .. }
                | Action::StateChanged { .. }
                | Action::PriorityChanged { .. } => {}
            }
        }
    }
}

fn v2_pair(prio_a: u8, prio_b: u8) -> Vec<InstanceConfig> {
    let vip = vec![ip("192.0.2.100")];
    vec![
        InstanceConfig::new(51, prio_a, ip("192.0.2.1"), vip.clone()),
        InstanceConfig::new(51, prio_b, ip("192.0.2.2"), vip),
    ]
}

#[test]
fn converges_to_exactly_one_master() {
    let mut lan = Lan::new(v2_pair(200, 100));
    lan.start_all();
    lan.run_until(Duration::from_secs(30));
    assert_eq!(lan.masters(), vec![0]);
    assert_eq!(lan.holders(), 1);
    // The higher priority times out first: 3 s + (256 - 200) / 256 s.
    assert_eq!(
        lan.nodes[0].became_master,
        vec![Duration::from_secs(3) + Duration::from_micros(218_750)]
    );
    assert!(lan.nodes[1].became_master.is_empty());
    assert_eq!(lan.overlap, Duration::ZERO);
}

#[test]
fn failover_takes_master_down_interval() {
    let mut lan = Lan::new(v2_pair(200, 100));
    lan.start_all();
    lan.run_until(Duration::from_secs(10) + ms(500));
    let last_heard = lan.nodes[1].last_rx.expect("backup heard the master");
    lan.crash(0);
    lan.run_until(Duration::from_secs(20));
    assert_eq!(lan.masters(), vec![1]);
    let takeover = lan.nodes[1].became_master[0];
    let mdi = lan.nodes[1].vr.master_down_interval();
    assert_eq!(mdi, Duration::from_secs(3) + Duration::from_micros(609_375));
    assert_eq!(takeover, last_heard + mdi);
    // Seen from the crash, the outage is between MDI - advert_int and MDI.
    let outage = takeover - (Duration::from_secs(10) + ms(500));
    assert!(
        outage > mdi - Duration::from_secs(1) && outage <= mdi,
        "outage {outage:?}"
    );
}

#[test]
fn shutdown_hands_over_after_the_skew_time() {
    let mut lan = Lan::new(v2_pair(200, 100));
    lan.start_all();
    lan.run_until(Duration::from_secs(10));
    let stop = lan.now;
    lan.shutdown(0);
    lan.run_until(Duration::from_secs(20));
    assert_eq!(lan.masters(), vec![1]);
    let takeover = lan.nodes[1].became_master[0];
    assert_eq!(
        takeover - stop,
        lan.latency + Duration::from_micros(609_375)
    );
    assert_eq!(lan.overlap, Duration::ZERO);
}

#[test]
fn split_brain_heals_to_the_higher_priority() {
    let mut lan = Lan::new(v2_pair(200, 100));
    lan.start_all();
    lan.run_until(Duration::from_secs(10));
    lan.nodes[0].connected = false;
    lan.run_until(Duration::from_secs(20));
    assert_eq!(
        lan.masters(),
        vec![0, 1],
        "both are master while partitioned"
    );
    lan.nodes[0].connected = true;
    let overlap_while_partitioned = lan.overlap;
    lan.run_until(Duration::from_secs(30));
    assert_eq!(lan.masters(), vec![0]);
    assert_eq!(lan.holders(), 1);
    // The first advert after the partition ends settles it.
    let after_heal = lan.overlap - overlap_while_partitioned;
    assert!(
        after_heal <= Duration::from_secs(1) + lan.latency,
        "{after_heal:?}"
    );
}

#[test]
fn split_brain_with_equal_priorities_heals_by_address() {
    let mut lan = Lan::new(v2_pair(100, 100));
    lan.start_all();
    lan.run_until(Duration::from_secs(10));
    assert_eq!(lan.masters().len(), 1);
    lan.nodes[1].connected = false;
    lan.nodes[0].connected = false;
    lan.run_until(Duration::from_secs(20));
    assert_eq!(lan.masters(), vec![0, 1]);
    lan.nodes[0].connected = true;
    lan.nodes[1].connected = true;
    lan.run_until(Duration::from_secs(30));
    // 192.0.2.2 > 192.0.2.1.
    assert_eq!(lan.masters(), vec![1]);
}

#[test]
fn recovered_higher_priority_preempts() {
    let mut lan = Lan::new(v2_pair(200, 100));
    lan.start_all();
    lan.run_until(Duration::from_secs(10));
    lan.crash(0);
    lan.run_until(Duration::from_secs(20));
    assert_eq!(lan.masters(), vec![1]);
    let restart = lan.now;
    lan.start(0);
    lan.run_until(Duration::from_secs(40));
    assert_eq!(lan.masters(), vec![0]);
    // It ignores the lower master and takes over after its own down interval; the old master
    // steps down one latency later.
    assert_eq!(
        *lan.nodes[0].became_master.last().expect("took over"),
        restart + lan.nodes[0].vr.master_down_interval()
    );
    assert!(lan.overlap <= lan.latency);
}

#[test]
fn nopreempt_leaves_the_running_master_alone() {
    let mut configs = v2_pair(200, 100);
    configs[0].nopreempt = true;
    let mut lan = Lan::new(configs);
    lan.start(1);
    lan.run_until(Duration::from_secs(10));
    assert_eq!(lan.masters(), vec![1]);
    lan.start(0);
    lan.run_until(Duration::from_secs(60));
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.overlap, Duration::ZERO);
}

#[test]
fn v3_ipv6_pair_fails_over_in_master_down_interval() {
    let vips = vec![ip("2001:db8::100")];
    let mut a = InstanceConfig::new(61, 150, ip("fe80::1"), vips.clone());
    let mut b = InstanceConfig::new(61, 120, ip("fe80::2"), vips);
    for cfg in [&mut a, &mut b] {
        assert_eq!(cfg.version, Version::V3);
        cfg.advert_int = ms(100);
    }
    let mut lan = Lan::new(vec![a, b]);
    lan.start_all();
    lan.run_until(Duration::from_secs(2));
    assert_eq!(lan.masters(), vec![0]);
    let last_heard = lan.nodes[1].last_rx.expect("heard");
    lan.crash(0);
    lan.run_until(Duration::from_secs(4));
    assert_eq!(lan.masters(), vec![1]);
    let mdi = lan.nodes[1].vr.master_down_interval();
    // 3 * 100 ms + (256 - 120) * 10 cs * 625 / 16 us.
    assert_eq!(mdi, ms(300) + Duration::from_micros(53_125));
    assert_eq!(lan.nodes[1].became_master[0], last_heard + mdi);
}

#[test]
fn unicast_pair_converges() {
    let mut configs = v2_pair(150, 100);
    configs[0].unicast_peers = vec![ip("192.0.2.2")];
    configs[1].unicast_peers = vec![ip("192.0.2.1")];
    let mut lan = Lan::new(configs);
    lan.start_all();
    lan.run_until(Duration::from_secs(20));
    assert_eq!(lan.masters(), vec![0]);
    assert_eq!(lan.holders(), 1);
}

#[test]
fn three_routers_hand_over_in_priority_order() {
    let vip = vec![ip("192.0.2.100")];
    let configs = vec![
        InstanceConfig::new(51, 200, ip("192.0.2.1"), vip.clone()),
        InstanceConfig::new(51, 150, ip("192.0.2.2"), vip.clone()),
        InstanceConfig::new(51, 100, ip("192.0.2.3"), vip),
    ];
    let mut lan = Lan::new(configs);
    lan.start_all();
    lan.run_until(Duration::from_secs(10));
    assert_eq!(lan.masters(), vec![0]);
    lan.shutdown(0);
    lan.run_until(Duration::from_secs(20));
    // The skew makes the higher of the two backups go first; the other hears it in time.
    assert_eq!(lan.masters(), vec![1]);
    assert!(lan.nodes[2].became_master.is_empty());
}

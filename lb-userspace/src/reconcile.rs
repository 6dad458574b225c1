//! The one writer of the data plane's maps: compares the desired state with what it applied
//! before and writes only the difference, in an order that never shows a packet a dangling id.
//!
//! Order of writes: backends before the tables that name them; a table before the VIP entry that
//! points at it; the control word last when activating and first when deactivating. A changed
//! table goes into the VIP's idle table half; the VIP table's idle half is then written whole
//! (with the VIP pointing at its new table) and the control word flips the VIP table's halves.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use lb_common::{
    Addr, Backend, CLAIM_STATIC, Claim, Control, MAX_BACKENDS, MAX_VIPS, MaglevTable, VIP_PROBES,
    VIP_SLOTS, VipAddrValue, VipKey, VipSlot, VipValue,
    maglev::{self, MaglevBackend, MaglevScratch},
};

use crate::service::{BackendKey, DesiredState, addr_words, words_addr};

/// The writes the reconciler makes; the data plane implements it, tests record it.
pub trait MapWriter {
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<()>;
    fn write_table(&mut self, index: u32, table: &MaglevTable) -> Result<()>;
    /// `index` counts over both halves of the VIP table.
    fn write_vip_slot(&mut self, index: u32, slot: &VipSlot) -> Result<()>;
    fn set_vip_addr(&mut self, addr: &Addr, value: VipAddrValue) -> Result<()>;
    fn remove_vip_addr(&mut self, addr: &Addr) -> Result<()>;
    fn add_tx_port(&mut self, ifindex: u32) -> Result<()>;
    fn set_control(&mut self, control: &Control) -> Result<()>;
    fn set_claim(&mut self, index: u32, claim: &Claim) -> Result<()>;
    /// Zeroes the counters of an id about to be given to a new VIP or backend.
    fn reset_counters(&mut self, kind: CounterKind, index: u32) -> Result<()>;
    /// Adds a retiring backend's counters to its VIP's (whose total would otherwise lose
    /// them) and zeroes the backend's.
    fn fold_counters(&mut self, backend_id: u32, vip_id: u32) -> Result<()>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterKind {
    Vip,
    Backend,
}

/// A packet that read a VIP entry just before a flip may still be reading the old half: wait
/// this long before writing that half again. XDP handles a packet in well under a microsecond.
const TABLE_GRACE: Duration = Duration::from_millis(10);

/// One half of the VIP table: each VIP within [`VIP_PROBES`] slots of its home slot, placed in
/// key order so that the same VIPs always give the same half.
pub fn place_vips(vips: &BTreeMap<VipKey, VipValue>) -> Result<Vec<VipSlot>> {
    let mut half = vec![VipSlot::default(); VIP_SLOTS as usize];
    for (key, value) in vips {
        let home = key.home_slot();
        let free = (0..VIP_PROBES)
            .map(|i| ((home + i) & (VIP_SLOTS - 1)) as usize)
            .find(|&i| half[i].key.proto == 0)
            .ok_or_else(|| anyhow!("no room in the VIP table for VIP {}", words_addr(&key.addr)))?;
        half[free] = VipSlot {
            key: *key,
            value: *value,
        };
    }
    Ok(half)
}

struct AppliedVip {
    id: u32,
    value: VipValue,
    /// `None` for a VIP adopted from pinned maps: its table is rewritten on the next apply.
    members: Option<Vec<(IpAddr, u16, u32)>>,
    flipped_at: Instant,
}

/// What pinned maps hold when xlb starts: the applied state a previous xlb left.
#[derive(Clone, Debug, Default)]
pub struct PinnedState {
    /// Both halves of the VIP table, as the kernel holds them.
    pub vip_slots: Vec<VipSlot>,
    pub vip_addrs: Vec<(Addr, VipAddrValue)>,
    /// The claim of VIPs no VRRP instance holds.
    pub static_claim: Claim,
    /// Backend entries marked valid, by id.
    pub backends: Vec<(u32, Backend)>,
    /// The highest generation any backend entry holds: remembered flows may name any up to it.
    pub max_generation: u32,
    pub control: Control,
}

/// How long an idle connection keeps its backend, in the data plane's clock (jiffies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTimeouts {
    pub tcp_idle: u64,
    pub udp_idle: u64,
}

/// What one reconciliation wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub backends_written: usize,
    pub tables_written: usize,
    pub vips_added: usize,
    pub vips_removed: usize,
    pub control_written: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

pub struct Reconciler {
    hash_seed: u32,
    timeouts: FlowTimeouts,
    vips: BTreeMap<VipKey, AppliedVip>,
    /// What each half of the VIP table holds in the kernel.
    vip_halves: [Vec<VipSlot>; 2],
    /// When the VIP table's halves last flipped.
    vip_flipped_at: Instant,
    backends: BTreeMap<BackendKey, (u32, Backend)>,
    /// Real servers removed from the config while their VIP stays: kept alive (out of every
    /// table) until the deadline, so that connections they have finish, as a drained server's do.
    draining: BTreeMap<BackendKey, (u32, Backend, Instant)>,
    drain: Duration,
    /// Given to the next backend id handed out, so that a flow remembered for an id's previous
    /// owner never matches its new one.
    next_generation: u32,
    vip_addrs: BTreeMap<Addr, VipAddrValue>,
    static_claim: Option<Claim>,
    tx_ports: BTreeSet<u32>,
    control: Option<Control>,
    /// Backend ids a previous xlb left in use: live tables may name them, so they are neither
    /// reused nor cleared until every adopted table has been rewritten.
    reserved_backend_ids: BTreeSet<u32>,
    table: Box<MaglevTable>,
    maglev_scratch: Box<MaglevScratch>,
}

/// An emptied backend entry. It keeps its generation so that a restarted xlb, adopting these
/// maps, never hands that generation out again.
fn cleared(applied: &Backend) -> Backend {
    Backend {
        generation: applied.generation,
        ..Backend::default()
    }
}

fn wait_out_grace(flipped_at: Instant) {
    let since = flipped_at.elapsed();
    if since < TABLE_GRACE {
        thread::sleep(TABLE_GRACE - since);
    }
}

fn lowest_free(used: impl Iterator<Item = u32>, max: u32) -> Option<u32> {
    let used: BTreeSet<u32> = used.collect();
    (0..max).find(|id| !used.contains(id))
}

impl Reconciler {
    pub fn new(hash_seed: u32, timeouts: FlowTimeouts) -> Self {
        // SAFETY: a table of u32s is valid all-zero.
        let table = unsafe { Box::<MaglevTable>::new_zeroed().assume_init() };
        Self {
            hash_seed,
            timeouts,
            vips: BTreeMap::new(),
            vip_halves: [
                vec![VipSlot::default(); VIP_SLOTS as usize],
                vec![VipSlot::default(); VIP_SLOTS as usize],
            ],
            vip_flipped_at: Instant::now()
                .checked_sub(TABLE_GRACE)
                .unwrap_or_else(Instant::now),
            backends: BTreeMap::new(),
            draining: BTreeMap::new(),
            drain: Duration::ZERO,
            next_generation: 1,
            vip_addrs: BTreeMap::new(),
            static_claim: None,
            tx_ports: BTreeSet::new(),
            control: None,
            reserved_backend_ids: BTreeSet::new(),
            table,
            maglev_scratch: Box::new(MaglevScratch::new()),
        }
    }

    /// How long a real server removed from the config keeps serving the connections it has.
    pub fn with_drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// Takes what pinned maps hold as applied, so that a restarted xlb changes only what
    /// differs: tables go into idle halves and flip, the control word is not touched when it
    /// already says the right thing. No packet sees a gap.
    pub fn adopt(&mut self, pinned: PinnedState) {
        if pinned.vip_slots.len() == 2 * VIP_SLOTS as usize {
            let (a, b) = pinned.vip_slots.split_at(VIP_SLOTS as usize);
            self.vip_halves = [a.to_vec(), b.to_vec()];
        }
        let live = (pinned.control.vip_half & 1) as usize;
        for slot in self.vip_halves[live].iter().filter(|s| s.key.proto != 0) {
            self.vips.insert(
                slot.key,
                AppliedVip {
                    id: slot.value.id,
                    value: slot.value,
                    members: None,
                    flipped_at: Instant::now(),
                },
            );
        }
        self.vip_addrs = pinned.vip_addrs.into_iter().collect();
        self.static_claim = Some(pinned.static_claim);
        // Each entry says which real server it stands for: keep its id and generation, so that
        // remembered flows keep their backends across the restart.
        for (id, backend) in pinned.backends {
            let key = BackendKey {
                vip: backend.vip,
                real_server: (words_addr(&backend.real_server), backend.real_server_port).into(),
            };
            if backend.vip.proto == 0 || self.backends.contains_key(&key) {
                self.reserved_backend_ids.insert(id);
            } else {
                // The pinned devmap already holds its interface.
                if backend.ifindex != 0 {
                    self.tx_ports.insert(backend.ifindex);
                }
                self.backends.insert(key, (id, backend));
            }
        }
        self.next_generation = self
            .next_generation
            .max(pinned.max_generation.wrapping_add(1));
        self.control = Some(pinned.control);
    }

    /// The backend id of one real server of one VIP, for stats and tests.
    pub fn backend_id(&self, vip: &VipKey, real_server: std::net::SocketAddr) -> Option<u32> {
        self.backends
            .get(&BackendKey {
                vip: *vip,
                real_server,
            })
            .map(|(id, _)| *id)
    }

    /// The real server behind a backend id.
    pub fn backend_of(&self, id: u32) -> Option<BackendKey> {
        self.backends
            .iter()
            .find(|(_, (i, _))| *i == id)
            .map(|(key, _)| *key)
    }

    /// The address of the real server behind a backend id.
    pub fn backend_ip(&self, id: u32) -> Option<IpAddr> {
        self.backend_of(id).map(|key| key.real_server.ip())
    }

    pub fn apply(&mut self, w: &mut impl MapWriter, desired: &DesiredState) -> Result<Changes> {
        let mut changes = Changes::default();
        let applied = self.control.unwrap_or_default();
        let mut control = Control {
            hash_seed: self.hash_seed,
            vip_half: applied.vip_half & 1,
            tcp_idle: self.timeouts.tcp_idle,
            udp_idle: self.timeouts.udp_idle,
        };
        let static_claim = Claim {
            active: u32::from(desired.active),
            ..Claim::default()
        };
        if !desired.active && self.static_claim != Some(static_claim) {
            w.set_claim(CLAIM_STATIC, &static_claim)?;
            self.static_claim = Some(static_claim);
            changes.control_written = true;
        }

        // Backends, before any table names them. One going down is marked so only once no
        // live table names it: until then a new connection hashed to it would be dropped.
        let mut going_down: Vec<(BackendKey, u32, Backend)> = Vec::new();
        for (key, backend) in &desired.backends {
            if let Some((id, applied, _)) = self.draining.remove(key) {
                self.backends.insert(*key, (id, applied));
            }
            if let Some((id, applied)) = self.backends.get(key)
                && applied.flags & lb_common::BACKEND_F_VALID != 0
                && backend.flags & lb_common::BACKEND_F_VALID == 0
            {
                going_down.push((
                    *key,
                    *id,
                    Backend {
                        generation: applied.generation,
                        ..*backend
                    },
                ));
                continue;
            }
            let (id, generation) = match self.backends.get(key) {
                Some((_, applied))
                    if *applied
                        == (Backend {
                            generation: applied.generation,
                            ..*backend
                        }) =>
                {
                    continue;
                }
                // A new MAC or path for the same real server: its flows stay with it.
                Some((id, applied)) => (*id, applied.generation),
                None => {
                    let id = lowest_free(
                        self.backends
                            .values()
                            .map(|(id, _)| *id)
                            .chain(self.draining.values().map(|(id, _, _)| *id))
                            .chain(self.reserved_backend_ids.iter().copied()),
                        MAX_BACKENDS,
                    )
                    .ok_or_else(|| anyhow!("more than {MAX_BACKENDS} backends"))?;
                    let generation = self.next_generation;
                    self.next_generation = self.next_generation.wrapping_add(1).max(1);
                    w.reset_counters(CounterKind::Backend, id)?;
                    (id, generation)
                }
            };
            if backend.ifindex != 0 && self.tx_ports.insert(backend.ifindex) {
                w.add_tx_port(backend.ifindex)?;
            }
            let backend = Backend {
                generation,
                ..*backend
            };
            w.set_backend(id, &backend)
                .with_context(|| format!("writing backend {} of a VIP", key.real_server))?;
            self.backends.insert(*key, (id, backend));
            changes.backends_written += 1;
        }

        // VIP addresses, before the VIP entries that use them.
        for (addr, value) in &desired.vip_addrs {
            if self.vip_addrs.get(addr) != Some(value) {
                w.set_vip_addr(addr, *value)?;
            }
        }

        // Removed VIPs free their ids for added ones; they leave the VIP table at the flip.
        let before = self.vips.len();
        self.vips.retain(|key, _| desired.vips.contains_key(key));
        changes.vips_removed = before - self.vips.len();

        // Changed tables go into their idle halves; the VIPs will point at them after the flip.
        let mut pending: Vec<(VipKey, AppliedVip)> = Vec::new();
        for (key, vip) in &desired.vips {
            let (id, index, live) = match self.vips.get(key) {
                Some(applied) if applied.members.as_ref() == Some(&vip.members) => {
                    // Same table; only the VIP entry may change.
                    let value = VipValue {
                        flags: vip.flags,
                        claim: vip.claim,
                        ..applied.value
                    };
                    if value != applied.value {
                        pending.push((
                            *key,
                            AppliedVip {
                                value,
                                members: applied.members.clone(),
                                ..*applied
                            },
                        ));
                    }
                    continue;
                }
                Some(applied) => {
                    wait_out_grace(applied.flipped_at);
                    let idle = applied.value.live_table ^ 1;
                    (applied.id, applied.id * 2 + idle, idle)
                }
                None => {
                    let id = lowest_free(
                        self.vips
                            .values()
                            .map(|v| v.id)
                            .chain(pending.iter().map(|(_, v)| v.id)),
                        MAX_VIPS,
                    )
                    .ok_or_else(|| anyhow!("more than {MAX_VIPS} VIPs"))?;
                    w.reset_counters(CounterKind::Vip, id)?;
                    changes.vips_added += 1;
                    (id, id * 2, 0)
                }
            };
            self.build_table(key, &vip.members)?;
            w.write_table(index, &self.table)
                .with_context(|| format!("writing the Maglev table of VIP {id}"))?;
            changes.tables_written += 1;
            let value = VipValue {
                id,
                flags: vip.flags,
                live_table: live,
                claim: vip.claim,
            };
            pending.push((
                *key,
                AppliedVip {
                    id,
                    value,
                    members: Some(vip.members.clone()),
                    flipped_at: Instant::now(),
                },
            ));
        }
        self.vips.extend(pending);

        // The VIP table: write the idle half whole, then flip.
        let values: BTreeMap<VipKey, VipValue> =
            self.vips.iter().map(|(k, v)| (*k, v.value)).collect();
        let half = place_vips(&values)?;
        let live = (control.vip_half & 1) as usize;
        if half != self.vip_halves[live] {
            let idle = live ^ 1;
            wait_out_grace(self.vip_flipped_at);
            for (i, slot) in half.iter().enumerate() {
                if self.vip_halves[idle][i] != *slot {
                    let index = idle as u32 * VIP_SLOTS + i as u32;
                    w.write_vip_slot(index, slot)
                        .with_context(|| format!("writing VIP table slot {index}"))?;
                    self.vip_halves[idle][i] = *slot;
                }
            }
            control = Control {
                vip_half: idle as u32,
                ..control
            };
            w.set_control(&control)?;
            self.control = Some(control);
            changes.control_written = true;
            let now = Instant::now();
            self.vip_flipped_at = now;
            for vip in self.vips.values_mut() {
                vip.flipped_at = now;
            }
        }
        let gone: Vec<Addr> = self
            .vip_addrs
            .keys()
            .filter(|a| !desired.vip_addrs.contains_key(*a))
            .copied()
            .collect();
        for addr in gone {
            w.remove_vip_addr(&addr)?;
        }
        self.vip_addrs = desired.vip_addrs.clone();

        if !going_down.is_empty() {
            wait_out_grace(self.vip_flipped_at);
            for (key, id, backend) in going_down {
                w.set_backend(id, &backend)
                    .with_context(|| format!("marking backend {} down", key.real_server))?;
                self.backends.insert(key, (id, backend));
                changes.backends_written += 1;
            }
        }

        // Backends no longer configured: drained while their VIP stays, else cleared.
        let gone: Vec<BackendKey> = self
            .backends
            .keys()
            .filter(|key| !desired.backends.contains_key(key))
            .copied()
            .collect();
        let now = Instant::now();
        for key in gone {
            if let Some((id, applied)) = self.backends.remove(&key) {
                let alive = applied.flags & lb_common::BACKEND_F_VALID != 0;
                if alive && !self.drain.is_zero() && desired.vips.contains_key(&key.vip) {
                    self.draining.insert(key, (id, applied, now + self.drain));
                    continue;
                }
                w.set_backend(id, &cleared(&applied))?;
                self.retire_counters(w, id, &key)?;
                changes.backends_written += 1;
            }
        }
        let drained: Vec<BackendKey> = self
            .draining
            .iter()
            .filter(|(key, (_, _, until))| *until <= now || !desired.vips.contains_key(&key.vip))
            .map(|(key, _)| *key)
            .collect();
        for key in drained {
            if let Some((id, applied, _)) = self.draining.remove(&key) {
                w.set_backend(id, &cleared(&applied))?;
                self.retire_counters(w, id, &key)?;
                changes.backends_written += 1;
            }
        }

        // Once no adopted table is left, the backend ids it named are free.
        if !self.reserved_backend_ids.is_empty() && self.vips.values().all(|v| v.members.is_some())
        {
            let in_use: BTreeSet<u32> = self
                .backends
                .values()
                .map(|(id, _)| *id)
                .chain(self.draining.values().map(|(id, _, _)| *id))
                .collect();
            for id in std::mem::take(&mut self.reserved_backend_ids) {
                if !in_use.contains(&id) {
                    // Generation 0 is never handed out, so no remembered flow matches it.
                    w.set_backend(id, &Backend::default())?;
                    changes.backends_written += 1;
                }
            }
        }

        if self.control != Some(control) {
            w.set_control(&control)?;
            self.control = Some(control);
            changes.control_written = true;
        }
        if desired.active && self.static_claim != Some(static_claim) {
            w.set_claim(CLAIM_STATIC, &static_claim)?;
            self.static_claim = Some(static_claim);
            changes.control_written = true;
        }
        Ok(changes)
    }

    /// Keeps a VIP's totals whole when one of its backends goes away.
    fn retire_counters(&self, w: &mut impl MapWriter, id: u32, key: &BackendKey) -> Result<()> {
        match self.vips.get(&key.vip) {
            Some(vip) => w.fold_counters(id, vip.id),
            None => Ok(()),
        }
    }

    fn build_table(&mut self, vip: &VipKey, members: &[(IpAddr, u16, u32)]) -> Result<()> {
        let mut backends = members
            .iter()
            .map(|(ip, port, weight)| {
                let id = self
                    .backend_id(vip, (*ip, *port).into())
                    .ok_or_else(|| anyhow!("backend {ip} port {port} has no id"))?;
                Ok(MaglevBackend {
                    addr: addr_words(*ip),
                    port: *port,
                    weight: *weight,
                    id,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        maglev::build(
            &mut backends,
            &mut self.maglev_scratch,
            &mut self.table.entries,
        )
        .map_err(|e| anyhow!("building a Maglev table: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::service::{BackendPath, Protocol, RealServer, Service, desired};

    #[derive(Debug, PartialEq, Eq)]
    enum Write {
        Backend(u32, bool),
        Table(u32),
        /// A VIP table slot: (half, VIP id and live table, or None for an empty slot).
        VipSlot(u32, Option<(u32, u32)>),
        AddAddr,
        RemoveAddr,
        TxPort(u32),
        /// The live VIP half.
        Control(u32),
        /// (claim index, active).
        Claim(u32, u32),
    }

    #[derive(Default)]
    struct Recorder(Vec<Write>);

    impl MapWriter for Recorder {
        fn set_backend(&mut self, id: u32, b: &Backend) -> Result<()> {
            self.0.push(Write::Backend(id, b.flags != 0));
            Ok(())
        }
        fn write_table(&mut self, index: u32, _: &MaglevTable) -> Result<()> {
            self.0.push(Write::Table(index));
            Ok(())
        }
        fn write_vip_slot(&mut self, index: u32, slot: &VipSlot) -> Result<()> {
            let value = (slot.key.proto != 0).then_some((slot.value.id, slot.value.live_table));
            self.0.push(Write::VipSlot(index / VIP_SLOTS, value));
            Ok(())
        }
        fn set_vip_addr(&mut self, _: &Addr, _: VipAddrValue) -> Result<()> {
            self.0.push(Write::AddAddr);
            Ok(())
        }
        fn remove_vip_addr(&mut self, _: &Addr) -> Result<()> {
            self.0.push(Write::RemoveAddr);
            Ok(())
        }
        fn add_tx_port(&mut self, ifindex: u32) -> Result<()> {
            self.0.push(Write::TxPort(ifindex));
            Ok(())
        }
        fn set_control(&mut self, c: &Control) -> Result<()> {
            self.0.push(Write::Control(c.vip_half));
            Ok(())
        }
        fn set_claim(&mut self, index: u32, c: &Claim) -> Result<()> {
            self.0.push(Write::Claim(index, c.active));
            Ok(())
        }
        fn reset_counters(&mut self, _: CounterKind, _: u32) -> Result<()> {
            Ok(())
        }
        fn fold_counters(&mut self, _: u32, _: u32) -> Result<()> {
            Ok(())
        }
    }

    const TIMEOUTS: FlowTimeouts = FlowTimeouts {
        tcp_idle: 900 * 250,
        udp_idle: 300 * 250,
    };

    fn services(weights: &[u32]) -> Vec<Service> {
        vec![Service {
            vip: "10.0.0.100:80".parse().unwrap(),
            protocol: Protocol::Tcp,
            source_hash: false,
            real_servers: weights
                .iter()
                .enumerate()
                .map(|(i, w)| RealServer {
                    addr: format!("10.0.0.{}:80", i + 1).parse().unwrap(),
                    weight: *w,
                    alive: true,
                })
                .collect(),
        }]
    }

    fn paths(n: u8) -> HashMap<IpAddr, BackendPath> {
        (1..=n)
            .map(|i| {
                let p = BackendPath {
                    ifindex: 2,
                    mac: [2, 0, 0, 0, 0, i],
                    src_mac: [2, 0, 0, 0, 0, 0xfe],
                };
                (IpAddr::from([10, 0, 0, i]), p)
            })
            .collect()
    }

    #[test]
    fn first_apply_writes_in_dependency_order() {
        let mut r = Reconciler::new(1, TIMEOUTS);
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&services(&[1, 1]), &paths(2), true))
            .unwrap();
        assert_eq!(
            w.0,
            vec![
                Write::TxPort(2),
                Write::Backend(0, true),
                Write::Backend(1, true),
                Write::AddAddr,
                Write::Table(0),
                Write::VipSlot(1, Some((0, 0))),
                Write::Control(1),
                Write::Claim(0, 1),
            ]
        );
    }

    #[test]
    fn unchanged_state_writes_nothing() {
        let mut r = Reconciler::new(1, TIMEOUTS);
        let d = desired(&services(&[1, 1]), &paths(2), true);
        r.apply(&mut Recorder::default(), &d).unwrap();
        let mut w = Recorder::default();
        assert!(r.apply(&mut w, &d).unwrap().is_empty());
        assert!(w.0.is_empty());
    }

    #[test]
    fn the_first_flip_after_adopting_writes_the_new_control_word() {
        let mut r = Reconciler::new(7, TIMEOUTS);
        r.adopt(PinnedState::default());
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&services(&[1, 1]), &paths(2), true))
            .unwrap();
        assert_eq!(
            r.control,
            Some(Control {
                hash_seed: 7,
                vip_half: 1,
                tcp_idle: TIMEOUTS.tcp_idle,
                udp_idle: TIMEOUTS.udp_idle,
            })
        );
        assert_eq!(w.0.last(), Some(&Write::Claim(0, 1)));
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&services(&[1, 1]), &paths(2), true))
            .unwrap();
        assert_eq!(w.0, vec![]);
    }

    #[test]
    fn resolving_backends_then_nothing_new_writes_nothing() {
        let mut r = Reconciler::new(1, TIMEOUTS);
        r.apply(
            &mut Recorder::default(),
            &desired(&services(&[1, 1]), &HashMap::new(), true),
        )
        .unwrap();
        r.apply(
            &mut Recorder::default(),
            &desired(&services(&[1, 1]), &paths(2), true),
        )
        .unwrap();
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&services(&[1, 1]), &paths(2), true))
            .unwrap();
        assert_eq!(w.0, vec![]);
    }

    #[test]
    fn weight_change_writes_the_idle_half_then_flips() {
        let mut r = Reconciler::new(1, TIMEOUTS);
        r.apply(
            &mut Recorder::default(),
            &desired(&services(&[1, 1]), &paths(2), true),
        )
        .unwrap();
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&services(&[1, 3]), &paths(2), true))
            .unwrap();
        assert_eq!(
            w.0,
            vec![
                Write::Table(1),
                Write::VipSlot(0, Some((0, 1))),
                Write::Control(0)
            ]
        );
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&services(&[2, 3]), &paths(2), true))
            .unwrap();
        // Half 1 still holds the VIP pointing at table 0, from the first apply.
        assert_eq!(w.0, vec![Write::Table(0), Write::Control(1)]);
    }

    #[test]
    fn a_restart_adopts_pinned_state_without_a_gap() {
        let d = desired(&services(&[1, 1]), &paths(2), true);
        let mut first = Reconciler::new(1, TIMEOUTS);
        first.apply(&mut Recorder::default(), &d).unwrap();
        let vip_slots: Vec<VipSlot> = first.vip_halves.concat();
        let backends: Vec<(u32, Backend)> = first.backends.values().copied().collect();
        let control = first.control.unwrap();

        let mut restarted = Reconciler::new(1, TIMEOUTS);
        restarted.adopt(PinnedState {
            vip_slots,
            vip_addrs: first.vip_addrs.clone().into_iter().collect(),
            static_claim: first.static_claim.unwrap(),
            backends: backends.clone(),
            max_generation: 2,
            control,
        });
        let mut w = Recorder::default();
        restarted.apply(&mut w, &d).unwrap();
        // Backends keep their ids and generations (remembered flows stay valid); the table is
        // rewritten into the idle half and flipped; the control word and the VIP address are
        // left alone.
        assert_eq!(
            w.0,
            vec![
                Write::Table(1),
                Write::VipSlot(0, Some((0, 1))),
                Write::Control(0)
            ]
        );
        let s: Service = services(&[1, 1, 1]).remove(0);
        let mut w = Recorder::default();
        restarted
            .apply(&mut w, &desired(&[s], &paths(3), true))
            .unwrap();
        assert_eq!(w.0[0], Write::Backend(2, true));
        let new = restarted.backends.values().map(|(_, b)| b.generation).max();
        assert_eq!(new, Some(3), "generations are never handed out twice");
    }

    #[test]
    fn a_removed_real_server_drains_then_clears() {
        let mut r = Reconciler::new(1, TIMEOUTS).with_drain(Duration::from_millis(30));
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&services(&[1, 1]), &paths(2), true))
            .unwrap();
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&services(&[1]), &paths(2), true))
            .unwrap();
        // Out of the table, still valid.
        assert!(!w.0.contains(&Write::Backend(1, false)), "{:?}", w.0);
        assert!(w.0.contains(&Write::Table(1)));
        thread::sleep(Duration::from_millis(40));
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&services(&[1]), &paths(2), true))
            .unwrap();
        assert_eq!(w.0, vec![Write::Backend(1, false)]);
    }

    #[test]
    fn a_dead_real_server_is_marked_down_at_once() {
        let mut r = Reconciler::new(1, TIMEOUTS).with_drain(Duration::from_secs(60));
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&services(&[1, 1]), &paths(2), true))
            .unwrap();
        let mut s = services(&[1, 1]);
        s[0].real_servers[1].alive = false;
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&s, &paths(2), true)).unwrap();
        // Out of the table first (flip), then marked down: no new connection is dropped.
        assert_eq!(
            w.0,
            vec![
                Write::Table(1),
                Write::VipSlot(0, Some((0, 1))),
                Write::Control(0),
                Write::Backend(1, false)
            ]
        );
    }

    #[test]
    fn a_reused_id_gets_a_new_generation() {
        let mut r = Reconciler::new(1, TIMEOUTS);
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&services(&[1, 1]), &paths(2), true))
            .unwrap();
        let vip = services(&[1])[0].key();
        let first = r.backends[&BackendKey {
            vip,
            real_server: "10.0.0.2:80".parse().unwrap(),
        }];
        // 10.0.0.2 goes away, then another real server takes its id.
        r.apply(&mut w, &desired(&services(&[1]), &paths(2), true))
            .unwrap();
        let mut s = services(&[1]);
        s[0].real_servers.push(RealServer {
            addr: "10.0.0.3:80".parse().unwrap(),
            weight: 1,
            alive: true,
        });
        r.apply(&mut w, &desired(&s, &paths(3), true)).unwrap();
        let reused = r.backends[&BackendKey {
            vip,
            real_server: "10.0.0.3:80".parse().unwrap(),
        }];
        assert_eq!(reused.0, first.0);
        assert_ne!(reused.1.generation, first.1.generation);
    }

    #[test]
    fn deactivation_flips_control_first_and_removal_cleans_up() {
        let mut r = Reconciler::new(1, TIMEOUTS);
        r.apply(
            &mut Recorder::default(),
            &desired(&services(&[1, 1]), &paths(2), true),
        )
        .unwrap();
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&[], &paths(2), false)).unwrap();
        assert_eq!(
            w.0,
            vec![
                Write::Claim(0, 0),
                // Half 0 was never written: it is already the empty table.
                Write::Control(0),
                Write::RemoveAddr,
                Write::Backend(0, false),
                Write::Backend(1, false),
            ]
        );
    }
}

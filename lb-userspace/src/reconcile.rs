//! The one writer of the data plane's maps: compares the desired state with what it applied
//! before and writes only the difference, in an order that never shows a packet a dangling id.
//!
//! Order of writes: backends before the member blocks that name them; a table and a member
//! block before the VIP entry that points at them; the control word last when activating and
//! first when deactivating. A changed table is built into a free table slot (services with the
//! same real servers and weights share one), a changed member block into free member entries;
//! the VIP table's idle half is then written (each service pointing at its new table and block)
//! and the control word flips the halves. What the flip left unused is reused once no packet
//! can be reading it. A reload that changes more tables than there are free slots applies in
//! batches, a flip each.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use lb_common::{
    Addr, Backend, CLAIM_STATIC, Claim, Control, Forwarding, MAX_BACKENDS, MAX_SERVICES,
    MEMBER_SLOTS, NAT_FILTER_WORDS, NatReply, NatSource, VIP_FILTER_WORDS, VIP_PROBES, VIP_SLOTS,
    VipAddrValue, VipKey, VipSlot, VipValue, maglev::MaglevScratch, next_nat_generation,
    table_slots, vip_filter_bit,
};

use crate::{
    service::{BackendKey, DesiredState, words_addr},
    tables::{Acquired, MemberBlock, MemberPool, TableMembers, TablePool},
};

/// The writes the reconciler makes; the data plane implements it, tests record it.
pub trait MapWriter {
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<()>;
    /// Writes table slot `table` whole: its `entries` (member positions).
    fn write_table(&mut self, table: u32, entries: &[u16]) -> Result<()>;
    /// Writes a member block: the backend id of each position, from `base`.
    fn write_members(&mut self, base: u32, backends: &[u32]) -> Result<()>;
    /// `index` counts over both halves of the VIP table.
    fn write_vip_slot(&mut self, index: u32, slot: &VipSlot) -> Result<()>;
    /// One word of the VIP address filter.
    fn set_vip_filter(&mut self, word: u32, bits: u64) -> Result<()>;
    fn set_vip_addr(&mut self, addr: &Addr, value: VipAddrValue) -> Result<()>;
    fn remove_vip_addr(&mut self, addr: &Addr) -> Result<()>;
    /// A NAT real server's replies and the service they answer for.
    fn set_nat_source(&mut self, source: &NatSource, reply: &NatReply) -> Result<()>;
    fn remove_nat_source(&mut self, source: &NatSource) -> Result<()>;
    /// One word of the NAT source filter.
    fn set_nat_filter(&mut self, word: u32, bits: u64) -> Result<()>;
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

/// A packet that read a VIP entry just before a flip may still be reading the old table and
/// member block: wait this long before writing either again. XDP handles a packet in well
/// under a microsecond.
const TABLE_GRACE: Duration = Duration::from_millis(10);

/// The NAT source filter's words for these real servers.
fn nat_filter_of(sources: &BTreeMap<NatSource, NatReply>) -> Vec<u64> {
    let mut filter = vec![0u64; NAT_FILTER_WORDS as usize];
    for source in sources.keys() {
        let bit = vip_filter_bit(&source.addr);
        filter[(bit / 64) as usize] |= 1 << (bit % 64);
    }
    filter
}

/// One half of the VIP table, placed by Robin Hood linear probing: a service that has probed
/// further than the one in a slot takes the slot, and the other moves on. Probe runs stay short
/// (a handful of slots at a quarter full), every service lies within [`VIP_PROBES`] slots of
/// its home slot or the placement fails, and the half is the same whatever the services' order.
pub fn place_vips(vips: &BTreeMap<VipKey, VipValue>) -> Result<Vec<VipSlot>> {
    let mut half = vec![VipSlot::default(); VIP_SLOTS as usize];
    let mask = VIP_SLOTS - 1;
    let distance = |slot: u32, key: &VipKey| slot.wrapping_sub(key.home_slot()) & mask;
    for (key, value) in vips {
        let mut carried = VipSlot {
            key: *key,
            value: *value,
        };
        let mut slot = key.home_slot();
        let mut probed = 0u32;
        loop {
            if probed >= VIP_PROBES {
                bail!(
                    "no room in the VIP table for {} port {}: more than {VIP_PROBES} probes",
                    words_addr(&carried.key.addr),
                    u16::from_be(carried.key.port)
                );
            }
            let here = &mut half[slot as usize];
            if here.key.proto == 0 {
                *here = carried;
                break;
            }
            let theirs = distance(slot, &here.key);
            // Ties go to the smaller key, so the half does not depend on the order of insertion.
            if theirs < probed || (theirs == probed && carried.key < here.key) {
                std::mem::swap(here, &mut carried);
                probed = theirs;
            }
            slot = (slot + 1) & mask;
            probed += 1;
        }
    }
    Ok(half)
}

struct AppliedVip {
    id: u32,
    value: VipValue,
    /// The table's members; `None` for a service adopted from pinned maps, rewritten on the
    /// next apply.
    table: Option<TableMembers>,
    table_slot: u32,
    block: MemberBlock,
    /// The backend id of each table position.
    member_ids: Vec<u32>,
    /// The live members (address, port, weight) the table and block were made from.
    members: Vec<(IpAddr, u16, u32)>,
}

/// What pinned maps hold when xlb starts: the applied state a previous xlb left.
#[derive(Clone, Debug, Default)]
pub struct PinnedState {
    /// Both halves of the VIP table, as the kernel holds them.
    pub vip_slots: Vec<VipSlot>,
    pub vip_addrs: Vec<(Addr, VipAddrValue)>,
    /// The VIP address filter, word by word.
    pub vip_filter: Vec<u64>,
    pub nat_sources: Vec<(NatSource, NatReply)>,
    pub nat_filter: Vec<u64>,
    /// The claim of VIPs no VRRP instance holds.
    pub static_claim: Claim,
    /// Backend entries marked valid, by id.
    pub backends: Vec<(u32, Backend)>,
    /// The highest generation any backend entry holds: remembered flows may name any up to it.
    pub max_generation: u32,
    pub control: Control,
    /// The length of each live service's member block, by block start (one more than the
    /// largest position its table names).
    pub member_blocks: BTreeMap<u32, u32>,
}

/// How long after its SYN a connection's first packet without SYN still goes where the SYN
/// went (and is remembered there): SYN and SYN-ACK retransmissions span a few seconds.
pub const SYN_WINDOW: Duration = Duration::from_secs(10);

/// How long an idle connection keeps its backend, in the data plane's clock (jiffies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTimeouts {
    pub tcp_idle: u64,
    pub udp_idle: u64,
    /// How long after a SYN the connection's first packet without SYN follows it.
    pub syn_window: u64,
    /// Jiffies per second: a service's persistence_timeout is written in jiffies.
    pub ticks_per_second: u64,
}

/// What one reconciliation wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub backends_written: usize,
    pub tables_written: usize,
    /// Services whose entry moved to another table shared with a service already using it.
    pub tables_shared: usize,
    pub vips_added: usize,
    pub vips_removed: usize,
    pub control_written: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What was written, in words: `2 real-server entries, 1 Maglev table`.
impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = [
            (self.vips_added, "service(s) added"),
            (self.vips_removed, "service(s) removed"),
            (self.backends_written, "real-server entr(y/ies) written"),
            (self.tables_written, "Maglev table(s) written"),
            (self.tables_shared, "service(s) moved to a shared table"),
            (usize::from(self.control_written), "control word written"),
        ];
        let words: Vec<String> = parts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        if words.is_empty() {
            f.write_str("nothing written")
        } else {
            f.write_str(&words.join(", "))
        }
    }
}

pub struct Reconciler {
    hash_seed: u32,
    maglev_size: u32,
    timeouts: FlowTimeouts,
    vips: BTreeMap<VipKey, AppliedVip>,
    /// What each half of the VIP table holds in the kernel.
    vip_halves: [Vec<VipSlot>; 2],
    /// When the VIP table's halves last flipped.
    vip_flipped_at: Instant,
    tables: TablePool,
    members: MemberPool,
    backends: BTreeMap<BackendKey, (u32, Backend)>,
    /// Real servers removed from the config while their VIP stays: kept alive (out of every
    /// table) until the deadline, so that connections they have finish, as a drained server's do.
    draining: BTreeMap<BackendKey, (u32, Backend, Instant)>,
    drain: Duration,
    /// Given to the next backend id handed out, so that a flow remembered for an id's previous
    /// owner never matches its new one.
    next_generation: u32,
    vip_addrs: BTreeMap<Addr, VipAddrValue>,
    /// The VIP address filter as the kernel holds it.
    vip_filter: Vec<u64>,
    /// NAT real servers' replies as the kernel holds them, and their filter.
    nat_sources: BTreeMap<NatSource, NatReply>,
    nat_filter: Vec<u64>,
    static_claim: Option<Claim>,
    tx_ports: BTreeSet<u32>,
    control: Option<Control>,
    /// Backend ids a previous xlb left in use: live tables may name them, so they are neither
    /// reused nor cleared until every adopted table has been rewritten.
    reserved_backend_ids: BTreeSet<u32>,
    backend_ids: IdPool,
    service_ids: IdPool,
    scratch: Box<MaglevScratch>,
    wide: Vec<u32>,
    entries: Vec<u16>,
    /// Tables the current batch needs built, by slot.
    to_build: Vec<(u32, TableMembers)>,
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

/// Ids below a maximum, each handed out once until given back; the lowest free first, so that
/// ids (and the counters they index) stay dense.
#[derive(Debug)]
struct IdPool {
    max: u32,
    /// Every id at or above this is free.
    next: u32,
    /// Free ids below `next`.
    returned: BTreeSet<u32>,
}

impl IdPool {
    fn new(max: u32) -> Self {
        Self {
            max,
            next: 0,
            returned: BTreeSet::new(),
        }
    }

    fn alloc(&mut self) -> Option<u32> {
        if let Some(id) = self.returned.pop_first() {
            return Some(id);
        }
        (self.next < self.max).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// Marks `id` in use (adopted from pinned maps).
    fn take(&mut self, id: u32) {
        if id >= self.max {
            return;
        }
        if id >= self.next {
            self.returned.extend(self.next..id);
            self.next = id + 1;
        } else {
            self.returned.remove(&id);
        }
    }

    fn release(&mut self, id: u32) {
        if id < self.next {
            self.returned.insert(id);
        }
    }
}

/// A service whose entry must change: its new table, and which backend each position names.
struct Plan {
    key: VipKey,
    flags: u32,
    claim: u32,
    /// persistence_timeout in jiffies.
    persistence: u32,
    table: TableMembers,
    member_ids: Vec<u32>,
    /// The desired live members this plan comes from.
    members: Vec<(IpAddr, u16, u32)>,
}

impl Reconciler {
    /// A reconciler for tables of `maglev_size` entries (one of
    /// [`lb_common::MAGLEV_TABLE_SIZES`]).
    pub fn new(hash_seed: u32, maglev_size: u32, timeouts: FlowTimeouts) -> Self {
        Self {
            hash_seed,
            maglev_size,
            timeouts,
            vips: BTreeMap::new(),
            vip_halves: [
                vec![VipSlot::default(); VIP_SLOTS as usize],
                vec![VipSlot::default(); VIP_SLOTS as usize],
            ],
            vip_flipped_at: Instant::now()
                .checked_sub(TABLE_GRACE)
                .unwrap_or_else(Instant::now),
            tables: TablePool::new(table_slots(maglev_size)),
            members: MemberPool::new(MEMBER_SLOTS),
            backends: BTreeMap::new(),
            draining: BTreeMap::new(),
            drain: Duration::ZERO,
            next_generation: 1,
            vip_addrs: BTreeMap::new(),
            vip_filter: vec![0; VIP_FILTER_WORDS as usize],
            nat_sources: BTreeMap::new(),
            nat_filter: vec![0; NAT_FILTER_WORDS as usize],
            static_claim: None,
            tx_ports: BTreeSet::new(),
            control: None,
            reserved_backend_ids: BTreeSet::new(),
            backend_ids: IdPool::new(MAX_BACKENDS),
            service_ids: IdPool::new(MAX_SERVICES),
            scratch: Box::new(MaglevScratch::new()),
            wide: Vec::new(),
            entries: Vec::new(),
            to_build: Vec::new(),
        }
    }

    /// How long a real server removed from the config keeps serving the connections it has.
    pub fn with_drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    pub fn maglev_size(&self) -> u32 {
        self.maglev_size
    }

    /// Takes what pinned maps hold as applied, so that a restarted xlb changes only what
    /// differs: tables go into free slots and flip, the control word is not touched when it
    /// already says the right thing. No packet sees a gap. The caller has checked that the
    /// pinned tables have this reconciler's size.
    pub fn adopt(&mut self, pinned: PinnedState) {
        if pinned.vip_slots.len() == 2 * VIP_SLOTS as usize {
            let (a, b) = pinned.vip_slots.split_at(VIP_SLOTS as usize);
            self.vip_halves = [a.to_vec(), b.to_vec()];
        }
        let live = pinned.control.live_vip_half() as usize;
        let m = self.maglev_size.max(1);
        for slot in self.vip_halves[live].iter().filter(|s| s.key.proto != 0) {
            let table_slot = slot.value.ring / m;
            let block = MemberBlock {
                base: slot.value.members,
                len: pinned
                    .member_blocks
                    .get(&slot.value.members)
                    .copied()
                    .unwrap_or(0),
            };
            self.tables.adopt(table_slot);
            self.members.adopt(block);
            self.service_ids.take(slot.value.id);
            self.vips.insert(
                slot.key,
                AppliedVip {
                    id: slot.value.id,
                    value: slot.value,
                    table: None,
                    table_slot,
                    block,
                    member_ids: Vec::new(),
                    members: Vec::new(),
                },
            );
        }
        self.vip_addrs = pinned.vip_addrs.into_iter().collect();
        self.nat_sources = pinned.nat_sources.into_iter().collect();
        if pinned.nat_filter.len() == NAT_FILTER_WORDS as usize {
            self.nat_filter = pinned.nat_filter;
        }
        if pinned.vip_filter.len() == VIP_FILTER_WORDS as usize {
            self.vip_filter = pinned.vip_filter;
        }
        self.static_claim = Some(pinned.static_claim);
        // Each entry says which real server it stands for: keep its id and generation, so that
        // remembered flows keep their backends across the restart.
        for (id, backend) in pinned.backends {
            self.backend_ids.take(id);
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
    /// A persistence_timeout as the data plane keeps it: jiffies, at most what a u32 holds
    /// (about 50 days at 1000 Hz).
    fn persistence_ticks(&self, seconds: u32) -> u32 {
        let ticks = u64::from(seconds).saturating_mul(self.timeouts.ticks_per_second);
        u32::try_from(ticks).unwrap_or(u32::MAX)
    }

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

    /// The table slot a service's entry points at, for tests and status.
    pub fn table_of(&self, vip: &VipKey) -> Option<u32> {
        self.vips.get(vip).map(|v| v.table_slot)
    }

    /// Every backend entry: which real server of which service, its id, and whether it is
    /// alive (valid in the data plane); then those draining (removed from the config).
    pub fn backend_entries(&self) -> impl Iterator<Item = (&BackendKey, u32, &Backend, bool)> {
        self.backends
            .iter()
            .map(|(k, (id, b))| (k, *id, b, false))
            .chain(
                self.draining
                    .iter()
                    .map(|(k, (id, b, _))| (k, *id, b, true)),
            )
    }

    /// The checksum of the table a service's entry points at.
    /// Whether the data plane holds this virtual service.
    pub fn serves(&self, vip: &VipKey) -> bool {
        self.vips.contains_key(vip)
    }

    /// Whether this virtual service's table has a real server to forward to (one up and
    /// resolved, or the sorry server).
    pub fn forwards(&self, vip: &VipKey) -> bool {
        self.vips.get(vip).is_some_and(|v| !v.members.is_empty())
    }

    pub fn table_checksum(&self, vip: &VipKey) -> Option<u32> {
        let applied = self.vips.get(vip)?;
        applied.table.as_ref()?;
        self.tables.checksum(applied.table_slot)
    }

    /// Whether a removed real server's drain has ended, so that an apply would clear it.
    pub fn drain_due(&self, now: Instant) -> bool {
        self.draining.values().any(|(_, _, until)| *until <= now)
    }

    /// Table slots some service uses.
    pub fn tables_in_use(&self) -> usize {
        self.tables.in_use()
    }

    pub fn apply(&mut self, w: &mut impl MapWriter, desired: &DesiredState) -> Result<Changes> {
        let mut changes = Changes::default();
        let applied = self.control.unwrap_or_default();
        let mut control = Control {
            hash_seed: self.hash_seed,
            vip_flips: applied.vip_flips,
            maglev_size: self.maglev_size,
            nat_generation: applied.nat_generation.max(1),
            syn_window: self.timeouts.syn_window,
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

        let going_down = self.write_backends(w, desired, &mut changes)?;

        // VIP addresses, before the VIP entries that use them; the filter lets new addresses
        // through now and stops removed ones once no entry names them.
        for (addr, value) in &desired.vip_addrs {
            if self.vip_addrs.get(addr) != Some(value) {
                w.set_vip_addr(addr, *value)?;
            }
        }
        let mut filter = vec![0u64; VIP_FILTER_WORDS as usize];
        for key in desired.vips.keys() {
            let bit = vip_filter_bit(&key.addr);
            filter[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        let widened: Vec<u64> = filter
            .iter()
            .zip(&self.vip_filter)
            .map(|(new, old)| new | old)
            .collect();
        self.write_filter(w, &widened)?;
        // NAT replies before the services whose connections they answer go live; the filter
        // widens now and narrows once the flip is done.
        let nat_sources = self.nat_sources_of(desired);
        let nat_filter = nat_filter_of(&nat_sources);
        let widened: Vec<u64> = nat_filter
            .iter()
            .zip(&self.nat_filter)
            .map(|(new, old)| new | old)
            .collect();
        let mut nat_changed = false;
        for (source, reply) in &nat_sources {
            if self.nat_sources.get(source) != Some(reply) {
                w.set_nat_source(source, reply)?;
                self.nat_sources.insert(*source, *reply);
                nat_changed = true;
            }
        }
        if nat_changed {
            // A source that answers for another service now: CPUs' copies of it go stale.
            control.nat_generation = next_nat_generation(control.nat_generation);
            w.set_control(&control)?;
            self.control = Some(control);
            changes.control_written = true;
        }
        self.write_nat_filter(w, &widened)?;

        // Removed services free their ids for added ones; they leave the VIP table at the
        // flip, and their tables and member blocks retire with it.
        let removed: Vec<VipKey> = self
            .vips
            .keys()
            .filter(|key| !desired.vips.contains_key(*key))
            .copied()
            .collect();
        for key in removed {
            if let Some(vip) = self.vips.remove(&key) {
                self.tables.release(vip.table_slot);
                self.members.release(vip.block);
                self.service_ids.release(vip.id);
                changes.vips_removed += 1;
            }
        }

        // What each changed service needs; services whose table and members stay only have
        // their entry's flags, claim and persistence brought up to date.
        let mut plans: Vec<Plan> = Vec::new();
        for (key, vip) in &desired.vips {
            // The same live members as last time: the same table and member block (ids stay
            // with their real servers for as long as these are configured).
            let persistence = self.persistence_ticks(vip.persistence);
            if let Some(applied) = self.vips.get_mut(key)
                && applied.table.is_some()
                && applied.members == vip.members
            {
                applied.value.flags = vip.flags;
                applied.value.claim = vip.claim;
                applied.value.persistence = persistence;
                continue;
            }
            let (table, positions) = TableMembers::of(&vip.members);
            let member_ids = positions
                .iter()
                .map(|&i| {
                    let (ip, port, _) = vip.members[i];
                    self.backend_id(key, (ip, port).into())
                        .ok_or_else(|| anyhow!("backend {ip} port {port} has no id"))
                })
                .collect::<Result<Vec<u32>>>()?;
            match self.vips.get_mut(key) {
                Some(applied)
                    if applied.table.as_ref() == Some(&table)
                        && applied.member_ids == member_ids =>
                {
                    applied.value.flags = vip.flags;
                    applied.value.claim = vip.claim;
                    applied.value.persistence = persistence;
                    applied.members = vip.members.clone();
                }
                _ => plans.push(Plan {
                    key: *key,
                    flags: vip.flags,
                    claim: vip.claim,
                    persistence,
                    table,
                    member_ids,
                    members: vip.members.clone(),
                }),
            }
        }

        // In batches: as many as there are free table slots and member entries, then a flip,
        // after which what the batch replaced is free again.
        let mut plans = plans.into_iter().peekable();
        loop {
            let now = Instant::now();
            self.tables.reclaim(now, TABLE_GRACE);
            self.members.reclaim(now, TABLE_GRACE);
            let mut progressed = false;
            while let Some(plan) = plans.peek() {
                if !self.start_service(w, plan, &mut changes)? {
                    break;
                }
                progressed = true;
                plans.next();
            }
            self.build_tables(w)?;
            self.flip(w, &mut control, &mut changes)?;
            if plans.peek().is_none() {
                break;
            }
            if !progressed && self.tables.retiring() == 0 && self.members.retiring() == 0 {
                bail!(
                    "out of Maglev table slots or member entries ({} tables in use): the config \
                     is over the data plane's limits",
                    self.tables.in_use()
                );
            }
            wait_out_grace(self.vip_flipped_at);
        }

        self.write_filter(w, &filter)?;
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

        self.retire_backends(w, desired, &mut changes)?;
        // Drains that just ended took their real servers' replies with them.
        let nat_sources = self.nat_sources_of(desired);
        self.write_nat_filter(w, &nat_filter_of(&nat_sources))?;
        let gone: Vec<NatSource> = self
            .nat_sources
            .keys()
            .filter(|s| !nat_sources.contains_key(*s))
            .copied()
            .collect();
        if !gone.is_empty() {
            // Written below, after the removals.
            control.nat_generation = next_nat_generation(control.nat_generation);
        }
        for source in gone {
            w.remove_nat_source(&source)?;
            self.nat_sources.remove(&source);
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

    fn write_nat_filter(&mut self, w: &mut impl MapWriter, filter: &[u64]) -> Result<()> {
        for (i, (&new, old)) in filter.iter().zip(self.nat_filter.iter_mut()).enumerate() {
            if new != *old {
                w.set_nat_filter(i as u32, new)?;
                *old = new;
            }
        }
        Ok(())
    }

    /// Every NAT real server's replies and the service they answer for: configured real
    /// servers (live or not: a real server going down may still answer) and draining ones
    /// (removed from the config, keeping their connections). A real server (address, port,
    /// protocol) of two NAT services answers for the first (the config check refuses it).
    fn nat_sources_of(&self, desired: &DesiredState) -> BTreeMap<NatSource, NatReply> {
        let mut out = BTreeMap::new();
        // A DR-only config (the common edge case) skips the walk over every backend: live or
        // draining, a backend only has a source entry if its service is NAT.
        if !desired
            .vips
            .values()
            .any(|vip| Forwarding::of(vip.flags) == Forwarding::Nat)
        {
            return out;
        }
        let live = self.backends.iter().map(|(k, (id, _))| (k, *id));
        let draining = self.draining.iter().map(|(k, (id, _, _))| (k, *id));
        for (key, id) in live.chain(draining) {
            let Some(vip) = desired.vips.get(&key.vip) else {
                continue;
            };
            if Forwarding::of(vip.flags) != Forwarding::Nat {
                continue;
            }
            let source = NatSource {
                addr: crate::service::addr_words(key.real_server.ip()),
                port: key.real_server.port().to_be(),
                proto: key.vip.proto,
                _pad: 0,
            };
            let reply = NatReply {
                vip: key.vip,
                backend_id: id,
                claim: vip.claim,
                _pad: 0,
            };
            out.entry(source).or_insert(reply);
            // Its address alone, whose fragments the data plane drops.
            out.entry(NatSource::address_of(&source.addr))
                .or_insert(reply);
        }
        out
    }

    fn write_filter(&mut self, w: &mut impl MapWriter, filter: &[u64]) -> Result<()> {
        for (i, (&new, old)) in filter.iter().zip(self.vip_filter.iter_mut()).enumerate() {
            if new != *old {
                w.set_vip_filter(i as u32, new)?;
                *old = new;
            }
        }
        Ok(())
    }

    /// Backends, before any member block names them. One going down is marked so only once no
    /// live table names it (returned, for after the flip): until then a new connection hashed
    /// to it would be dropped.
    fn write_backends(
        &mut self,
        w: &mut impl MapWriter,
        desired: &DesiredState,
        changes: &mut Changes,
    ) -> Result<Vec<(BackendKey, u32, Backend)>> {
        // Real servers back in the config before their drain ended keep their ids.
        if !self.draining.is_empty() {
            for key in desired.backends.keys() {
                if let Some((id, applied, _)) = self.draining.remove(key) {
                    self.backends.insert(*key, (id, applied));
                }
            }
        }
        let mut going_down = Vec::new();
        let mut added = Vec::new();
        // Both maps are in key order: one walk side by side rather than a search of tens of
        // thousands of backends for each.
        let mut applied_backends = self.backends.iter_mut().peekable();
        for (key, backend) in &desired.backends {
            while applied_backends.next_if(|(k, _)| *k < key).is_some() {}
            let applied = applied_backends
                .next_if(|(k, _)| *k == key)
                .map(|(_, entry)| entry);
            if let Some((id, applied)) = &applied
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
            let (id, generation) = match &applied {
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
                    let id = self
                        .backend_ids
                        .alloc()
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
            match applied {
                Some(entry) => *entry = (id, backend),
                None => added.push((*key, (id, backend))),
            }
            changes.backends_written += 1;
        }
        self.backends.extend(added);
        Ok(going_down)
    }

    /// Gives a service its new table and member block (written if new), and its entry for the
    /// next flip. `false` when no table slot or member entries are free now.
    fn start_service(
        &mut self,
        w: &mut impl MapWriter,
        plan: &Plan,
        changes: &mut Changes,
    ) -> Result<bool> {
        // An adopted service (its table unknown) gets a new table and block whatever they hold.
        let applied = self.vips.get(&plan.key).filter(|a| a.table.is_some());
        let same_table = applied.is_some_and(|a| a.table.as_ref() == Some(&plan.table));
        let same_members = applied.is_some_and(|a| a.member_ids == plan.member_ids);
        let block = if same_members {
            applied.map(|a| a.block).unwrap_or_default()
        } else {
            match self.members.alloc(plan.member_ids.len() as u32) {
                Some(block) => block,
                None => return Ok(false),
            }
        };
        let table_slot = if same_table {
            applied.map(|a| a.table_slot).unwrap_or_default()
        } else {
            match self.tables.acquire(&plan.table) {
                Some(Acquired::Shared(slot)) => {
                    changes.tables_shared += 1;
                    slot
                }
                Some(Acquired::Fresh(slot)) => {
                    // Built with the rest of the batch, before its flip.
                    self.to_build.push((slot, plan.table.clone()));
                    changes.tables_written += 1;
                    slot
                }
                None => {
                    if !same_members {
                        // Nothing names it yet: straight back to the free entries.
                        self.members.cancel(block);
                    }
                    return Ok(false);
                }
            }
        };
        if !same_members {
            w.write_members(block.base, &plan.member_ids)
                .with_context(|| format!("writing the member block at {}", block.base))?;
        }
        let id = match self.vips.get(&plan.key) {
            Some(applied) => applied.id,
            None => {
                let id = self
                    .service_ids
                    .alloc()
                    .ok_or_else(|| anyhow!("more than {MAX_SERVICES} virtual services"))?;
                w.reset_counters(CounterKind::Vip, id)?;
                changes.vips_added += 1;
                id
            }
        };
        let value = VipValue {
            id,
            flags: plan.flags,
            ring: table_slot * self.maglev_size,
            members: block.base,
            claim: plan.claim,
            persistence: plan.persistence,
            _pad: 0,
        };
        let adopted = self.vips.get(&plan.key).is_some_and(|a| a.table.is_none());
        if let Some(old) = self.vips.insert(
            plan.key,
            AppliedVip {
                id,
                value,
                table: Some(plan.table.clone()),
                table_slot,
                block,
                member_ids: plan.member_ids.clone(),
                members: plan.members.clone(),
            },
        ) {
            if !same_table || adopted {
                self.tables.release(old.table_slot);
            }
            if !same_members || adopted {
                self.members.release(old.block);
            }
        }
        Ok(true)
    }

    /// Builds the tables the batch needs, on every CPU (a table of 16,381 entries takes about
    /// a quarter of a millisecond), and writes them into their free slots.
    fn build_tables(&mut self, w: &mut impl MapWriter) -> Result<()> {
        let pending = std::mem::take(&mut self.to_build);
        if pending.is_empty() {
            return Ok(());
        }
        let m = self.maglev_size;
        let threads = thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(pending.len().div_ceil(8));
        if threads <= 1 {
            for (slot, table) in &pending {
                table.build(m, &mut self.scratch, &mut self.wide, &mut self.entries)?;
                w.write_table(*slot, &self.entries)
                    .with_context(|| format!("writing Maglev table {slot}"))?;
                self.tables
                    .set_checksum(*slot, crate::tables::checksum(table, &self.entries));
            }
            return Ok(());
        }
        let chunk = pending.len().div_ceil(threads);
        type Built = Result<Vec<(u32, Vec<u16>, u32)>>;
        let built: Vec<Built> = thread::scope(|s| {
            let workers: Vec<_> = pending
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        let mut scratch = Box::new(MaglevScratch::new());
                        let mut wide = Vec::new();
                        part.iter()
                            .map(|(slot, table)| {
                                let mut entries = Vec::new();
                                table.build(m, &mut scratch, &mut wide, &mut entries)?;
                                let sum = crate::tables::checksum(table, &entries);
                                Ok((*slot, entries, sum))
                            })
                            .collect()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a table builder panicked")))
                })
                .collect()
        });
        for part in built {
            for (slot, entries, sum) in part? {
                w.write_table(slot, &entries)
                    .with_context(|| format!("writing Maglev table {slot}"))?;
                self.tables.set_checksum(slot, sum);
            }
        }
        Ok(())
    }

    /// The VIP table: writes the idle half where it differs, then flips the halves.
    fn flip(
        &mut self,
        w: &mut impl MapWriter,
        control: &mut Control,
        changes: &mut Changes,
    ) -> Result<()> {
        let values: BTreeMap<VipKey, VipValue> =
            self.vips.iter().map(|(k, v)| (*k, v.value)).collect();
        let half = place_vips(&values)?;
        let live = control.live_vip_half() as usize;
        if half == self.vip_halves[live] {
            return Ok(());
        }
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
        // The idle half goes live; the count of flips goes on.
        *control = Control {
            vip_flips: control.vip_flips.wrapping_add(1),
            ..*control
        };
        // Tables and member blocks were written through memory the program reads: make them
        // visible before the entries that point at them go live.
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        w.set_control(control)?;
        self.control = Some(*control);
        changes.control_written = true;
        let now = Instant::now();
        self.vip_flipped_at = now;
        self.tables.flipped(now);
        self.members.flipped(now);
        Ok(())
    }

    /// Backends no longer configured: drained while their VIP stays, else cleared; and the
    /// ids adopted tables named, once no adopted table is left.
    fn retire_backends(
        &mut self,
        w: &mut impl MapWriter,
        desired: &DesiredState,
        changes: &mut Changes,
    ) -> Result<()> {
        // Side by side in key order, as in write_backends.
        let mut wanted = desired.backends.keys().peekable();
        let gone: Vec<BackendKey> = self
            .backends
            .keys()
            .filter(|key| {
                while wanted.next_if(|w| w < key).is_some() {}
                wanted.peek() != Some(key)
            })
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
                self.backend_ids.release(id);
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
                self.backend_ids.release(id);
                changes.backends_written += 1;
            }
        }
        if !self.reserved_backend_ids.is_empty() && self.vips.values().all(|v| v.table.is_some()) {
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
                    self.backend_ids.release(id);
                    changes.backends_written += 1;
                }
            }
        }
        Ok(())
    }

    /// Keeps a VIP's totals whole when one of its backends goes away.
    fn retire_counters(&self, w: &mut impl MapWriter, id: u32, key: &BackendKey) -> Result<()> {
        match self.vips.get(&key.vip) {
            Some(vip) => w.fold_counters(id, vip.id),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::service::{BackendPath, Protocol, RealServer, Service, desired};

    const M: u32 = 251;

    #[derive(Debug, PartialEq, Eq)]
    enum Write {
        Backend(u32, bool),
        /// A table slot written.
        Table(u32),
        /// A member block written: its start and backend ids.
        Members(u32, Vec<u32>),
        /// A VIP table slot: (half, service id and table slot, or None for an empty slot).
        VipSlot(u32, Option<(u32, u32)>),
        AddAddr,
        RemoveAddr,
        TxPort(u32),
        /// The live VIP half.
        Control(u32),
        /// (claim index, active).
        Claim(u32, u32),
        /// A NAT source written (real server port, service id... the VIP's port) or removed.
        NatSource(u16, Option<u16>),
    }

    #[derive(Default)]
    struct Recorder(Vec<Write>);

    impl MapWriter for Recorder {
        fn set_backend(&mut self, id: u32, b: &Backend) -> Result<()> {
            self.0.push(Write::Backend(id, b.flags != 0));
            Ok(())
        }
        fn write_table(&mut self, table: u32, entries: &[u16]) -> Result<()> {
            assert_eq!(entries.len(), M as usize);
            self.0.push(Write::Table(table));
            Ok(())
        }
        fn write_members(&mut self, base: u32, backends: &[u32]) -> Result<()> {
            self.0.push(Write::Members(base, backends.to_vec()));
            Ok(())
        }
        fn write_vip_slot(&mut self, index: u32, slot: &VipSlot) -> Result<()> {
            let value = (slot.key.proto != 0).then_some((slot.value.id, slot.value.ring / M));
            self.0.push(Write::VipSlot(index / VIP_SLOTS, value));
            Ok(())
        }
        fn set_vip_filter(&mut self, _: u32, _: u64) -> Result<()> {
            Ok(())
        }
        fn set_nat_source(&mut self, s: &NatSource, r: &NatReply) -> Result<()> {
            self.0.push(Write::NatSource(
                u16::from_be(s.port),
                Some(u16::from_be(r.vip.port)),
            ));
            Ok(())
        }
        fn remove_nat_source(&mut self, s: &NatSource) -> Result<()> {
            self.0.push(Write::NatSource(u16::from_be(s.port), None));
            Ok(())
        }
        fn set_nat_filter(&mut self, _: u32, _: u64) -> Result<()> {
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
            self.0.push(Write::Control(c.live_vip_half()));
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
        syn_window: 3 * 250,
        ticks_per_second: 250,
    };

    fn reconciler() -> Reconciler {
        Reconciler::new(1, M, TIMEOUTS)
    }

    fn service(port: u16, weights: &[u32]) -> Service {
        Service {
            vip: format!("10.0.0.100:{port}").parse().unwrap(),
            protocol: Protocol::Tcp,
            source_hash: false,
            persistence: 0,
            forwarding: Forwarding::DirectRouting,
            real_servers: weights
                .iter()
                .enumerate()
                .map(|(i, w)| RealServer {
                    addr: format!("10.0.0.{}:{port}", i + 1).parse().unwrap(),
                    weight: *w,
                    alive: true,
                })
                .collect(),
        }
    }

    fn services(weights: &[u32]) -> Vec<Service> {
        vec![service(80, weights)]
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

    fn tables_written(w: &Recorder) -> usize {
        w.0.iter().filter(|w| matches!(w, Write::Table(_))).count()
    }

    #[test]
    fn first_apply_writes_in_dependency_order() {
        let mut r = reconciler();
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
                Write::Members(0, vec![0, 1]),
                Write::Table(0),
                Write::VipSlot(1, Some((0, 0))),
                Write::Control(1),
                Write::Claim(0, 1),
            ]
        );
    }

    #[test]
    fn unchanged_state_writes_nothing() {
        let mut r = reconciler();
        let d = desired(&services(&[1, 1]), &paths(2), true);
        r.apply(&mut Recorder::default(), &d).unwrap();
        let mut w = Recorder::default();
        assert!(r.apply(&mut w, &d).unwrap().is_empty());
        assert!(w.0.is_empty());
    }

    #[test]
    fn the_first_flip_after_adopting_writes_the_new_control_word() {
        let mut r = Reconciler::new(7, M, TIMEOUTS);
        r.adopt(PinnedState::default());
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&services(&[1, 1]), &paths(2), true))
            .unwrap();
        assert_eq!(
            r.control,
            Some(Control {
                hash_seed: 7,
                vip_flips: 1,
                maglev_size: M,
                nat_generation: 1,
                syn_window: TIMEOUTS.syn_window,
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
        let mut r = reconciler();
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
    fn a_weight_change_builds_a_spare_table_then_flips_and_frees_the_old_one() {
        let mut r = reconciler();
        r.apply(
            &mut Recorder::default(),
            &desired(&services(&[1, 1]), &paths(2), true),
        )
        .unwrap();
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&services(&[1, 3]), &paths(2), true))
            .unwrap();
        // The same members (ids 0 and 1): their block stays; only the table is new.
        assert_eq!(
            w.0,
            vec![
                Write::Table(1),
                Write::VipSlot(0, Some((0, 1))),
                Write::Control(0)
            ]
        );
        thread::sleep(TABLE_GRACE);
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&services(&[2, 3]), &paths(2), true))
            .unwrap();
        // Table 0 is free again; half 1 still holds slot 0 of the first apply: only the table
        // and the control word.
        assert_eq!(w.0, vec![Write::Table(0), Write::Control(1)]);
        assert_eq!(r.tables_in_use(), 1);
    }

    #[test]
    fn services_with_the_same_reals_share_a_table_until_one_changes() {
        let mut r = reconciler();
        let both = [service(80, &[1, 2, 3]), service(443, &[1, 2, 3])];
        let mut w = Recorder::default();
        let changes = r.apply(&mut w, &desired(&both, &paths(3), true)).unwrap();
        assert_eq!((changes.tables_written, changes.tables_shared), (1, 1));
        assert_eq!(tables_written(&w), 1);
        let (http, https) = (both[0].key(), both[1].key());
        assert_eq!(r.table_of(&http), r.table_of(&https));
        // Each keeps its own backends: two member blocks.
        let blocks: Vec<&Write> =
            w.0.iter()
                .filter(|w| matches!(w, Write::Members(..)))
                .collect();
        assert_eq!(
            blocks,
            vec![
                &Write::Members(0, vec![0, 1, 2]),
                &Write::Members(3, vec![3, 4, 5])
            ]
        );

        let split = [service(80, &[1, 2, 3]), service(443, &[1, 2, 5])];
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&split, &paths(3), true)).unwrap();
        assert_eq!(tables_written(&w), 1);
        assert_ne!(r.table_of(&http), r.table_of(&https));
        assert_eq!(r.tables_in_use(), 2);

        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&both, &paths(3), true)).unwrap();
        assert_eq!(tables_written(&w), 0, "back to the shared table");
        assert_eq!(r.table_of(&http), r.table_of(&https));
    }

    #[test]
    fn more_changes_than_spare_tables_apply_in_batches() {
        let mut r = reconciler();
        r.tables = TablePool::new(6);
        let many: Vec<Service> = (0..4)
            .map(|i| service(1000 + i, &[1, 1 + i as u32]))
            .collect();
        r.apply(&mut Recorder::default(), &desired(&many, &paths(2), true))
            .unwrap();
        assert_eq!(r.tables_in_use(), 4);
        // Every table changes; two free slots at a time.
        let changed: Vec<Service> = (0..4)
            .map(|i| service(1000 + i, &[2, 1 + i as u32]))
            .collect();
        let mut w = Recorder::default();
        r.apply(&mut w, &desired(&changed, &paths(2), true))
            .unwrap();
        assert_eq!(tables_written(&w), 4);
        let flips =
            w.0.iter()
                .filter(|w| matches!(w, Write::Control(_)))
                .count();
        assert_eq!(flips, 2, "{:?}", w.0);
        assert_eq!(r.tables_in_use(), 4);
    }

    #[test]
    fn a_restart_adopts_pinned_state_without_a_gap() {
        let d = desired(&services(&[1, 1]), &paths(2), true);
        let mut first = reconciler();
        first.apply(&mut Recorder::default(), &d).unwrap();
        let vip_slots: Vec<VipSlot> = first.vip_halves.concat();
        let backends: Vec<(u32, Backend)> = first.backends.values().copied().collect();
        let control = first.control.unwrap();

        let mut restarted = reconciler();
        restarted.adopt(PinnedState {
            vip_slots,
            vip_addrs: first.vip_addrs.clone().into_iter().collect(),
            vip_filter: first.vip_filter.clone(),
            static_claim: first.static_claim.unwrap(),
            backends: backends.clone(),
            max_generation: 2,
            control,
            member_blocks: BTreeMap::from([(0, 2)]),
            ..PinnedState::default()
        });
        let mut w = Recorder::default();
        restarted.apply(&mut w, &d).unwrap();
        // Backends keep their ids and generations (remembered flows stay valid); the table and
        // the member block go into free space and flip; the control word and the VIP address
        // are left alone.
        assert_eq!(
            w.0,
            vec![
                Write::Members(2, vec![0, 1]),
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
        let mut r = reconciler().with_drain(Duration::from_millis(30));
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
    fn a_dead_real_server_is_marked_down_after_the_flip() {
        let mut r = reconciler().with_drain(Duration::from_secs(60));
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
                Write::Members(2, vec![0]),
                Write::Table(1),
                Write::VipSlot(0, Some((0, 1))),
                Write::Control(0),
                Write::Backend(1, false)
            ]
        );
    }

    #[test]
    fn a_reused_id_gets_a_new_generation() {
        let mut r = reconciler();
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
        let mut r = reconciler();
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
        assert_eq!(r.tables_in_use(), 0);
    }

    #[test]
    fn robin_hood_places_4096_services_the_same_way_whatever_the_order() {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for _ in 0..20 {
            let vips: BTreeMap<VipKey, VipValue> = (0..MAX_SERVICES)
                .map(|i| {
                    let key = VipKey {
                        addr: lb_common::v4_mapped(rng.r#gen()),
                        port: rng.r#gen(),
                        proto: 6,
                        _pad: 0,
                    };
                    (
                        key,
                        VipValue {
                            id: i,
                            ..VipValue::default()
                        },
                    )
                })
                .collect();
            let half = place_vips(&vips).expect("placed within the probe limit");
            assert_eq!(half.iter().filter(|s| s.key.proto != 0).count(), vips.len());
            for (i, slot) in half.iter().enumerate().filter(|(_, s)| s.key.proto != 0) {
                let distance = (i as u32).wrapping_sub(slot.key.home_slot()) & (VIP_SLOTS - 1);
                assert!(distance < VIP_PROBES);
            }
        }
    }

    /// A NAT service's real servers get NAT source entries (their port, the VIP's port back,
    /// and their address alone, port 0, whose fragments are dropped) before the service goes
    /// live; one removed from the config keeps its entry while it
    /// drains (its connections' replies are still translated), and loses it with the drain.
    #[test]
    fn nat_sources_follow_nat_services_and_their_drains() {
        let mut nat = service(80, &[1, 1]);
        nat.forwarding = Forwarding::Nat;
        for rs in &mut nat.real_servers {
            rs.addr.set_port(8080);
        }
        let resolved = paths(2);
        let mut r = reconciler().with_drain(Duration::from_millis(50));
        let mut w = Recorder::default();
        r.apply(
            &mut w,
            &desired(std::slice::from_ref(&nat), &resolved, true),
        )
        .unwrap();
        let first_nat =
            w.0.iter()
                .position(|x| matches!(x, Write::NatSource(..)))
                .unwrap();
        let first_slot =
            w.0.iter()
                .position(|x| matches!(x, Write::VipSlot(..)))
                .unwrap();
        assert!(first_nat < first_slot, "{:?}", w.0);
        let nat_writes: Vec<&Write> =
            w.0.iter()
                .filter(|x| matches!(x, Write::NatSource(..)))
                .collect();
        assert_eq!(
            nat_writes,
            [
                &Write::NatSource(0, Some(80)),
                &Write::NatSource(8080, Some(80)),
                &Write::NatSource(0, Some(80)),
                &Write::NatSource(8080, Some(80))
            ]
        );

        // One real server removed: it drains, its entry stays.
        let mut one = nat.clone();
        one.real_servers.truncate(1);
        let mut w = Recorder::default();
        r.apply(
            &mut w,
            &desired(std::slice::from_ref(&one), &resolved, true),
        )
        .unwrap();
        assert!(
            !w.0.iter().any(|x| matches!(x, Write::NatSource(..))),
            "{:?}",
            w.0
        );
        // The drain ends: the entry goes.
        thread::sleep(Duration::from_millis(60));
        let mut w = Recorder::default();
        r.apply(
            &mut w,
            &desired(std::slice::from_ref(&one), &resolved, true),
        )
        .unwrap();
        assert_eq!(
            w.0.iter()
                .filter(|x| matches!(x, Write::NatSource(..)))
                .collect::<Vec<_>>(),
            [&Write::NatSource(0, None), &Write::NatSource(8080, None)]
        );

        // A DR service has none.
        let mut r = reconciler();
        let mut w = Recorder::default();
        let dr = service(80, &[1, 1]);
        r.apply(&mut w, &desired(std::slice::from_ref(&dr), &paths(2), true))
            .unwrap();
        assert!(!w.0.iter().any(|x| matches!(x, Write::NatSource(..))));
    }
}

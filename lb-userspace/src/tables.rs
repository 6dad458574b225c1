//! Maglev tables as the data plane holds them: shared by every service with the same real
//! servers and weights, kept in a fixed pool of table slots, and pointing at members by position.
//!
//! A table's content depends only on its [`TableMembers`] and the table size: each member is
//! named by its address and its rank among that address's ports (so `VIP:80 -> rs:80` and
//! `VIP:443 -> rs:443` have the same table), and an entry holds the member's position in that
//! list. Each service has its own member block that turns a position into its own backend id,
//! with its own counters and liveness, as IPVS keeps per (service, real server).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow};
use lb_common::{
    Addr, NO_BACKEND, NO_MEMBER,
    maglev::{self, MaglevBackend, MaglevScratch},
};

use crate::service::addr_words;

/// One member of a table: what its permutation is derived from, and its weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableMember {
    pub addr: Addr,
    /// Rank among the same address's ports in the service (0 unless one address serves a
    /// service on several ports).
    pub rank: u16,
    pub weight: u32,
}

/// Everything a table's content depends on, but its size: its members in position order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableMembers(pub Vec<TableMember>);

impl TableMembers {
    /// The table of a service's live members `(address, port, weight)`, and which of them each
    /// position is (an index into `members`). Members of weight 0 keep the connections they
    /// have but get no table entries, so they are not in the table.
    pub fn of(members: &[(IpAddr, u16, u32)]) -> (Self, Vec<usize>) {
        let mut order: Vec<usize> = (0..members.len()).filter(|&i| members[i].2 > 0).collect();
        order.sort_by_key(|&i| (addr_words(members[i].0), members[i].1));
        let mut table = Vec::with_capacity(order.len());
        let mut rank = 0u16;
        for (n, &i) in order.iter().enumerate() {
            let addr = addr_words(members[i].0);
            rank = match n {
                0 => 0,
                _ if addr_words(members[order[n - 1]].0) == addr => rank.saturating_add(1),
                _ => 0,
            };
            table.push(TableMember {
                addr,
                rank,
                weight: members[i].2,
            });
        }
        (Self(table), order)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The table's `size` entries: member positions, or [`NO_MEMBER`] for all when no member
    /// has a weight. `scratch` and `wide` are working memory kept between builds.
    pub fn build(
        &self,
        size: u32,
        scratch: &mut MaglevScratch,
        wide: &mut Vec<u32>,
        out: &mut Vec<u16>,
    ) -> Result<()> {
        let backends: Vec<MaglevBackend> = self
            .0
            .iter()
            .enumerate()
            .map(|(position, m)| MaglevBackend {
                addr: m.addr,
                port: m.rank,
                weight: m.weight,
                id: position as u32,
            })
            .collect();
        wide.clear();
        wide.resize(size as usize, NO_BACKEND);
        maglev::build(&backends, scratch, wide)
            .map_err(|e| anyhow!("building a Maglev table: {e}"))?;
        out.clear();
        out.extend(
            wide.iter()
                .map(|&p| if p == NO_BACKEND { NO_MEMBER } else { p as u16 }),
        );
        Ok(())
    }
}

/// A service's table as the data plane reads it, for predicting where it places a flow: the
/// same members, the same builder, the same hash-to-entry mapping.
pub struct ServiceTable {
    /// Which member each position is (an index into the members given).
    order: Vec<usize>,
    entries: Vec<u16>,
}

impl ServiceTable {
    /// The table of a service's live members `(address, port, weight)` with `size` entries.
    pub fn new(members: &[(IpAddr, u16, u32)], size: u32) -> Result<Self> {
        let (table, order) = TableMembers::of(members);
        let mut entries = Vec::new();
        let mut scratch = Box::new(MaglevScratch::new());
        table.build(size, &mut scratch, &mut Vec::new(), &mut entries)?;
        Ok(Self { order, entries })
    }

    /// The member (an index into the members given) a flow with `hash` goes to, if any.
    pub fn place(&self, hash: u32) -> Option<usize> {
        let entry = lb_common::hash::slot_in(hash, self.entries.len() as u32);
        match self.entries.get(entry as usize) {
            Some(&p) if p != NO_MEMBER => self.order.get(p as usize).copied(),
            _ => None,
        }
    }

    pub fn entries(&self) -> &[u16] {
        &self.entries
    }
}

/// FNV-1a over a table's entries and its members (address, rank, weight): two directors with
/// equal checksums place every flow on the same real server.
pub fn checksum(members: &TableMembers, entries: &[u16]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    for m in &members.0 {
        for w in m.addr {
            eat(&w.to_ne_bytes());
        }
        eat(&m.rank.to_le_bytes());
        eat(&m.weight.to_le_bytes());
    }
    for e in entries {
        eat(&e.to_le_bytes());
    }
    h
}

/// The table slots of the ring map: which table each holds, how many services use it, and
/// which are free. A table no service uses any more is kept (and can be taken back) until no
/// packet can be reading it, then freed.
#[derive(Debug)]
pub struct TablePool {
    users: Vec<u32>,
    /// Each slot's [`checksum`], once built.
    checksums: Vec<Option<u32>>,
    /// What each slot holds, when known (`None`: adopted from a previous xlb, or free).
    held: Vec<Option<TableMembers>>,
    by_members: HashMap<TableMembers, u32>,
    free: BTreeSet<u32>,
    /// Slots no service uses, since when no packet can reach them (`None`: a flip is pending).
    retiring: BTreeMap<u32, Option<Instant>>,
}

/// What [`TablePool::acquire`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// A slot already holding this table.
    Shared(u32),
    /// A free slot, to be written.
    Fresh(u32),
}

impl TablePool {
    pub fn new(slots: u32) -> Self {
        Self {
            users: vec![0; slots as usize],
            checksums: vec![None; slots as usize],
            held: vec![None; slots as usize],
            by_members: HashMap::new(),
            free: (0..slots).collect(),
            retiring: BTreeMap::new(),
        }
    }

    /// A slot for `members`: the one holding them already, or a free one. `None` when every
    /// slot is in use or still being read.
    pub fn acquire(&mut self, members: &TableMembers) -> Option<Acquired> {
        if let Some(&slot) = self.by_members.get(members) {
            self.users[slot as usize] += 1;
            self.retiring.remove(&slot);
            return Some(Acquired::Shared(slot));
        }
        let slot = self.free.pop_first()?;
        self.users[slot as usize] = 1;
        self.held[slot as usize] = Some(members.clone());
        self.by_members.insert(members.clone(), slot);
        Some(Acquired::Fresh(slot))
    }

    pub fn set_checksum(&mut self, slot: u32, sum: u32) {
        if let Some(c) = self.checksums.get_mut(slot as usize) {
            *c = Some(sum);
        }
    }

    pub fn checksum(&self, slot: u32) -> Option<u32> {
        self.checksums.get(slot as usize).copied().flatten()
    }

    /// Marks a slot in use by an adopted service, its content unknown.
    pub fn adopt(&mut self, slot: u32) {
        if let Some(users) = self.users.get_mut(slot as usize) {
            *users += 1;
            self.free.remove(&slot);
        }
    }

    /// One service stopped using `slot`; once none does, it retires at the next flip.
    pub fn release(&mut self, slot: u32) {
        let Some(users) = self.users.get_mut(slot as usize) else {
            return;
        };
        *users = users.saturating_sub(1);
        if *users == 0 {
            self.retiring.insert(slot, None);
        }
    }

    /// The VIP table flipped at `at`: what retired before it is unreachable from then on.
    pub fn flipped(&mut self, at: Instant) {
        for since in self.retiring.values_mut() {
            since.get_or_insert(at);
        }
    }

    /// Frees the retired slots no packet can be reading any more.
    pub fn reclaim(&mut self, now: Instant, grace: Duration) {
        let done: Vec<u32> = self
            .retiring
            .iter()
            .filter(|(_, since)| since.is_some_and(|s| now.duration_since(s) >= grace))
            .map(|(slot, _)| *slot)
            .collect();
        for slot in done {
            self.retiring.remove(&slot);
            if let Some(members) = self.held[slot as usize].take() {
                self.by_members.remove(&members);
            }
            self.checksums[slot as usize] = None;
            self.free.insert(slot);
        }
    }

    /// Slots a retirement will give back.
    pub fn retiring(&self) -> usize {
        self.retiring.len()
    }

    /// Slots holding a table some service uses.
    pub fn in_use(&self) -> usize {
        self.users.iter().filter(|u| **u > 0).count()
    }
}

/// A service's member block: `len` entries from `base` in the member map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberBlock {
    pub base: u32,
    pub len: u32,
}

/// The member map's entries: first-fit over runs of free entries, merged when freed. Like
/// tables, a replaced block is freed only once no packet can be reading it.
#[derive(Debug)]
pub struct MemberPool {
    /// Free runs, by start.
    free: BTreeMap<u32, u32>,
    retiring: Vec<(MemberBlock, Option<Instant>)>,
}

impl MemberPool {
    pub fn new(entries: u32) -> Self {
        Self {
            free: BTreeMap::from([(0, entries)]),
            retiring: Vec::new(),
        }
    }

    /// `len` contiguous entries, or `None` if no free run is that long yet.
    pub fn alloc(&mut self, len: u32) -> Option<MemberBlock> {
        if len == 0 {
            return Some(MemberBlock::default());
        }
        let (&start, &run) = self.free.iter().find(|(_, run)| **run >= len)?;
        self.free.remove(&start);
        if run > len {
            self.free.insert(start + len, run - len);
        }
        Some(MemberBlock { base: start, len })
    }

    /// Takes a block out of the free runs (a block a previous xlb left in use).
    pub fn adopt(&mut self, block: MemberBlock) {
        if block.len == 0 {
            return;
        }
        let end = block.base + block.len;
        let overlapping: Vec<(u32, u32)> = self
            .free
            .range(..end)
            .filter(|(start, run)| **start + **run > block.base)
            .map(|(s, r)| (*s, *r))
            .collect();
        for (start, run) in overlapping {
            self.free.remove(&start);
            if start < block.base {
                self.free.insert(start, block.base - start);
            }
            if start + run > end {
                self.free.insert(end, start + run - end);
            }
        }
    }

    /// The block retires at the next flip.
    pub fn release(&mut self, block: MemberBlock) {
        if block.len > 0 {
            self.retiring.push((block, None));
        }
    }

    pub fn flipped(&mut self, at: Instant) {
        for (_, since) in &mut self.retiring {
            since.get_or_insert(at);
        }
    }

    pub fn reclaim(&mut self, now: Instant, grace: Duration) {
        let (done, keep): (Vec<_>, Vec<_>) = self
            .retiring
            .drain(..)
            .partition(|(_, since)| since.is_some_and(|s| now.duration_since(s) >= grace));
        self.retiring = keep;
        for (block, _) in done {
            self.give_back(block);
        }
    }

    pub fn retiring(&self) -> usize {
        self.retiring.len()
    }

    /// Returns a block no entry ever pointed at.
    pub fn cancel(&mut self, block: MemberBlock) {
        if block.len > 0 {
            self.give_back(block);
        }
    }

    fn give_back(&mut self, block: MemberBlock) {
        let mut start = block.base;
        let mut len = block.len;
        if let Some((&prev, &run)) = self.free.range(..start).next_back()
            && prev + run == start
        {
            self.free.remove(&prev);
            start = prev;
            len += run;
        }
        if let Some(&run) = self.free.get(&(start + len)) {
            self.free.remove(&(start + len));
            len += run;
        }
        self.free.insert(start, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, u16, u32)]) -> Vec<(IpAddr, u16, u32)> {
        list.iter()
            .map(|(ip, port, w)| (ip.parse().unwrap(), *port, *w))
            .collect()
    }

    #[test]
    fn the_same_reals_on_other_ports_make_the_same_table() {
        let http = members(&[
            ("10.0.0.2", 80, 1),
            ("10.0.0.1", 80, 2),
            ("10.0.0.3", 80, 0),
        ]);
        let https = members(&[("10.0.0.1", 443, 2), ("10.0.0.2", 443, 1)]);
        let (a, positions) = TableMembers::of(&http);
        let (b, _) = TableMembers::of(&https);
        assert_eq!(a, b);
        assert_eq!(
            positions,
            vec![1, 0],
            "sorted by address; weight 0 left out"
        );
        let other = members(&[("10.0.0.1", 443, 3), ("10.0.0.2", 443, 1)]);
        assert_ne!(a, TableMembers::of(&other).0, "weights are part of a table");
    }

    #[test]
    fn one_address_on_two_ports_takes_two_names() {
        let (t, _) = TableMembers::of(&members(&[("10.0.0.1", 8081, 1), ("10.0.0.1", 8080, 1)]));
        assert_eq!(t.0.iter().map(|m| m.rank).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn tables_hold_positions() {
        let (t, _) = TableMembers::of(&members(&[("10.0.0.1", 80, 1), ("10.0.0.2", 80, 3)]));
        let mut out = Vec::new();
        t.build(251, &mut MaglevScratch::new(), &mut Vec::new(), &mut out)
            .unwrap();
        let ones = out.iter().filter(|&&p| p == 1).count();
        assert_eq!(out.len(), 251);
        assert!(out.iter().all(|&p| p < 2));
        assert!((180..=195).contains(&ones), "3:1 weights: {ones} of 251");
        let (empty, _) = TableMembers::of(&members(&[("10.0.0.1", 80, 0)]));
        empty
            .build(251, &mut MaglevScratch::new(), &mut Vec::new(), &mut out)
            .unwrap();
        assert!(out.iter().all(|&p| p == NO_MEMBER));
    }

    #[test]
    fn a_released_table_is_shared_again_until_it_is_reclaimed() {
        let mut pool = TablePool::new(2);
        let a = TableMembers(vec![TableMember {
            addr: [0, 0, 0, 1],
            rank: 0,
            weight: 1,
        }]);
        let b = TableMembers(vec![TableMember {
            addr: [0, 0, 0, 2],
            rank: 0,
            weight: 1,
        }]);
        assert_eq!(pool.acquire(&a), Some(Acquired::Fresh(0)));
        assert_eq!(pool.acquire(&a), Some(Acquired::Shared(0)));
        assert_eq!(pool.acquire(&b), Some(Acquired::Fresh(1)));
        pool.release(0);
        pool.release(0);
        let c = TableMembers(vec![]);
        assert_eq!(pool.acquire(&c), None, "slot 0 is still being read");
        assert_eq!(pool.acquire(&a), Some(Acquired::Shared(0)), "taken back");
        pool.release(0);
        let t = Instant::now();
        pool.flipped(t);
        pool.reclaim(t, Duration::from_millis(10));
        assert_eq!(pool.acquire(&c), None, "within the grace");
        pool.reclaim(t + Duration::from_millis(10), Duration::from_millis(10));
        assert_eq!(pool.acquire(&c), Some(Acquired::Fresh(0)));
    }

    #[test]
    fn member_blocks_are_reused_and_merged() {
        let mut pool = MemberPool::new(10);
        let a = pool.alloc(4).unwrap();
        let b = pool.alloc(4).unwrap();
        assert_eq!((a.base, b.base), (0, 4));
        assert!(pool.alloc(3).is_none());
        pool.release(a);
        pool.release(b);
        let t = Instant::now();
        pool.flipped(t);
        pool.reclaim(t + Duration::from_millis(10), Duration::from_millis(10));
        assert_eq!(pool.alloc(10), Some(MemberBlock { base: 0, len: 10 }));
        let mut pool = MemberPool::new(10);
        pool.adopt(MemberBlock { base: 3, len: 2 });
        assert_eq!(pool.alloc(3).map(|b| b.base), Some(0));
        assert_eq!(pool.alloc(3).map(|b| b.base), Some(5));
    }
}

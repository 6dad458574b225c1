//! A read-only view of a data plane's counters and flow table, with descriptors of its own so
//! that it can be read on another thread than the one writing the maps (a status request or a
//! Prometheus scrape never holds up the reconciler).

use std::{
    os::fd::{AsFd as _, OwnedFd},
    path::Path,
};

use anyhow::{Context as _, Result, anyhow};
use aya::maps::{Array, MapData};
use lb_common::{
    BACKEND_F_VALID, Backend, Control, Counters, FlowEvent, FlowKey, FlowValue, Outcome, VIP_SLOTS,
    VipKey, VipSlot, names,
};

use super::{
    MappedArray, batch,
    stats::{BackendStats, Stats, VipStats},
};

/// The maps an [`Observer`] reads, as descriptors (cheap to duplicate).
pub(super) struct ObservedMaps {
    pub vips: OwnedFd,
    pub control: OwnedFd,
    pub backends: OwnedFd,
    pub vip_stats: OwnedFd,
    pub backend_stats: OwnedFd,
    pub outcomes: OwnedFd,
    pub flow_events: OwnedFd,
    pub flows: OwnedFd,
}

impl ObservedMaps {
    pub(super) fn try_clone(&self) -> Result<Self> {
        let dup = |fd: &OwnedFd| fd.try_clone().context("duplicating a map descriptor");
        Ok(Self {
            vips: dup(&self.vips)?,
            control: dup(&self.control)?,
            backends: dup(&self.backends)?,
            vip_stats: dup(&self.vip_stats)?,
            backend_stats: dup(&self.backend_stats)?,
            outcomes: dup(&self.outcomes)?,
            flow_events: dup(&self.flow_events)?,
            flows: dup(&self.flows)?,
        })
    }

    /// The maps pinned in `dir` by a running xlb.
    pub(super) fn from_pins(dir: &Path) -> Result<Self> {
        let open = |name: &str| -> Result<OwnedFd> {
            let path = dir.join(name);
            let data = MapData::from_pin(&path).with_context(|| {
                format!(
                    "opening {} (is xlb running on this interface?)",
                    path.display()
                )
            })?;
            data.fd()
                .as_fd()
                .try_clone_to_owned()
                .with_context(|| format!("duplicating {name}"))
        };
        Ok(Self {
            vips: open(names::VIPS)?,
            control: open(names::CONTROL)?,
            backends: open(names::BACKENDS)?,
            vip_stats: open(names::VIP_STATS)?,
            backend_stats: open(names::BACKEND_STATS)?,
            outcomes: open(names::OUTCOMES)?,
            flow_events: open(names::FLOW_EVENTS)?,
            flows: open(names::FLOWS)?,
        })
    }
}

/// One remembered flow, as the flow table holds it.
#[derive(Clone, Copy, Debug)]
pub struct FlowEntry {
    pub key: FlowKey,
    pub value: FlowValue,
}

pub struct Observer {
    vips: MappedArray<VipSlot>,
    control: Array<MapData, Control>,
    backends: MappedArray<Backend>,
    vip_stats: OwnedFd,
    backend_stats: OwnedFd,
    outcomes: OwnedFd,
    flow_events: OwnedFd,
    flows: OwnedFd,
    flow_table_size: u32,
    /// Possible CPUs: a per-CPU map's value holds one slot for each.
    cpus: usize,
}

impl Observer {
    pub(super) fn new(maps: ObservedMaps) -> Result<Self> {
        let data = |fd: OwnedFd, name: &str| {
            MapData::from_fd(fd).with_context(|| format!("opening map {name}"))
        };
        let flow_table_size = data(maps.flows.try_clone()?, names::FLOWS)?
            .info()
            .context("reading the flow table's size")?
            .max_entries();
        Ok(Self {
            vips: MappedArray::new(data(maps.vips, names::VIPS)?, names::VIPS)?,
            control: Array::try_from(aya::maps::Map::Array(data(maps.control, names::CONTROL)?))
                .context("the control map")?,
            backends: MappedArray::new(data(maps.backends, names::BACKENDS)?, names::BACKENDS)?,
            vip_stats: maps.vip_stats,
            backend_stats: maps.backend_stats,
            outcomes: maps.outcomes,
            flow_events: maps.flow_events,
            flows: maps.flows,
            flow_table_size,
            cpus: aya::util::nr_cpus().map_err(|(path, e)| anyhow!("reading {path}: {e}"))?,
        })
    }

    /// The counters of the xlb whose maps are pinned in `dir`.
    pub fn from_pins(dir: &Path) -> Result<Self> {
        Self::new(ObservedMaps::from_pins(dir)?)
    }

    pub fn flow_table_size(&self) -> u32 {
        self.flow_table_size
    }

    /// Every entry of a per-CPU array, summed over CPUs.
    fn per_cpu_sums<T: Copy + Default>(
        &self,
        fd: &OwnedFd,
        name: &str,
        add: impl Fn(&mut T, &T),
    ) -> Result<Vec<(u32, T)>> {
        let stride = size_of::<T>().next_multiple_of(8);
        let mut out = Vec::new();
        batch::for_each(fd.as_fd(), 4, stride * self.cpus, |key, value| {
            let index = u32::from_ne_bytes(key.try_into().unwrap_or_default());
            let mut sum = T::default();
            for cpu in value.chunks_exact(stride) {
                // SAFETY: T is a plain counter struct (u64 fields) and `cpu` holds at least
                // size_of::<T>() bytes; unaligned read.
                let one: T = unsafe { std::ptr::read_unaligned(cpu.as_ptr().cast()) };
                add(&mut sum, &one);
            }
            out.push((index, sum));
        })
        .with_context(|| format!("reading {name}"))?;
        Ok(out)
    }

    /// Every counter, summed over CPUs. A VIP's packets that reached a backend are counted on
    /// the backend only (the data plane saves an update per packet), so a VIP's total is its own
    /// counter (packets that reached none) plus those of the backends whose entries name it.
    pub fn stats(&self) -> Result<Stats> {
        let add_u64 = |a: &mut u64, b: &u64| *a += *b;
        let add_counters = |a: &mut Counters, b: &Counters| *a = a.plus(b);
        let mut stats = Stats::default();
        let events = self.per_cpu_sums(&self.flow_events, names::FLOW_EVENTS, add_u64)?;
        for event in FlowEvent::ALL {
            let n = events.get(event as usize).map_or(0, |(_, n)| *n);
            stats.flow_events.push((event, n));
        }
        let outcomes = self.per_cpu_sums(&self.outcomes, names::OUTCOMES, add_u64)?;
        for outcome in Outcome::ALL {
            let n = outcomes.get(outcome as usize).map_or(0, |(_, n)| *n);
            stats.outcomes.push((outcome, n));
        }
        let half = self
            .control
            .get(&0, 0)
            .context("reading the control entry")?
            .live_vip_half();
        let vip_counters = self.per_cpu_sums(&self.vip_stats, names::VIP_STATS, add_counters)?;
        for slot in self
            .vips
            .read((half * VIP_SLOTS) as usize, VIP_SLOTS as usize)
        {
            if slot.key.proto == 0 {
                continue;
            }
            stats.vips.push(VipStats {
                key: slot.key,
                id: slot.value.id,
                counters: vip_counters
                    .get(slot.value.id as usize)
                    .map(|(_, c)| *c)
                    .unwrap_or_default(),
            });
        }
        stats.vips.sort_by_key(|v| v.id);
        // Only ids in use have counters: a retiring backend's are folded into its VIP's and
        // zeroed.
        let by_key: std::collections::HashMap<VipKey, usize> = stats
            .vips
            .iter()
            .enumerate()
            .map(|(i, v)| (v.key, i))
            .collect();
        let backend_counters =
            self.per_cpu_sums(&self.backend_stats, names::BACKEND_STATS, add_counters)?;
        for (id, entry) in self
            .backends
            .read(0, self.backends.len())
            .into_iter()
            .enumerate()
        {
            let in_use = entry.flags & BACKEND_F_VALID != 0 || entry.vip.proto != 0;
            if !in_use {
                continue;
            }
            let counters = backend_counters
                .get(id)
                .map(|(_, c)| *c)
                .unwrap_or_default();
            if let Some(&i) = by_key.get(&entry.vip) {
                add_counters(&mut stats.vips[i].counters, &counters);
            }
            stats.backends.push(BackendStats {
                id: id as u32,
                entry: Some(entry),
                counters,
            });
        }
        Ok(stats)
    }

    /// Calls `each` for every flow the flow table remembers.
    pub fn for_each_flow(&self, mut each: impl FnMut(&FlowEntry)) -> Result<()> {
        batch::for_each(
            self.flows.as_fd(),
            size_of::<FlowKey>(),
            size_of::<FlowValue>(),
            |key, value| {
                // SAFETY: both are plain #[repr(C)] structs of exactly these sizes; unaligned
                // reads.
                let entry = unsafe {
                    FlowEntry {
                        key: std::ptr::read_unaligned(key.as_ptr().cast()),
                        value: std::ptr::read_unaligned(value.as_ptr().cast()),
                    }
                };
                each(&entry);
            },
        )
        .context("reading the flow table")
    }
}

//! Reading the per-CPU counters: summed over CPUs, keyed by what they count.

use anyhow::{Context as _, Result};
use aya::maps::{Array, MapData, PerCpuArray};
use lb_common::{
    BACKEND_F_VALID, Backend, Control, Counters, FlowEvent, Outcome, VIP_SLOTS, VipKey, VipSlot,
};

use super::MappedArray;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Indexed by [`Outcome`].
    pub outcomes: Vec<(Outcome, u64)>,
    /// Why flows were placed by Maglev rather than found in the flow table.
    pub flow_events: Vec<(FlowEvent, u64)>,
    pub vips: Vec<VipStats>,
    pub backends: Vec<BackendStats>,
}

impl Stats {
    pub fn outcome(&self, outcome: Outcome) -> u64 {
        self.outcomes
            .iter()
            .find(|(o, _)| *o == outcome)
            .map_or(0, |(_, n)| *n)
    }

    pub fn flow_event(&self, event: FlowEvent) -> u64 {
        self.flow_events
            .iter()
            .find(|(e, _)| *e == event)
            .map_or(0, |(_, n)| *n)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipStats {
    pub key: VipKey,
    pub id: u32,
    pub counters: Counters,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendStats {
    pub id: u32,
    /// Which real server of which VIP, while the id is in use.
    pub entry: Option<Backend>,
    pub counters: Counters,
}

/// The maps the counters live in (the data plane's own handles, or pinned ones).
pub(super) struct CounterMaps<'a> {
    pub vips: &'a MappedArray<VipSlot>,
    pub control: &'a Array<MapData, Control>,
    pub backends: &'a MappedArray<Backend>,
    pub vip_stats: &'a PerCpuArray<MapData, Counters>,
    pub backend_stats: &'a PerCpuArray<MapData, Counters>,
    pub outcomes: &'a PerCpuArray<MapData, u64>,
    pub flow_events: &'a PerCpuArray<MapData, u64>,
}

fn sum(values: &[Counters]) -> Counters {
    values.iter().fold(Counters::default(), |a, c| Counters {
        packets: a.packets + c.packets,
        bytes: a.bytes + c.bytes,
    })
}

/// Every counter, summed over CPUs. A VIP's packets that reached a backend are counted on the
/// backend only (the data plane saves an update per packet), so a VIP's total is its own
/// counter (packets that reached none) plus those of the backends whose entries name it.
pub(super) fn read(maps: CounterMaps<'_>) -> Result<Stats> {
    let CounterMaps {
        vips,
        control,
        backends,
        vip_stats,
        backend_stats,
        outcomes,
        flow_events,
    } = maps;
    let mut stats = Stats::default();
    for event in FlowEvent::ALL {
        let per_cpu = flow_events
            .get(&(event as u32), 0)
            .with_context(|| format!("reading counter {}", event.name()))?;
        stats.flow_events.push((event, per_cpu.iter().sum()));
    }
    for outcome in Outcome::ALL {
        let per_cpu = outcomes
            .get(&(outcome as u32), 0)
            .with_context(|| format!("reading counter {}", outcome.name()))?;
        stats.outcomes.push((outcome, per_cpu.iter().sum()));
    }
    let half = control
        .get(&0, 0)
        .context("reading the control entry")?
        .vip_half
        & 1;
    for slot in vips.read((half * VIP_SLOTS) as usize, VIP_SLOTS as usize) {
        if slot.key.proto == 0 {
            continue;
        }
        let per_cpu = vip_stats
            .get(&slot.value.id, 0)
            .with_context(|| format!("reading VIP counters {}", slot.value.id))?;
        stats.vips.push(VipStats {
            key: slot.key,
            id: slot.value.id,
            counters: sum(&per_cpu),
        });
    }
    stats.vips.sort_by_key(|v| v.id);
    // Only ids in use have counters: a retiring backend's are folded into its VIP's and zeroed.
    let by_key: std::collections::HashMap<VipKey, usize> = stats
        .vips
        .iter()
        .enumerate()
        .map(|(i, v)| (v.key, i))
        .collect();
    for (id, entry) in backends.read(0, backends.len()).into_iter().enumerate() {
        let in_use = entry.flags & BACKEND_F_VALID != 0 || entry.vip.proto != 0;
        if !in_use {
            continue;
        }
        let id = id as u32;
        let per_cpu = backend_stats
            .get(&id, 0)
            .with_context(|| format!("reading backend counters {id}"))?;
        let counters = sum(&per_cpu);
        if let Some(&i) = by_key.get(&entry.vip) {
            stats.vips[i].counters.packets += counters.packets;
            stats.vips[i].counters.bytes += counters.bytes;
        }
        stats.backends.push(BackendStats {
            id,
            entry: Some(entry),
            counters,
        });
    }
    Ok(stats)
}

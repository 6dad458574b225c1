//! The per-CPU counters, summed over CPUs, keyed by what they count (read by
//! [`super::Observer`]).

use lb_common::{Backend, Counters, FlowEvent, Outcome, VipKey};

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

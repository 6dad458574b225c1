//! What the VRRP thread tells the daemon: every instance's state and counters, replaced whole
//! in a watch channel after every change. Sending never waits for a reader, so the real-time
//! thread never blocks on anyone's status request (it used to write a file once a second, and
//! a slow disk stopped its adverts).

use std::collections::BTreeMap;

use crate::status::VrrpStatus;

/// Every instance the VRRP thread runs, and the packets it dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VrrpReport {
    pub instances: Vec<VrrpStatus>,
    /// Every VRRP packet dropped, by reason (those an instance got too).
    pub dropped: BTreeMap<String, u64>,
    /// Every tracked `vrrp_script`: whether it is good.
    pub scripts: BTreeMap<String, bool>,
}

/// The words an operator reads for why an instance changed state.
pub fn reason_words(reason: lb_vrrp::TransitionReason) -> &'static str {
    use lb_vrrp::TransitionReason as R;
    match reason {
        R::Started => "started",
        R::AddressOwner => "priority 255: the address owner",
        R::MasterDown => "no advert from a master within Master_Down_Interval",
        R::HigherPriority => "heard a master of higher priority",
        R::HigherAddress => "heard a master of equal priority and higher address",
        R::Fault => "a tracked interface or script failed",
        R::FaultCleared => "tracked interfaces and scripts are fine again",
        R::SyncGroup => "its sync group moved",
        R::Shutdown => "stopping",
        R::Resumed => "resumed: the data plane's claim was still live",
    }
}

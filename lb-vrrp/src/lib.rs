//! VRRP without I/O: version 2 (RFC 3768) and version 3 (RFC 5798), byte-compatible with
//! keepalived 2.2, so that an xlb node can take keepalived's place next to keepalived peers.
//!
//! * [`packet`]: adverts on the wire ([`decode`], [`Advert::encode`]), the IPv4 header
//!   keepalived writes, gratuitous ARP and unsolicited Neighbour Advertisement frames.
//! * [`Instance`]: one virtual router's state machine on a caller-supplied clock. Inputs are
//!   received adverts, timer expiries, fault and priority changes; outputs are [`Action`]s.
//! * [`SyncGroup`]: instances that change state together.
//!
//! Nothing here opens a socket, reads a clock or sleeps: the caller owns sockets, netlink and
//! time, which keeps every behaviour testable on a virtual clock.
//!
//! ```
//! use std::time::Duration;
//! use lb_vrrp::{Action, Instance, InstanceConfig, State};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let me = "192.0.2.10".parse()?;
//! let vip = "192.0.2.100".parse()?;
//! let mut vr = Instance::new(InstanceConfig::new(51, 150, me, vec![vip]))?;
//! vr.start(Duration::ZERO);
//! assert_eq!(vr.state(), State::Backup);
//! // Nobody advertises: after Master_Down_Interval we take over.
//! let at = vr.master_down_interval();
//! assert_eq!(vr.next_deadline(), Some(at));
//! let actions = vr.on_timer(at);
//! assert_eq!(vr.state(), State::Master);
//! assert_eq!(actions[0], Action::SendAdvert { priority: 150 });
//! // The caller sends it to 224.0.0.18 from 192.0.2.10.
//! let adverts = vr.encode_adverts(150)?;
//! assert_eq!(adverts[0].dst, "224.0.0.18".parse::<std::net::IpAddr>()?);
//! # Ok(())
//! # }
//! ```

pub mod instance;
pub mod packet;
pub mod sync;

pub use instance::{
    Action, AddressCheck, AnnounceConfig, ConfigError, InitialState, Instance, InstanceConfig,
    IntervalMismatch, OutgoingAdvert, State, TransitionReason,
};
pub use packet::{Advert, Auth, DropReason, EncodeError, RxMeta, Version, decode};
pub use sync::{GroupAction, SyncGroup};

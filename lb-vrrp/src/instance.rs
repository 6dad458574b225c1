//! One virtual router: the state machine of RFC 5798 section 6.4 (RFC 3768 section 6.4 for
//! version 2) with keepalived 2.2's choices where the RFCs leave room or keepalived departs
//! from them.
//!
//! Sans-IO: every input carries `now`, a [`Duration`] since an arbitrary epoch chosen by the
//! caller (a monotonic clock in production, a counter in tests), and every output is an
//! [`Action`] for the caller to carry out in order. The caller also calls [`Instance::on_timer`]
//! once [`Instance::next_deadline`] has passed.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::packet::{self, Advert, Auth, DropReason, EncodeError, RxMeta, Version};

/// keepalived's `state` keyword: where an instance wants to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InitialState {
    /// Start as backup and wait a full Master_Down_Interval for a master.
    Backup,
    /// Take over at once, but only with priority 255 (the address owner). keepalived 2.2
    /// treats `state MASTER` with a lower priority as `BACKUP` for timing, and only uses it to
    /// switch off `nopreempt` and `preempt_delay`.
    Master,
}

/// What a version 2 router does with an advert whose interval differs from its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntervalMismatch {
    /// Drop it (RFC 3768 section 7.1 and keepalived), so that two routers configured
    /// differently cannot both settle as master without noticing.
    Drop,
    /// Process it anyway.
    Accept,
}

/// When to check the address list of a received advert against our virtual addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressCheck {
    /// Every advert (keepalived's default; a mismatch drops the advert).
    Always,
    /// Only adverts from a source other than the last accepted master (keepalived's
    /// `skip_check_adv_addr`), saving the comparison on the steady stream.
    SkipSameMaster,
    /// Never.
    Never,
}

/// Gratuitous ARP / unsolicited NA policy, keepalived's `garp_*` settings.
///
/// Each "announcement" is one [`Action::AnnounceAddresses`]; pacing the individual frames
/// (`vrrp_garp_interval`) is left to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnnounceConfig {
    /// Rounds sent on becoming master (`garp_master_repeat`, default 5).
    pub master_repeat: u32,
    /// Delay before a second burst after becoming master (`garp_master_delay`, default 5 s);
    /// zero sends none.
    pub master_delay: Duration,
    /// Period of refresh bursts while master (`garp_master_refresh`, default off); zero is off.
    pub master_refresh: Duration,
    /// Rounds per refresh (`garp_master_refresh_repeat`, default 1).
    pub master_refresh_repeat: u32,
    /// Rounds sent when a master hears a lower-priority advert (`garp_lower_prio_repeat`,
    /// defaults to `master_repeat` in keepalived).
    pub lower_prio_repeat: u32,
    /// Delay before a second such burst (`garp_lower_prio_delay`, defaults to `master_delay`).
    pub lower_prio_delay: Duration,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        Self {
            master_repeat: 5,
            master_delay: Duration::from_secs(5),
            master_refresh: Duration::ZERO,
            master_refresh_repeat: 1,
            lower_prio_repeat: 5,
            lower_prio_delay: Duration::from_secs(5),
        }
    }
}

/// Configuration of one virtual router, the subset of keepalived's `vrrp_instance` that
/// affects the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// Virtual router ID, 1..=255.
    pub vrid: u8,
    /// Configured priority, 1..=255; 255 means we own the virtual addresses.
    pub priority: u8,
    /// Protocol version. [`InstanceConfig::new`] picks 2 for IPv4 (keepalived's default)
    /// and 3 for IPv6.
    pub version: Version,
    /// Advertisement interval: whole seconds 1..=255 for version 2, a multiple of 10 ms up
    /// to 40.95 s for version 3.
    pub advert_int: Duration,
    /// Our source address for adverts, also the tie-breaker between equal priorities
    /// (greater wins). Its family is the instance's family. For IPv6 this is normally the
    /// interface's link-local address.
    pub primary_address: IpAddr,
    /// Addresses advertised and owned while master, all of the instance's family
    /// (keepalived's `virtual_ipaddress`).
    pub virtual_addresses: Vec<IpAddr>,
    /// Unicast peers; empty means multicast to 224.0.0.18 / ff02::12.
    pub unicast_peers: Vec<IpAddr>,
    /// Version 2 authentication (`auth_type PASS` + `auth_pass`); must be [`Auth::None`]
    /// for version 3.
    pub auth: Auth,
    /// keepalived's `state`; `None` derives it from the priority, as keepalived does.
    pub initial_state: Option<InitialState>,
    /// Never take over from a live master of lower priority.
    pub nopreempt: bool,
    /// How long a backup of higher priority keeps accepting a lower-priority master, counted
    /// from the first such advert (keepalived's `preempt_delay`); zero is off.
    pub preempt_delay: Duration,
    /// Adverts missed before the master is declared down (`down_timer_adverts`, RFC: 3).
    pub down_timer_adverts: u32,
    /// Version 2 interval mismatch policy.
    pub interval_mismatch: IntervalMismatch,
    /// Address list policy.
    pub address_check: AddressCheck,
    /// Drop unicast adverts from sources that are not peers. keepalived only does this with
    /// `check_unicast_src`; on here by default because an advert from a stranger can take
    /// the virtual addresses away.
    pub check_unicast_src: bool,
    /// A master that hears a lower priority does not answer with an advert
    /// (`lower_prio_no_advert`). Off by default: keepalived answers at once so that a
    /// lower-priority router that became master through a lost advert steps down immediately.
    pub lower_prio_no_advert: bool,
    /// A master that hears a higher priority sends one more advert before stepping down
    /// (`higher_prio_send_advert`), so that a third router learns the change at once.
    pub higher_prio_send_advert: bool,
    /// Gratuitous ARP / NA policy.
    pub announce: AnnounceConfig,
}

impl InstanceConfig {
    /// A configuration with keepalived's defaults: 1 s interval, version 2 for IPv4 and 3 for
    /// IPv6, multicast, no authentication, preemption on.
    pub fn new(
        vrid: u8,
        priority: u8,
        primary_address: IpAddr,
        virtual_addresses: Vec<IpAddr>,
    ) -> Self {
        Self {
            vrid,
            priority,
            version: if primary_address.is_ipv6() {
                Version::V3
            } else {
                Version::V2
            },
            advert_int: Duration::from_secs(1),
            primary_address,
            virtual_addresses,
            unicast_peers: Vec::new(),
            auth: Auth::None,
            initial_state: None,
            nopreempt: false,
            preempt_delay: Duration::ZERO,
            down_timer_adverts: 3,
            interval_mismatch: IntervalMismatch::Drop,
            address_check: AddressCheck::Always,
            check_unicast_src: true,
            lower_prio_no_advert: false,
            higher_prio_send_advert: false,
            announce: AnnounceConfig::default(),
        }
    }

    /// Whether the instance runs over IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.primary_address.is_ipv6()
    }

    /// Whether adverts go to unicast peers rather than the multicast group.
    pub fn is_unicast(&self) -> bool {
        !self.unicast_peers.is_empty()
    }

    /// The advertisement interval in wire units (seconds for v2, centiseconds for v3).
    fn advert_int_wire(&self) -> u16 {
        match self.version {
            Version::V2 => u16::try_from(self.advert_int.as_secs()).unwrap_or(u16::MAX),
            Version::V3 => u16::try_from(self.advert_int.as_millis() / 10).unwrap_or(u16::MAX),
        }
    }

    /// Checks everything the state machine and the encoder rely on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vrid == 0 {
            return Err(ConfigError::VridZero);
        }
        if self.priority == 0 {
            return Err(ConfigError::PriorityZero);
        }
        let ipv6 = self.is_ipv6();
        match self.version {
            Version::V2 => {
                if ipv6 {
                    return Err(ConfigError::V2OverIpv6);
                }
                let whole = self.advert_int.subsec_nanos() == 0;
                if !whole || !(1..=255).contains(&self.advert_int.as_secs()) {
                    return Err(ConfigError::AdvertIntervalV2(self.advert_int));
                }
            }
            Version::V3 => {
                let whole_cs = self.advert_int.as_nanos().is_multiple_of(10_000_000);
                let cs = self.advert_int.as_millis() / 10;
                if !whole_cs || !(1..=u128::from(packet::MAX_V3_INTERVAL_CS)).contains(&cs) {
                    return Err(ConfigError::AdvertIntervalV3(self.advert_int));
                }
                if self.auth != Auth::None {
                    return Err(ConfigError::AuthRequiresV2);
                }
                // keepalived refuses a VRRPv3 instance without addresses; v2 only warns.
                if self.virtual_addresses.is_empty() {
                    return Err(ConfigError::NoVirtualAddresses);
                }
            }
        }
        if self.virtual_addresses.len() > 255 {
            return Err(ConfigError::TooManyVirtualAddresses);
        }
        if let Some(&addr) = self.virtual_addresses.iter().find(|a| a.is_ipv6() != ipv6) {
            return Err(ConfigError::VirtualAddressFamily(addr));
        }
        if let Some(&addr) = self.unicast_peers.iter().find(|a| a.is_ipv6() != ipv6) {
            return Err(ConfigError::PeerFamily(addr));
        }
        if !(1..=100).contains(&self.down_timer_adverts) {
            return Err(ConfigError::DownTimerAdverts(self.down_timer_adverts));
        }
        Ok(())
    }
}

/// A configuration the state machine cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// VRID 0 is not a virtual router.
    #[error("virtual_router_id must be 1..=255")]
    VridZero,
    /// Priority 0 is reserved for a master stepping down.
    #[error("priority must be 1..=255")]
    PriorityZero,
    /// Version 2 interval is not a whole number of seconds in 1..=255.
    #[error("VRRPv2 advert_int must be whole seconds 1..=255, got {0:?}")]
    AdvertIntervalV2(Duration),
    /// Version 3 interval is not a multiple of 10 ms in 10 ms..=40.95 s.
    #[error("VRRPv3 advert_int must be a multiple of 10 ms up to 40.95 s, got {0:?}")]
    AdvertIntervalV3(Duration),
    /// VRRPv2 is IPv4 only.
    #[error("VRRPv2 cannot run over IPv6")]
    V2OverIpv6,
    /// Authentication exists only in version 2.
    #[error("authentication requires VRRPv2")]
    AuthRequiresV2,
    /// A version 3 instance needs at least one virtual address.
    #[error("VRRPv3 needs at least one virtual address")]
    NoVirtualAddresses,
    /// The count field is 8 bits.
    #[error("more than 255 virtual addresses")]
    TooManyVirtualAddresses,
    /// A virtual address is not of the instance's family.
    #[error("virtual address {0} is not of the instance's address family")]
    VirtualAddressFamily(IpAddr),
    /// A unicast peer is not of the instance's family.
    #[error("unicast peer {0} is not of the instance's address family")]
    PeerFamily(IpAddr),
    /// keepalived accepts 1..=100.
    #[error("down_timer_adverts must be 1..=100, got {0}")]
    DownTimerAdverts(u32),
}

/// Protocol state (RFC 5798 section 6.4, plus keepalived's FAULT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or shut down.
    Init,
    /// Listening for the master.
    Backup,
    /// Owning the virtual addresses and advertising.
    Master,
    /// A tracked interface or script says we must not serve: silent, ignoring adverts.
    Fault,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        })
    }
}

/// Why a state change happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitionReason {
    /// [`Instance::start`].
    Started,
    /// Priority 255 with initial state master: no need to wait for anyone.
    AddressOwner,
    /// No acceptable advert within Master_Down_Interval (or the skew time after a priority 0
    /// advert).
    MasterDown,
    /// A master heard a higher priority.
    HigherPriority,
    /// A master heard its own priority from a greater address.
    HigherAddress,
    /// [`Instance::set_fault`] with `true`.
    Fault,
    /// [`Instance::set_fault`] with `false`.
    FaultCleared,
    /// A sync group moved this member along with another.
    SyncGroup,
    /// [`Instance::shutdown`].
    Shutdown,
    /// [`Instance::resume_master`]: a restarted control plane picking up where the previous
    /// one, still master, left off.
    Resumed,
}

/// Something the caller must do, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send an advert with this priority to the multicast group or every unicast peer
    /// ([`Instance::encode_adverts`] builds them).
    SendAdvert {
        /// Priority to advertise: the effective priority, or 0 when stepping down.
        priority: u8,
    },
    /// Install the virtual addresses (and start answering for them).
    AddAddresses,
    /// Remove the virtual addresses.
    RemoveAddresses,
    /// Send `repeat` rounds of gratuitous ARP (IPv4) or unsolicited NA (IPv6), each round one
    /// frame per virtual address ([`crate::packet::gratuitous_arp`],
    /// [`crate::packet::unsolicited_neighbour_advert`]).
    AnnounceAddresses {
        /// Number of rounds.
        repeat: u32,
    },
    /// The state changed; for notify scripts, logs and metrics.
    StateChanged {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: TransitionReason,
    },
    /// The effective priority changed (tracking weights, or an address owner conflict).
    PriorityChanged {
        /// Previous effective priority.
        from: u8,
        /// New effective priority.
        to: u8,
    },
}

/// An encoded advert and where to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingAdvert {
    /// Destination: the multicast group or one unicast peer.
    pub dst: IpAddr,
    /// The VRRP message (IP payload), sent from the instance's primary address.
    pub payload: Vec<u8>,
}

/// One VRRP virtual router.
#[derive(Debug, Clone)]
pub struct Instance {
    cfg: InstanceConfig,
    state: State,
    /// Own fault level as last set by [`Instance::set_fault`]; a sync group can also hold a
    /// member in FAULT without it.
    fault: bool,
    /// Priority 255 with initial state master, after keepalived's sync group adjustment.
    start_as_master: bool,
    base_priority: u8,
    priority_delta: i32,
    effective_priority: u8,
    /// Master_Adver_Interval: ours while master, learned from the master's adverts (v3 only)
    /// while backup.
    master_adver_int: Duration,
    /// Master advert timer while MASTER, master down timer while BACKUP.
    deadline: Option<Duration>,
    /// Until when a lower-priority master is still tolerated under `preempt_delay`.
    preempt_until: Option<Duration>,
    /// The master down timer expired but a sync group held us back (keepalived's
    /// `wantstate == MASTER` while in BACKUP).
    held_for_master: bool,
    master_address: Option<IpAddr>,
    delayed_announcements: Vec<(Duration, u32)>,
    refresh_at: Option<Duration>,
}

impl Instance {
    /// Checks and normalises `cfg` the way keepalived does, logging what it changes:
    /// `nopreempt` is cleared for priority 255 or initial state master, `preempt_delay` for
    /// initial state master or with `nopreempt`.
    pub fn new(mut cfg: InstanceConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let initial = cfg.initial_state.unwrap_or(if cfg.priority == 255 {
            InitialState::Master
        } else {
            InitialState::Backup
        });
        if cfg.nopreempt && (cfg.priority == 255 || initial == InitialState::Master) {
            log::warn!(
                "VRID {}: nopreempt needs state BACKUP and priority < 255; clearing",
                cfg.vrid
            );
            cfg.nopreempt = false;
        }
        if !cfg.preempt_delay.is_zero() && (initial == InitialState::Master || cfg.nopreempt) {
            log::warn!(
                "VRID {}: preempt_delay is incompatible with state MASTER or nopreempt; clearing",
                cfg.vrid
            );
            cfg.preempt_delay = Duration::ZERO;
        }
        let priority = cfg.priority;
        let advert_int = cfg.advert_int;
        Ok(Self {
            start_as_master: initial == InitialState::Master && priority == 255,
            cfg,
            state: State::Init,
            fault: false,
            base_priority: priority,
            priority_delta: 0,
            effective_priority: priority,
            master_adver_int: advert_int,
            deadline: None,
            preempt_until: None,
            held_for_master: false,
            master_address: None,
            delayed_announcements: Vec::new(),
            refresh_at: None,
        })
    }

    /// The (normalised) configuration.
    pub fn config(&self) -> &InstanceConfig {
        &self.cfg
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether [`Instance::set_fault`] last said `true`.
    pub fn is_faulty(&self) -> bool {
        self.fault
    }

    /// Priority in adverts: the base priority plus the tracking delta, clamped to 1..=254,
    /// except that an address owner stays at 255.
    pub fn effective_priority(&self) -> u8 {
        self.effective_priority
    }

    /// Configured priority, unless lowered to 254 by an address owner conflict.
    pub fn base_priority(&self) -> u8 {
        self.base_priority
    }

    /// Master_Adver_Interval: our interval, or (version 3, while backup) the master's.
    pub fn master_advert_interval(&self) -> Duration {
        self.master_adver_int
    }

    /// Skew_Time for our effective priority.
    ///
    /// Version 3 (RFC 5798): `(256 - priority) * Master_Adver_Interval / 256`. Version 2
    /// (RFC 3768 and keepalived): `(256 - priority) / 256` seconds, independent of the
    /// interval. Computed in microseconds with keepalived's integer rounding so that timers
    /// match it to the microsecond.
    pub fn skew_time(&self) -> Duration {
        let weight = 256 - u64::from(self.effective_priority);
        let micros = match self.cfg.version {
            Version::V2 => weight * 1_000_000 / 256,
            Version::V3 => {
                // Whole centiseconds, as keepalived keeps the interval; at most 4095 (12 bits),
                // so the cast is lossless.
                let cs = (self.master_adver_int.as_millis() / 10) as u64;
                weight * cs * 625 / 16
            }
        };
        Duration::from_micros(micros)
    }

    /// Master_Down_Interval: `down_timer_adverts` (3) times Master_Adver_Interval plus
    /// Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_int * self.cfg.down_timer_adverts + self.skew_time()
    }

    /// Source address of the master we last heard, if any.
    pub fn master_address(&self) -> Option<IpAddr> {
        self.master_address
    }

    /// When [`Instance::on_timer`] must next be called; `None` while nothing is scheduled
    /// (INIT, FAULT).
    pub fn next_deadline(&self) -> Option<Duration> {
        let delayed = self.delayed_announcements.iter().map(|&(at, _)| at).min();
        match (self.deadline, delayed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The advert this instance sends with `priority`.
    pub fn advert(&self, priority: u8) -> Advert {
        Advert {
            version: self.cfg.version,
            vrid: self.cfg.vrid,
            priority,
            advert_int: self.cfg.advert_int_wire(),
            auth: self.cfg.auth,
            addresses: self.cfg.virtual_addresses.clone(),
        }
    }

    /// Where adverts go: the multicast group, or every unicast peer.
    pub fn destinations(&self) -> Vec<IpAddr> {
        if self.cfg.is_unicast() {
            self.cfg.unicast_peers.clone()
        } else {
            vec![packet::multicast_group(self.cfg.is_ipv6())]
        }
    }

    /// Encodes [`Action::SendAdvert`]: one VRRP message per destination, from the primary
    /// address. (Version 3 checksums cover the destination, so unicast peers each get their
    /// own bytes.) Cannot fail for a configuration that passed validation.
    pub fn encode_adverts(&self, priority: u8) -> Result<Vec<OutgoingAdvert>, EncodeError> {
        let advert = self.advert(priority);
        self.destinations()
            .into_iter()
            .map(|dst| {
                Ok(OutgoingAdvert {
                    dst,
                    payload: advert.encode(self.cfg.primary_address, dst)?,
                })
            })
            .collect()
    }

    /// Starts the instance: INIT to BACKUP, to MASTER at once for an address owner whose
    /// initial state is master, or to FAULT if a fault is already set. Does nothing unless
    /// in INIT.
    pub fn start(&mut self, now: Duration) -> Vec<Action> {
        self.start_gated(now, true)
    }

    /// Starts straight as MASTER, without waiting for Master_Down_Interval: for a control plane
    /// restarted while the data plane still holds a live claim from its predecessor, which was
    /// master a moment ago. Peers saw adverts until then, so they are BACKUP; an advert at once
    /// keeps them there. A peer that did take over (or has a higher priority) is heard and
    /// handled as any master would. Does nothing unless in INIT, or when faulty.
    pub fn resume_master(&mut self, now: Duration) -> Vec<Action> {
        if self.state != State::Init || self.fault {
            return self.start(now);
        }
        self.reset_backup_view();
        let mut actions = Vec::new();
        self.become_master(now, State::Init, TransitionReason::Resumed, &mut actions);
        actions
    }

    /// Checks a decoded advert against the configuration: version, VRID, authentication,
    /// version 2 interval, multicast/unicast mode, address list and unicast peer.
    pub fn check(&self, meta: &RxMeta, advert: &Advert) -> Result<(), DropReason> {
        let cfg = &self.cfg;
        if meta.src.is_ipv6() != cfg.is_ipv6() {
            return Err(DropReason::FamilyMismatch);
        }
        if meta.src == cfg.primary_address {
            return Err(DropReason::OwnAddress);
        }
        if advert.version != cfg.version {
            return Err(DropReason::VersionMismatch);
        }
        if advert.vrid != cfg.vrid {
            return Err(DropReason::WrongVrid);
        }
        if cfg.version == Version::V2 {
            match (&cfg.auth, &advert.auth) {
                (Auth::None, Auth::None) => {}
                (Auth::SimplePassword(ours), Auth::SimplePassword(theirs)) => {
                    if !constant_time_eq(ours, theirs) {
                        return Err(DropReason::AuthMismatch);
                    }
                }
                _ => return Err(DropReason::AuthTypeMismatch),
            }
            if cfg.interval_mismatch == IntervalMismatch::Drop
                && advert.advert_int != cfg.advert_int_wire()
            {
                return Err(DropReason::AdvertIntervalMismatch);
            }
        }
        if meta.dst.is_multicast() == cfg.is_unicast() {
            return Err(DropReason::MulticastUnicastMismatch);
        }
        let check_addresses = match cfg.address_check {
            AddressCheck::Always => true,
            AddressCheck::SkipSameMaster => {
                self.state != State::Backup || self.master_address != Some(meta.src)
            }
            AddressCheck::Never => false,
        };
        if check_addresses
            && (advert.addresses.len() != cfg.virtual_addresses.len()
                || !cfg
                    .virtual_addresses
                    .iter()
                    .all(|vip| advert.addresses.contains(vip)))
        {
            return Err(DropReason::AddressListMismatch);
        }
        if cfg.is_unicast() && cfg.check_unicast_src && !cfg.unicast_peers.contains(&meta.src) {
            return Err(DropReason::NotAPeer);
        }
        Ok(())
    }

    /// Decodes and handles a received VRRP message; see [`Instance::on_advert`].
    pub fn on_packet(
        &mut self,
        now: Duration,
        msg: &[u8],
        meta: &RxMeta,
    ) -> Result<Vec<Action>, DropReason> {
        let advert = packet::decode(msg, meta)?;
        self.on_advert(now, meta, &advert)
    }

    /// Handles a decoded advert received as described by `meta`.
    ///
    /// Adverts are ignored (`Ok` with no actions) in INIT and FAULT, as keepalived does;
    /// otherwise they are checked with [`Instance::check`] first.
    pub fn on_advert(
        &mut self,
        now: Duration,
        meta: &RxMeta,
        advert: &Advert,
    ) -> Result<Vec<Action>, DropReason> {
        match self.state {
            State::Init | State::Fault => return Ok(Vec::new()),
            State::Backup | State::Master => {}
        }
        self.check(meta, advert)?;
        let mut actions = Vec::new();
        if self.state == State::Backup {
            self.backup_rx(now, meta.src, advert);
        } else {
            self.master_rx(now, meta.src, advert, &mut actions);
        }
        Ok(actions)
    }

    /// Runs the timers: in BACKUP a master down timeout takes over, in MASTER the next
    /// advert goes out; delayed address announcements are sent. Call at or after
    /// [`Instance::next_deadline`]; calling early does nothing.
    pub fn on_timer(&mut self, now: Duration) -> Vec<Action> {
        self.on_timer_gated(now, true)
    }

    /// Sets or clears the fault condition (a tracked interface is down, a weight-0 track
    /// script fails). Entering FAULT from MASTER sends a priority 0 advert and removes the
    /// addresses; leaving it goes to BACKUP (MASTER at once for an address owner whose
    /// initial state is master). Level-triggered: repeating the same value does nothing.
    pub fn set_fault(&mut self, now: Duration, fault: bool) -> Vec<Action> {
        self.set_fault_gated(now, fault, true)
    }

    /// Sets the sum of tracking weights added to the base priority (vrrp_script,
    /// track_interface, ...). The effective priority is clamped to 1..=254; an address owner
    /// stays at 255, as in keepalived.
    ///
    /// A change does not send an advert; a higher-priority backup takes over through its
    /// master down timer once it sees our lower priority, and a backup's own running timer
    /// moves by the change in its skew time.
    pub fn set_priority_delta(&mut self, now: Duration, delta: i32) -> Vec<Action> {
        self.priority_delta = delta;
        self.update_effective_priority(now)
    }

    /// Stops the instance: a master sends a priority 0 advert (so a backup takes over after
    /// its skew time rather than Master_Down_Interval) and removes its addresses. Ends in INIT;
    /// [`Instance::start`] may be called again.
    pub fn shutdown(&mut self, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        match self.state {
            State::Init => {}
            State::Master => self.leave_master(
                now,
                State::Init,
                TransitionReason::Shutdown,
                true,
                &mut actions,
            ),
            from @ (State::Backup | State::Fault) => {
                self.state = State::Init;
                actions.push(Action::StateChanged {
                    from,
                    to: State::Init,
                    reason: TransitionReason::Shutdown,
                });
            }
        }
        self.deadline = None;
        self.held_for_master = false;
        self.preempt_until = None;
        actions
    }

    // ---- Internals shared with the sync group ----

    /// keepalived's `wantstate == MASTER`: master, or held in BACKUP by a sync group.
    pub(crate) fn wants_master(&self) -> bool {
        self.state == State::Master || self.held_for_master
    }

    pub(crate) fn starts_as_master(&self) -> bool {
        self.start_as_master
    }

    /// A sync group whose members do not all own their addresses starts them all as backup.
    pub(crate) fn demote_initial_master(&mut self) {
        self.start_as_master = false;
    }

    pub(crate) fn start_gated(&mut self, now: Duration, allow_master: bool) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.state != State::Init {
            return actions;
        }
        self.reset_backup_view();
        if self.fault {
            self.state = State::Fault;
            actions.push(Action::StateChanged {
                from: State::Init,
                to: State::Fault,
                reason: TransitionReason::Fault,
            });
        } else if self.start_as_master && allow_master {
            self.become_master(
                now,
                State::Init,
                TransitionReason::AddressOwner,
                &mut actions,
            );
        } else {
            self.enter_backup(now, State::Init, TransitionReason::Started, &mut actions);
        }
        actions
    }

    /// Starts straight into FAULT because another sync group member is faulty.
    pub(crate) fn start_in_group_fault(&mut self) -> Vec<Action> {
        if self.state != State::Init {
            return Vec::new();
        }
        self.reset_backup_view();
        self.state = State::Fault;
        vec![Action::StateChanged {
            from: State::Init,
            to: State::Fault,
            reason: TransitionReason::SyncGroup,
        }]
    }

    pub(crate) fn on_timer_gated(&mut self, now: Duration, allow_master: bool) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(deadline) = self.deadline.filter(|&d| d <= now) {
            match self.state {
                State::Backup => {
                    if allow_master {
                        self.become_master(
                            now,
                            State::Backup,
                            TransitionReason::MasterDown,
                            &mut actions,
                        );
                    } else {
                        // Wait for the rest of the group, re-arming as keepalived does.
                        self.held_for_master = true;
                        self.deadline = Some(now + self.master_down_interval());
                    }
                }
                State::Master => {
                    actions.push(Action::SendAdvert {
                        priority: self.effective_priority,
                    });
                    // On the advert grid, not "now + interval": a late wake-up must not push
                    // every later advert back (drift). After a stall longer than an interval,
                    // start a new grid rather than send a burst.
                    let next = deadline + self.cfg.advert_int;
                    self.deadline = Some(if next > now {
                        next
                    } else {
                        now + self.cfg.advert_int
                    });
                    if let Some(at) = self.refresh_at
                        && at <= now
                    {
                        actions.push(Action::AnnounceAddresses {
                            repeat: self.cfg.announce.master_refresh_repeat,
                        });
                        self.refresh_at = Some(now + self.cfg.announce.master_refresh);
                    }
                }
                State::Init | State::Fault => {
                    log::debug!(
                        "VRID {}: stale timer at {deadline:?} in {}",
                        self.cfg.vrid,
                        self.state
                    );
                    self.deadline = None;
                }
            }
        }

        if self.state == State::Master {
            let mut due: Vec<(Duration, u32)> = Vec::new();
            self.delayed_announcements.retain(|&entry| {
                if entry.0 <= now {
                    due.push(entry);
                    false
                } else {
                    true
                }
            });
            due.sort_unstable();
            actions.extend(
                due.into_iter()
                    .map(|(_, repeat)| Action::AnnounceAddresses { repeat }),
            );
        } else {
            self.delayed_announcements.clear();
        }
        actions
    }

    pub(crate) fn set_fault_gated(
        &mut self,
        now: Duration,
        fault: bool,
        allow_master: bool,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if fault == self.fault {
            return actions;
        }
        self.fault = fault;
        if fault {
            match self.state {
                State::Master => self.leave_master(
                    now,
                    State::Fault,
                    TransitionReason::Fault,
                    true,
                    &mut actions,
                ),
                State::Backup => {
                    self.enter_fault(State::Backup, TransitionReason::Fault, &mut actions)
                }
                State::Init | State::Fault => {}
            }
        } else if self.state == State::Fault {
            self.leave_fault(
                now,
                allow_master,
                TransitionReason::FaultCleared,
                &mut actions,
            );
        }
        actions
    }

    /// Records a change of the own fault level without moving (the sync group decides).
    pub(crate) fn set_fault_flag(&mut self, fault: bool) {
        self.fault = fault;
    }

    pub(crate) fn force_master(&mut self, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.state == State::Backup {
            self.become_master(
                now,
                State::Backup,
                TransitionReason::SyncGroup,
                &mut actions,
            );
        }
        actions
    }

    pub(crate) fn force_backup(&mut self, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        match self.state {
            State::Master => self.leave_master(
                now,
                State::Backup,
                TransitionReason::SyncGroup,
                false,
                &mut actions,
            ),
            State::Fault => self.leave_fault(now, false, TransitionReason::SyncGroup, &mut actions),
            State::Init | State::Backup => {}
        }
        actions
    }

    pub(crate) fn force_fault(&mut self, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        match self.state {
            // keepalived sends priority 0 here too, so the peer group takes over quickly.
            State::Master => self.leave_master(
                now,
                State::Fault,
                TransitionReason::SyncGroup,
                true,
                &mut actions,
            ),
            State::Backup => {
                self.enter_fault(State::Backup, TransitionReason::SyncGroup, &mut actions)
            }
            State::Init | State::Fault => {}
        }
        actions
    }

    // ---- Transitions ----

    /// Forgets what was learned from a previous master.
    fn reset_backup_view(&mut self) {
        self.master_adver_int = self.cfg.advert_int;
        self.preempt_until = None;
        self.held_for_master = false;
        self.master_address = None;
    }

    fn enter_backup(
        &mut self,
        now: Duration,
        from: State,
        reason: TransitionReason,
        actions: &mut Vec<Action>,
    ) {
        self.state = State::Backup;
        self.held_for_master = false;
        self.deadline = Some(now + self.master_down_interval());
        actions.push(Action::StateChanged {
            from,
            to: State::Backup,
            reason,
        });
    }

    fn enter_fault(&mut self, from: State, reason: TransitionReason, actions: &mut Vec<Action>) {
        self.state = State::Fault;
        self.deadline = None;
        self.held_for_master = false;
        actions.push(Action::StateChanged {
            from,
            to: State::Fault,
            reason,
        });
    }

    fn leave_fault(
        &mut self,
        now: Duration,
        allow_master: bool,
        reason: TransitionReason,
        actions: &mut Vec<Action>,
    ) {
        self.reset_backup_view();
        if self.start_as_master && allow_master {
            self.become_master(now, State::Fault, TransitionReason::AddressOwner, actions);
        } else {
            self.enter_backup(now, State::Fault, reason, actions);
        }
    }

    /// keepalived's order: the advert first, so that the old master drops the addresses
    /// before our gratuitous ARPs arrive; then the addresses, the announcements, the notify.
    fn become_master(
        &mut self,
        now: Duration,
        from: State,
        reason: TransitionReason,
        actions: &mut Vec<Action>,
    ) {
        self.state = State::Master;
        self.held_for_master = false;
        self.master_adver_int = self.cfg.advert_int;
        self.master_address = None;
        self.preempt_until = None;
        self.deadline = Some(now + self.cfg.advert_int);
        actions.push(Action::SendAdvert {
            priority: self.effective_priority,
        });
        actions.push(Action::AddAddresses);
        let announce = self.cfg.announce;
        if announce.master_repeat > 0 {
            actions.push(Action::AnnounceAddresses {
                repeat: announce.master_repeat,
            });
            if !announce.master_delay.is_zero() {
                self.delayed_announcements
                    .push((now + announce.master_delay, announce.master_repeat));
            }
        }
        self.refresh_at =
            (!announce.master_refresh.is_zero()).then(|| now + announce.master_refresh);
        actions.push(Action::StateChanged {
            from,
            to: State::Master,
            reason,
        });
    }

    fn leave_master(
        &mut self,
        now: Duration,
        to: State,
        reason: TransitionReason,
        send_stop: bool,
        actions: &mut Vec<Action>,
    ) {
        if send_stop {
            actions.push(Action::SendAdvert { priority: 0 });
        }
        actions.push(Action::RemoveAddresses);
        self.state = to;
        self.delayed_announcements.clear();
        self.refresh_at = None;
        self.preempt_until = None;
        self.held_for_master = false;
        self.deadline = (to == State::Backup).then(|| now + self.master_down_interval());
        actions.push(Action::StateChanged {
            from: State::Master,
            to,
            reason,
        });
    }

    /// RFC 5798 section 6.4.2, with keepalived's `preempt_delay`.
    fn backup_rx(&mut self, now: Duration, src: IpAddr, advert: &Advert) {
        if advert.priority == 0 {
            // The master is leaving: take over after the skew time, so that with several
            // backups the highest priority goes first.
            self.deadline = Some(now + self.skew_time());
            return;
        }
        let ours = self.effective_priority;
        let preempt_delay = self.cfg.preempt_delay;
        let delaying =
            !preempt_delay.is_zero() && self.preempt_until.is_none_or(|until| now < until);
        if self.cfg.nopreempt || advert.priority >= ours || delaying {
            if self.cfg.version == Version::V3 {
                // A zero interval would make the down timer zero; keep at least 1 cs.
                self.master_adver_int = advert.interval().max(Duration::from_millis(10));
            }
            self.deadline = Some(now + self.master_down_interval());
            self.master_address = Some(src);
            self.held_for_master = false;
            if !preempt_delay.is_zero() {
                if advert.priority >= ours {
                    self.preempt_until = None;
                } else if self.preempt_until.is_none() {
                    self.preempt_until = Some(now + preempt_delay);
                }
            }
        } else {
            // Lower priority and we may preempt: ignore it and let the down timer run out.
            log::debug!(
                "VRID {}: lower priority {} advert from {src} ignored, ours {ours}",
                self.cfg.vrid,
                advert.priority
            );
            self.master_address = Some(src);
        }
    }

    /// RFC 5798 section 6.4.3, with keepalived's answers to lower priorities and owner
    /// conflicts.
    fn master_rx(
        &mut self,
        now: Duration,
        src: IpAddr,
        advert: &Advert,
        actions: &mut Vec<Action>,
    ) {
        let ours = self.cfg.primary_address;
        let theirs = advert.priority;
        let mut eff = self.effective_priority;
        let higher = theirs > eff || (theirs == eff && src > ours);

        if theirs == 0 || (self.cfg.higher_prio_send_advert && higher) {
            // A leaving master's backups must hear from us before their skew timers fire.
            actions.push(Action::SendAdvert { priority: eff });
            self.deadline = Some(now + self.cfg.advert_int);
            if theirs == 0 {
                return;
            }
        }

        if theirs == eff && eff == 255 {
            // Two address owners: keepalived reports a configuration error and steps its own
            // priority down so that the pair converges instead of both staying master.
            log::error!(
                "VRID {}: {src} also claims to own the addresses; lowering our priority to 254",
                self.cfg.vrid
            );
            self.base_priority = 254;
            self.start_as_master = false;
            actions.extend(self.update_effective_priority(now));
            eff = self.effective_priority;
        }

        if theirs < eff || (theirs == eff && src < ours) {
            // A lower-priority router believes it is master (it missed our adverts): answer
            // at once so it steps down now rather than after its next interval.
            if !self.cfg.lower_prio_no_advert {
                actions.push(Action::SendAdvert { priority: eff });
                self.deadline = Some(now + self.cfg.advert_int);
            }
            let announce = self.cfg.announce;
            if announce.lower_prio_repeat > 0 {
                actions.push(Action::AnnounceAddresses {
                    repeat: announce.lower_prio_repeat,
                });
                if !announce.lower_prio_delay.is_zero() {
                    self.delayed_announcements
                        .push((now + announce.lower_prio_delay, announce.lower_prio_repeat));
                }
            }
            return;
        }

        if theirs > eff || (theirs == eff && src > ours) {
            if self.cfg.version == Version::V3 {
                self.master_adver_int = advert.interval().max(Duration::from_millis(10));
            }
            self.master_address = Some(src);
            let reason = if theirs > eff {
                TransitionReason::HigherPriority
            } else {
                TransitionReason::HigherAddress
            };
            self.leave_master(now, State::Backup, reason, false, actions);
        }
    }

    fn update_effective_priority(&mut self, now: Duration) -> Vec<Action> {
        let new = if self.base_priority == 255 {
            255
        } else {
            let total = i64::from(self.base_priority) + i64::from(self.priority_delta);
            // Clamped to 1..=254, so the conversion cannot fail.
            u8::try_from(total.clamp(1, 254)).unwrap_or(254)
        };
        let old = self.effective_priority;
        if new == old {
            return Vec::new();
        }
        let old_skew = self.skew_time();
        self.effective_priority = new;
        let new_skew = self.skew_time();
        if self.state == State::Backup
            && let Some(deadline) = self.deadline
        {
            // Move the running master down timer by the change in skew. (keepalived moves it
            // by the change in its stored down timer, which after an ignored advert or a
            // priority 0 advert is not the full interval and can push takeover far out.)
            let moved = if new_skew >= old_skew {
                deadline + (new_skew - old_skew)
            } else {
                deadline.saturating_sub(old_skew - new_skew)
            };
            self.deadline = Some(moved.max(now));
        }
        vec![Action::PriorityChanged { from: old, to: new }]
    }
}

/// Compares passwords without an early exit, so timing does not reveal a matching prefix.
fn constant_time_eq(a: &[u8; 8], b: &[u8; 8]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

//! The typed configuration, with keepalived's defaults filled in.
//!
//! Every field holds the value keepalived would use, whether it was written or
//! defaulted, so the binary never has to know keepalived's defaults. Fields that
//! keepalived leaves unset unless written are `Option`s.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::diagnostic::Span;

/// Where an item was written.
///
/// Compares equal to any other `Origin`: a configuration printed and read back
/// must equal the original although every line moved.
#[derive(Clone, Debug, Default)]
pub struct Origin(pub Option<Span>);

impl PartialEq for Origin {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Origin {}

impl Origin {
    pub fn span(&self) -> Option<&Span> {
        self.0.as_ref()
    }
}

/// A duration written in keepalived's decimal seconds (`60`, `0.5`), kept to the
/// microsecond as keepalived does. Serialized as seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    micros: u64,
}

impl Timer {
    pub const fn from_secs(secs: u64) -> Self {
        Timer {
            micros: secs * 1_000_000,
        }
    }

    pub const fn from_micros(micros: u64) -> Self {
        Timer { micros }
    }

    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    pub const fn as_duration(self) -> Duration {
        Duration::from_micros(self.micros)
    }
}

impl fmt::Display for Timer {
    /// keepalived syntax: whole seconds, or seconds with up to six decimals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.micros / 1_000_000;
        let frac = self.micros % 1_000_000;
        if frac == 0 {
            write!(f, "{secs}")
        } else {
            let digits = format!("{frac:06}");
            write!(f, "{secs}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl Serialize for Timer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.micros as f64 / 1_000_000.0)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Config {
    pub global_defs: GlobalDefs,
    pub vrrp_scripts: Vec<VrrpScript>,
    /// `track_file` blocks (and the older `vrrp_track_file`), for instances and FILE_CHECK.
    pub track_files: Vec<TrackFile>,
    pub vrrp_track_processes: Vec<VrrpTrackProcess>,
    pub vrrp_sync_groups: Vec<VrrpSyncGroup>,
    pub vrrp_instances: Vec<VrrpInstance>,
    /// `static_ipaddress`: added when xlb starts, whatever the VRRP state.
    pub static_ipaddress: Vec<VirtualIpAddress>,
    /// `static_routes`: added when xlb starts, whatever the VRRP state.
    pub static_routes: Vec<Route>,
    /// `static_rules`: added when xlb starts, whatever the VRRP state.
    pub static_rules: Vec<Rule>,
    /// `virtual_server_group NAME { ... }`, as written; the virtual servers that use one are
    /// expanded into [`Config::virtual_servers`], one per address and port.
    pub virtual_server_groups: Vec<VirtualServerGroup>,
    pub virtual_servers: Vec<VirtualServer>,
}

impl Config {
    pub fn vrrp_script(&self, name: &str) -> Option<&VrrpScript> {
        self.vrrp_scripts.iter().find(|s| s.name == name)
    }

    pub fn vrrp_instance(&self, name: &str) -> Option<&VrrpInstance> {
        self.vrrp_instances.iter().find(|i| i.name == name)
    }

    pub fn track_file(&self, name: &str) -> Option<&TrackFile> {
        self.track_files.iter().find(|f| f.name == name)
    }

    pub fn vrrp_track_process(&self, name: &str) -> Option<&VrrpTrackProcess> {
        self.vrrp_track_processes.iter().find(|p| p.name == name)
    }
}

/// `user USERNAME [GROUPNAME]`, the account a script runs as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScriptUser {
    pub user: String,
    pub group: Option<String>,
}

/// A script keepalived runs on an event, e.g. `notify_master "/bin/x.sh arg" user`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotifyScript {
    /// The command line as written (a quoted string is one command with arguments).
    pub command: String,
    pub user: Option<ScriptUser>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GlobalDefs {
    pub router_id: Option<String>,
    /// 2 or 3; the default for every vrrp_instance.
    pub vrrp_version: u8,
    pub script_user: Option<ScriptUser>,
    pub enable_script_security: bool,
    /// Interface of a vrrp_instance that names none.
    pub default_interface: String,
    pub vrrp_skip_check_adv_addr: bool,
    pub vrrp_strict: bool,
    pub vrrp_garp_interval: Timer,
    pub vrrp_gna_interval: Timer,
    /// Defaults for the vrrp_instance keywords without the `vrrp_` prefix.
    pub vrrp_garp_master_delay: u32,
    pub vrrp_garp_master_repeat: u32,
    pub vrrp_garp_master_refresh: u32,
    pub vrrp_garp_master_refresh_repeat: u32,
    /// xlb's own: entries of every Maglev table (`xlb_maglev_table_size`). Directors that
    /// share VIPs must agree on it, so it lives in the config they share.
    pub xlb_maglev_table_size: u32,
    #[serde(skip)]
    pub xlb_maglev_table_size_origin: Origin,
    /// xlb's own: VIP addresses announced to routers through BIRD (`xlb_announce ADDRESS...`)
    /// instead of held by VRRP: active-active directors behind ECMP.
    pub xlb_announce: Vec<AnnouncedVip>,
    /// The kernel routing table xlb puts a route to each announceable VIP in; BIRD's kernel
    /// protocol learns it (`xlb_announce_table`).
    pub xlb_announce_table: u32,
    /// How long a clean stop waits between withdrawing its VIPs and detaching the data plane,
    /// for the routers to move traffic to the other directors (`xlb_announce_drain`).
    pub xlb_announce_drain: Timer,
    /// BIRD's control socket, asked for the BGP sessions' state (`xlb_bird_socket`).
    pub xlb_bird_socket: String,
}

/// One `xlb_announce` address, with where it is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AnnouncedVip {
    pub address: IpAddr,
    #[serde(skip)]
    pub origin: Origin,
}

/// The table VIP routes go to when `xlb_announce_table` is not written.
pub const DEFAULT_ANNOUNCE_TABLE: u32 = 100;
/// BIRD 2's default control socket (Debian's bird2 package).
pub const DEFAULT_BIRD_SOCKET: &str = "/run/bird/bird.ctl";

impl Default for GlobalDefs {
    fn default() -> Self {
        GlobalDefs {
            router_id: None,
            vrrp_version: 2,
            script_user: None,
            enable_script_security: false,
            default_interface: "eth0".to_string(),
            vrrp_skip_check_adv_addr: false,
            vrrp_strict: false,
            vrrp_garp_interval: Timer::default(),
            vrrp_gna_interval: Timer::default(),
            vrrp_garp_master_delay: 5,
            vrrp_garp_master_repeat: 5,
            vrrp_garp_master_refresh: 0,
            vrrp_garp_master_refresh_repeat: 1,
            xlb_maglev_table_size: lb_common::DEFAULT_MAGLEV_TABLE_SIZE,
            xlb_maglev_table_size_origin: Origin::default(),
            xlb_announce: Vec::new(),
            xlb_announce_table: DEFAULT_ANNOUNCE_TABLE,
            xlb_announce_drain: Timer::from_secs(3),
            xlb_bird_socket: DEFAULT_BIRD_SOCKET.to_string(),
        }
    }
}

/// `vrrp_script NAME { ... }`: a check whose result moves VRRP priorities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VrrpScript {
    pub name: String,
    pub script: String,
    /// Seconds between runs.
    pub interval: u32,
    /// Seconds before a run counts as failed; keepalived defaults it to `interval`.
    pub timeout: u32,
    /// Priority change, -253..=253; 0 means failure puts the instance in FAULT.
    pub weight: i32,
    pub weight_reverse: bool,
    pub fall: u32,
    pub rise: u32,
    pub user: Option<ScriptUser>,
    #[serde(skip)]
    pub origin: Origin,
}

/// `track_file NAME { file PATH ... }`: a file whose number moves priorities and weights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrackFile {
    pub name: String,
    /// The file read, as written.
    pub file: String,
    /// The default weight of those that track it without one (keepalived: 1).
    pub weight: i32,
    pub weight_reverse: bool,
    /// `init_file [VALUE] [overwrite]`: written at start-up (not on reload) if the file is
    /// missing, or always with `overwrite`.
    pub init_file: Option<TrackFileInit>,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TrackFileInit {
    pub value: i32,
    pub overwrite: bool,
}

/// How a process's arguments must match those written after `process`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamMatch {
    /// Arguments are not looked at.
    #[default]
    None,
    /// The same arguments, no more.
    Exact,
    /// The written arguments, then any others.
    Partial,
    /// As partial, and the last written argument may be the start of the process's.
    Initial,
}

/// `vrrp_track_process NAME { process ... }`: how many processes of a name run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VrrpTrackProcess {
    pub name: String,
    /// The process name (/proc/PID/stat's), or with `full_command` the first word of its
    /// command line.
    pub process: String,
    /// The arguments written after the process, matched by `param_match`.
    pub params: Vec<String>,
    pub param_match: ParamMatch,
    pub full_command: bool,
    /// The default weight of instances that track it without one (keepalived: 0).
    pub weight: i32,
    pub weight_reverse: bool,
    /// Fewest matching processes for success; 0 only with `quorum_max 0`.
    pub quorum: u32,
    /// Most matching processes for success; `None` is unlimited.
    pub quorum_max: Option<u32>,
    /// How long the quorum must hold after it is gained before it counts.
    pub fork_delay: Timer,
    /// How long the quorum must stay lost before it counts.
    pub terminate_delay: Timer,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VrrpState {
    Master,
    Backup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum AuthType {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "AH")]
    Ah,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Authentication {
    pub auth_type: AuthType,
    /// At most 8 characters, as on the wire.
    pub auth_pass: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum AddressFamily {
    #[serde(rename = "inet")]
    Ipv4,
    #[serde(rename = "inet6")]
    Ipv6,
}

impl AddressFamily {
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => AddressFamily::Ipv4,
            IpAddr::V6(_) => AddressFamily::Ipv6,
        }
    }
}

/// One line of `virtual_ipaddress`, e.g. `192.168.163.100/24 dev eth0 label eth0:3`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VirtualIpAddress {
    pub address: IpAddr,
    /// 32 or 128 when not written.
    pub prefix_len: u8,
    /// The instance's interface when not written.
    pub dev: String,
    pub brd: Option<IpAddr>,
    pub scope: Option<String>,
    pub label: Option<String>,
    pub no_track: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrackScript {
    pub name: String,
    /// The script's own weight unless `weight N` overrides it here.
    pub weight: i32,
    pub reverse: bool,
    #[serde(skip)]
    pub origin: Origin,
}

/// An entry of a vrrp_instance's `track_file` or `track_process` block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrackObject {
    pub name: String,
    /// The tracked object's own weight unless `weight N` overrides it here.
    pub weight: i32,
    pub reverse: bool,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrackInterface {
    pub name: String,
    /// None: the instance goes to FAULT while the interface is down.
    pub weight: Option<i32>,
    pub reverse: bool,
}

/// `vrrp_instance NAME { ... }`: one VRRP router holding virtual addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VrrpInstance {
    pub name: String,
    pub state: VrrpState,
    pub interface: String,
    pub virtual_router_id: u8,
    pub priority: u8,
    /// Advertisement interval in hundredths of a second (VRRPv3 resolution).
    pub advert_int_centis: u32,
    /// 2 or 3.
    pub version: u8,
    pub nopreempt: bool,
    /// Seconds, 0..=1000.
    pub preempt_delay: u32,
    pub authentication: Option<Authentication>,
    pub virtual_ipaddress: Vec<VirtualIpAddress>,
    pub virtual_ipaddress_excluded: Vec<VirtualIpAddress>,
    pub unicast_src_ip: Option<IpAddr>,
    pub unicast_peer: Vec<IpAddr>,
    pub mcast_src_ip: Option<IpAddr>,
    pub track_script: Vec<TrackScript>,
    pub track_interface: Vec<TrackInterface>,
    pub track_file: Vec<TrackObject>,
    pub track_process: Vec<TrackObject>,
    /// Added on becoming MASTER, removed on leaving it, after and before the addresses.
    pub virtual_routes: Vec<Route>,
    pub virtual_rules: Vec<Rule>,
    pub garp_master_delay: u32,
    pub garp_master_repeat: u32,
    pub garp_master_refresh: u32,
    pub garp_master_refresh_repeat: u32,
    pub notify_master: Option<NotifyScript>,
    pub notify_backup: Option<NotifyScript>,
    pub notify_fault: Option<NotifyScript>,
    pub notify_stop: Option<NotifyScript>,
    pub notify: Option<NotifyScript>,
    pub smtp_alert: bool,
    #[serde(skip)]
    pub origin: Origin,
    #[serde(skip)]
    pub virtual_router_id_origin: Origin,
}

impl VrrpInstance {
    pub fn advert_int(&self) -> Duration {
        Duration::from_millis(u64::from(self.advert_int_centis) * 10)
    }

    /// The family of the instance's addresses (its first virtual address; IPv4 if none).
    pub fn family(&self) -> AddressFamily {
        self.virtual_ipaddress
            .first()
            .map(|v| AddressFamily::of(&v.address))
            .unwrap_or(AddressFamily::Ipv4)
    }
}

/// `vrrp_sync_group NAME { group { ... } }`: instances that change state together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VrrpSyncGroup {
    pub name: String,
    pub group: Vec<SyncGroupMember>,
    pub notify_master: Option<NotifyScript>,
    pub notify_backup: Option<NotifyScript>,
    pub notify_fault: Option<NotifyScript>,
    pub notify_stop: Option<NotifyScript>,
    pub notify: Option<NotifyScript>,
    pub smtp_alert: bool,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SyncGroupMember {
    pub name: String,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LbAlgo {
    /// Maglev hashing: what xlb does natively.
    Mh,
    Rr,
    Wrr,
    Lc,
    Wlc,
    Lblc,
    Lblcr,
    Dh,
    Sh,
    Sed,
    Nq,
    Fo,
    Ovf,
}

impl LbAlgo {
    pub const ALL: [LbAlgo; 13] = [
        LbAlgo::Mh,
        LbAlgo::Rr,
        LbAlgo::Wrr,
        LbAlgo::Lc,
        LbAlgo::Wlc,
        LbAlgo::Lblc,
        LbAlgo::Lblcr,
        LbAlgo::Dh,
        LbAlgo::Sh,
        LbAlgo::Sed,
        LbAlgo::Nq,
        LbAlgo::Fo,
        LbAlgo::Ovf,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LbAlgo::Mh => "mh",
            LbAlgo::Rr => "rr",
            LbAlgo::Wrr => "wrr",
            LbAlgo::Lc => "lc",
            LbAlgo::Wlc => "wlc",
            LbAlgo::Lblc => "lblc",
            LbAlgo::Lblcr => "lblcr",
            LbAlgo::Dh => "dh",
            LbAlgo::Sh => "sh",
            LbAlgo::Sed => "sed",
            LbAlgo::Nq => "nq",
            LbAlgo::Fo => "fo",
            LbAlgo::Ovf => "ovf",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum LbKind {
    #[serde(rename = "NAT")]
    Nat,
    #[serde(rename = "DR")]
    Dr,
    #[serde(rename = "TUN")]
    Tun,
}

impl LbKind {
    pub fn name(self) -> &'static str {
        match self {
            LbKind::Nat => "NAT",
            LbKind::Dr => "DR",
            LbKind::Tun => "TUN",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SorryServer {
    pub address: IpAddr,
    pub port: u16,
}

/// `virtual_server IP PORT { ... }`: a VIP:port and the real servers behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VirtualServer {
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub delay_loop: Timer,
    pub lb_algo: LbAlgo,
    pub lb_kind: LbKind,
    /// Seconds; 0 is off. A bare `persistence_timeout` means 360.
    pub persistence_timeout: u32,
    pub persistence_granularity: Option<IpAddr>,
    pub virtualhost: Option<String>,
    pub sorry_server: Option<SorryServer>,
    pub quorum: u32,
    pub hysteresis: u32,
    pub quorum_up: Option<NotifyScript>,
    pub quorum_down: Option<NotifyScript>,
    pub alpha: bool,
    pub omega: bool,
    pub inhibit_on_failure: bool,
    pub ha_suspend: bool,
    pub real_servers: Vec<RealServer>,
    /// The `virtual_server_group` this service was expanded from (`virtual_server group
    /// NAME`); its address and port are one of the group's.
    pub group: Option<String>,
    #[serde(skip)]
    pub origin: Origin,
    #[serde(skip)]
    pub lb_algo_origin: Origin,
    #[serde(skip)]
    pub lb_kind_origin: Origin,
}

impl VirtualServer {
    /// Whether the VIP must hash on the client address only, so that every
    /// connection of one client lands on one real server: asked for by
    /// persistence or by the source-hash scheduler.
    pub fn hash_on_source_only(&self) -> bool {
        self.persistence_timeout > 0 || self.lb_algo == LbAlgo::Sh
    }
}

/// `virtual_server_group NAME { ADDR PORT ... }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VirtualServerGroup {
    pub name: String,
    pub entries: Vec<GroupEntry>,
    #[serde(skip)]
    pub origin: Origin,
}

/// One line of a virtual_server_group: the addresses `first..=last` (one address when they
/// are equal), each on `port`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupEntry {
    pub first: IpAddr,
    pub last: IpAddr,
    pub port: u16,
    #[serde(skip)]
    pub origin: Origin,
}

impl GroupEntry {
    /// Every address of the entry, in order.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (first, last) = (ip_number(self.first), ip_number(self.last));
        let v6 = self.first.is_ipv6();
        (first..=last).map(move |n| {
            if v6 {
                IpAddr::from(std::net::Ipv6Addr::from(n))
            } else {
                IpAddr::from(std::net::Ipv4Addr::from(n as u32))
            }
        })
    }

    /// How many addresses the entry holds (saturating: `::-ffff:...:ffff` holds 2^128).
    pub fn count(&self) -> u128 {
        (ip_number(self.last) - ip_number(self.first)).saturating_add(1)
    }
}

/// An address as a number, for ranges.
pub fn ip_number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// A destination or source written `ADDR/LEN` (or `ADDR` alone, a host).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Prefix {
    pub address: IpAddr,
    pub len: u8,
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.len)
    }
}

/// The route types xlb adds (keepalived's `blackhole`, `unreachable`, ... before the
/// destination).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteType {
    #[default]
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
}

impl RouteType {
    pub const ALL: [RouteType; 5] = [
        RouteType::Unicast,
        RouteType::Blackhole,
        RouteType::Unreachable,
        RouteType::Prohibit,
        RouteType::Throw,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RouteType::Unicast => "unicast",
            RouteType::Blackhole => "blackhole",
            RouteType::Unreachable => "unreachable",
            RouteType::Prohibit => "prohibit",
            RouteType::Throw => "throw",
        }
    }
}

/// The main routing table, where a route or rule goes unless `table` says otherwise.
pub const TABLE_MAIN: u32 = 254;

/// One line of `static_routes` / `virtual_routes`, in `ip route` syntax.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    pub kind: RouteType,
    pub dest: Prefix,
    pub via: Option<IpAddr>,
    pub dev: Option<String>,
    /// `src`: the preferred source address.
    pub src: Option<IpAddr>,
    /// `metric` (or `priority`, `preference`).
    pub metric: Option<u32>,
    pub table: u32,
    /// The kernel's scope number; `None` lets the kernel choose as `ip route` does.
    pub scope: Option<u8>,
    pub onlink: bool,
    /// keepalived marks a route it tracks with protocol `keepalived` (18); `no_track` leaves
    /// the kernel's `boot`.
    pub no_track: bool,
    #[serde(skip)]
    pub origin: Origin,
}

/// What a rule does with the packets it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// `table N` (or `lookup N`).
    Table(u32),
    Blackhole,
    Unreachable,
    Prohibit,
}

/// `fwmark MARK[/MASK]` of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct FwMark {
    pub mark: u32,
    pub mask: Option<u32>,
}

/// One line of `static_rules` / `virtual_rules`, in `ip rule` syntax.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub family: AddressFamily,
    pub from: Option<Prefix>,
    pub to: Option<Prefix>,
    pub action: RuleAction,
    /// The rule's preference; keepalived gives one (from 16384 down) to a rule written without.
    pub priority: u32,
    pub fwmark: Option<FwMark>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub no_track: bool,
    #[serde(skip)]
    pub origin: Origin,
}

/// Scope names as `ip` writes them.
pub fn scope_name(scope: u8) -> Option<&'static str> {
    match scope {
        0 => Some("global"),
        200 => Some("site"),
        253 => Some("link"),
        254 => Some("host"),
        255 => Some("nowhere"),
        _ => None,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RealServer {
    pub address: IpAddr,
    /// The virtual server's port when not written.
    pub port: u16,
    pub weight: u32,
    /// The virtual server's setting when not written.
    pub inhibit_on_failure: bool,
    pub notify_up: Option<NotifyScript>,
    pub notify_down: Option<NotifyScript>,
    pub checkers: Vec<Checker>,
    #[serde(skip)]
    pub origin: Origin,
}

/// Where and how a checker connects; defaults come from the real server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Connection {
    pub connect_ip: IpAddr,
    pub connect_port: u16,
    pub bindto: Option<IpAddr>,
    pub bind_port: Option<u16>,
    pub connect_timeout: Timer,
}

/// When a checker runs; defaults come from the real server, then the virtual server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckTiming {
    pub delay_loop: Timer,
    /// Extra attempts before a live server is declared down.
    pub retry: u32,
    pub delay_before_retry: Timer,
    /// Upper bound of the random delay before the first check.
    pub warmup: Timer,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusRange {
    pub from: u16,
    pub to: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Url {
    pub path: String,
    pub digest: Option<String>,
    /// 200-299 when neither status_code nor digest is written.
    pub status_code: Vec<StatusRange>,
    pub virtualhost: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TcpCheck {
    pub connection: Connection,
    pub timing: CheckTiming,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HttpCheck {
    /// SSL_GET rather than HTTP_GET.
    pub tls: bool,
    pub connection: Connection,
    pub timing: CheckTiming,
    pub urls: Vec<Url>,
    pub virtualhost: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MiscCheck {
    pub timing: CheckTiming,
    pub misc_path: String,
    /// Seconds; the checker's delay_loop when not written.
    pub misc_timeout: Timer,
    pub misc_dynamic: bool,
    pub user: Option<ScriptUser>,
}

/// PING_CHECK: an ICMP (or ICMPv6) echo answered within connect_timeout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PingCheck {
    pub connection: Connection,
    pub timing: CheckTiming,
}

/// Bytes written in keepalived's free hex format (`payload`, `require_reply`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HexBytes {
    pub data: Vec<u8>,
    /// Bits of `data` that are not compared (written `X`); empty when none are.
    pub mask: Vec<u8>,
}

/// UDP_CHECK: a datagram sent; the server is down if an ICMP unreachable comes back, or,
/// with `require_reply`, if no fitting reply does within connect_timeout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UdpCheck {
    pub connection: Connection,
    pub timing: CheckTiming,
    /// What is sent; keepalived sends 32 bytes of `keepalived check - ` when not written.
    pub payload: Option<HexBytes>,
    pub require_reply: bool,
    /// What the reply must start with (compared up to the shorter of the two).
    pub reply: Option<HexBytes>,
    pub min_reply_length: u16,
    pub max_reply_length: u16,
}

/// The record types DNS_CHECK asks for (keepalived's list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum DnsType {
    A,
    #[serde(rename = "NS")]
    Ns,
    #[serde(rename = "CNAME")]
    Cname,
    #[serde(rename = "SOA")]
    Soa,
    #[serde(rename = "MX")]
    Mx,
    #[serde(rename = "TXT")]
    Txt,
    #[serde(rename = "AAAA")]
    Aaaa,
    #[serde(rename = "RRSIG")]
    Rrsig,
    #[serde(rename = "DNSKEY")]
    Dnskey,
}

impl DnsType {
    pub const ALL: [DnsType; 9] = [
        DnsType::A,
        DnsType::Ns,
        DnsType::Cname,
        DnsType::Soa,
        DnsType::Mx,
        DnsType::Txt,
        DnsType::Aaaa,
        DnsType::Rrsig,
        DnsType::Dnskey,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DnsType::A => "A",
            DnsType::Ns => "NS",
            DnsType::Cname => "CNAME",
            DnsType::Soa => "SOA",
            DnsType::Mx => "MX",
            DnsType::Txt => "TXT",
            DnsType::Aaaa => "AAAA",
            DnsType::Rrsig => "RRSIG",
            DnsType::Dnskey => "DNSKEY",
        }
    }

    /// The QTYPE on the wire.
    pub fn code(self) -> u16 {
        match self {
            DnsType::A => 1,
            DnsType::Ns => 2,
            DnsType::Cname => 5,
            DnsType::Soa => 6,
            DnsType::Mx => 15,
            DnsType::Txt => 16,
            DnsType::Aaaa => 28,
            DnsType::Rrsig => 46,
            DnsType::Dnskey => 48,
        }
    }

    /// keepalived compares type names without regard to case.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

/// DNS_CHECK: a query over UDP answered without an error code within connect_timeout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsCheck {
    pub connection: Connection,
    pub timing: CheckTiming,
    pub query_type: DnsType,
    /// The name asked for; `.` (the root) when not written.
    pub name: String,
}

/// SMTP_CHECK: a 220 banner, `HELO`, a 250 answer and `QUIT`, each within connect_timeout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SmtpCheck {
    pub connection: Connection,
    pub timing: CheckTiming,
    pub helo_name: String,
}

/// FILE_CHECK: the real server follows a `track_file`; no polling, no retries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileCheck {
    pub track_file: String,
    /// Multiplies the number in the file; 0 means any non-zero number is a failure.
    pub weight: i32,
    pub reverse: bool,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Checker {
    #[serde(rename = "TCP_CHECK")]
    Tcp(TcpCheck),
    #[serde(rename = "HTTP_GET")]
    Http(HttpCheck),
    #[serde(rename = "MISC_CHECK")]
    Misc(MiscCheck),
    #[serde(rename = "PING_CHECK")]
    Ping(PingCheck),
    #[serde(rename = "UDP_CHECK")]
    Udp(UdpCheck),
    #[serde(rename = "DNS_CHECK")]
    Dns(DnsCheck),
    #[serde(rename = "SMTP_CHECK")]
    Smtp(SmtpCheck),
    #[serde(rename = "FILE_CHECK")]
    File(FileCheck),
}

impl Checker {
    /// When the checker runs; `None` for FILE_CHECK, which follows its file instead.
    pub fn timing(&self) -> Option<&CheckTiming> {
        match self {
            Checker::Tcp(c) => Some(&c.timing),
            Checker::Http(c) => Some(&c.timing),
            Checker::Misc(c) => Some(&c.timing),
            Checker::Ping(c) => Some(&c.timing),
            Checker::Udp(c) => Some(&c.timing),
            Checker::Dns(c) => Some(&c.timing),
            Checker::Smtp(c) => Some(&c.timing),
            Checker::File(_) => None,
        }
    }

    /// Where a network checker connects.
    pub fn connection(&self) -> Option<&Connection> {
        match self {
            Checker::Tcp(c) => Some(&c.connection),
            Checker::Http(c) => Some(&c.connection),
            Checker::Ping(c) => Some(&c.connection),
            Checker::Udp(c) => Some(&c.connection),
            Checker::Dns(c) => Some(&c.connection),
            Checker::Smtp(c) => Some(&c.connection),
            Checker::Misc(_) | Checker::File(_) => None,
        }
    }
}

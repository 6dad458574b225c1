//! The running xlb's model of what it serves, as the control socket hands it out (JSON), and
//! what the commands make of it: `xlb status` in `ipvsadm -Ln`'s layout, `xlb stats`, and the
//! Prometheus exposition of `/metrics`.

use std::{collections::BTreeMap, fmt::Write as _, net::IpAddr};

use serde::{Deserialize, Serialize};

/// Seconds since the epoch, as the model writes times.
pub fn unix_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Everything the daemon knows of what it serves, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub daemon: Daemon,
    pub services: Vec<ServiceStatus>,
    pub vrrp: Vec<VrrpStatus>,
    /// Every tracked `vrrp_script`: whether it is good.
    pub vrrp_scripts: BTreeMap<String, bool>,
    pub claims: Vec<ClaimStatus>,
    pub dataplane: DataplaneStatus,
    /// `xlb_announce`: each VIP's route and BIRD's sessions (none without `xlb_announce`).
    #[serde(default)]
    pub announce: Option<crate::announce::AnnounceStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Daemon {
    pub pid: u32,
    pub version: String,
    pub interface: String,
    pub config: String,
    /// Seconds since the epoch.
    pub started: f64,
    pub maglev_table_size: u32,
    pub hash_seed: u32,
}

/// Packets, bytes and connections, counted and per second (over the last sampling interval,
/// about 2 s, as IPVS's estimator).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    pub conns: u64,
    pub in_packets: u64,
    pub in_bytes: u64,
    /// A DR director sees only what clients send: nothing goes out through it.
    pub out_packets: u64,
    pub out_bytes: u64,
    pub cps: f64,
    pub in_pps: f64,
    pub in_bps: f64,
    pub out_pps: f64,
    pub out_bps: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// `TCP` or `UDP`.
    pub protocol: String,
    pub address: IpAddr,
    pub port: u16,
    /// What places new connections: always `mh` (weighted Maglev).
    pub scheduler: String,
    /// As configured; every algorithm is served by weighted Maglev.
    pub lb_algo: String,
    /// ipvsadm's flags: `persistent N`, `sh` (hash on the client address only).
    pub flags: Vec<String>,
    /// ipvsadm's forwarding method of the real servers: `Route` for DR.
    pub forward: String,
    /// The VRRP instance whose claim decides whether this director serves it.
    pub vrrp_instance: Option<String>,
    /// Whether this director forwards it now (the claim is active).
    pub active: bool,
    pub quorum_up: bool,
    pub sorry_server: Option<String>,
    /// The sorry server takes the new connections (below quorum).
    pub sorry_active: bool,
    pub traffic: Traffic,
    /// FNV-1a of the Maglev table (entry to real server): equal on every director that would
    /// place flows alike.
    pub table_checksum: Option<u32>,
    pub real_servers: Vec<RealServerStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RealServerStatus {
    pub address: IpAddr,
    pub port: u16,
    pub forward: String,
    /// As configured.
    pub weight: u32,
    /// What the table uses now: 0 when down, drained, draining or replaced by the sorry server.
    pub effective_weight: u32,
    /// `up`, `down`, `unresolved` (no neighbour entry), `draining` (removed from the config,
    /// keeping its connections until the idle timeout), `sorry` (the sorry server, in use).
    pub state: String,
    /// Seconds since the epoch of the last up/down change.
    pub since: Option<f64>,
    pub last_check: Option<CheckStatus>,
    pub active_conns: u64,
    pub inactive_conns: u64,
    pub traffic: Traffic,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckStatus {
    pub checker: String,
    /// Seconds since the epoch.
    pub at: f64,
    pub duration_seconds: f64,
    /// `None` when it passed.
    pub failure: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VrrpStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub version: u8,
    pub state: String,
    pub priority: u8,
    pub effective_priority: u8,
    pub master_since: Option<f64>,
    pub master_address: Option<IpAddr>,
    pub transitions: u64,
    pub become_master: u64,
    pub release_master: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    pub dropped: BTreeMap<String, u64>,
    pub vips: Vec<String>,
    pub claim: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClaimStatus {
    pub index: u32,
    /// The VRRP instance that owns it (`None`: VIPs no instance holds).
    pub instance: Option<String>,
    pub active: bool,
    /// Seconds left before this director stops answering ARP/ND for the VIPs (no lease: None).
    pub answer_seconds_left: Option<f64>,
    /// Seconds left before it stops forwarding them.
    pub forward_seconds_left: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataplaneStatus {
    /// Packets by what the program did with them.
    pub outcomes: BTreeMap<String, u64>,
    /// Why flows were placed by Maglev rather than found in the flow table.
    pub flow_events: BTreeMap<String, u64>,
    pub flow_table_entries: u64,
    pub flow_table_size: u32,
    /// VRRP packets dropped before reaching an instance, by reason.
    pub vrrp_dropped: BTreeMap<String, u64>,
}

/// How `xlb status` defines its connection columns (also in `--help`).
pub const CONNECTION_COLUMNS: &str = "\
ActiveConn: connections the director remembers for the real server that sent a packet in the \
last 60 s. InActConn: remembered connections idle longer, kept until the idle timeout (900 s \
TCP, 300 s UDP). A DR director sees only what clients send, so a connection the client closed \
counts as active until it has been quiet for 60 s. OutPkts/OutBytes are 0: replies go from the \
real servers straight to the clients.";

/// Which columns `xlb status` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Columns {
    Connections,
    Stats,
    Rate,
}

fn endpoint(address: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(address, port).to_string()
}

/// `ipvsadm -Ln`'s layout: the services, then VRRP and the real servers that are down.
pub fn render_status(s: &Status, columns: Columns) -> String {
    let mut out = format!(
        "IP Virtual Server version xlb {} (size={})\n",
        s.daemon.version, s.daemon.maglev_table_size
    );
    match columns {
        Columns::Connections => {
            out += "Prot LocalAddress:Port Scheduler Flags\n";
            out += "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";
        }
        Columns::Stats => {
            out +=
                "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n";
            out += "  -> RemoteAddress:Port\n";
        }
        Columns::Rate => {
            out +=
                "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n";
            out += "  -> RemoteAddress:Port\n";
        }
    }
    for svc in &s.services {
        let local = endpoint(svc.address, svc.port);
        match columns {
            Columns::Connections => {
                let mut flags = svc.flags.join(" ");
                if !flags.is_empty() {
                    flags.insert(0, ' ');
                }
                let _ = writeln!(out, "{:<4} {local} {}{flags}", svc.protocol, svc.scheduler);
                for rs in &svc.real_servers {
                    let _ = writeln!(
                        out,
                        "  -> {:<28} {:<7} {:<6} {:<10} {}",
                        endpoint(rs.address, rs.port),
                        rs.forward,
                        rs.effective_weight,
                        rs.active_conns,
                        rs.inactive_conns
                    );
                }
            }
            Columns::Stats | Columns::Rate => {
                let _ = writeln!(
                    out,
                    "{:<4} {local:<28} {}",
                    svc.protocol,
                    traffic_columns(&svc.traffic, columns)
                );
                for rs in &svc.real_servers {
                    let _ = writeln!(
                        out,
                        "  -> {:<28} {}",
                        endpoint(rs.address, rs.port),
                        traffic_columns(&rs.traffic, columns)
                    );
                }
            }
        }
    }
    if !s.vrrp.is_empty() {
        out += "\nVRRP\n";
        for vi in &s.vrrp {
            let since = vi
                .master_since
                .map(|t| format!(", master since {}", ago(t)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} {} on {} vrid {}: priority {}/{}{since}; {}",
                vi.name,
                vi.state,
                vi.interface,
                vi.vrid,
                vi.priority,
                vi.effective_priority,
                vi.vips.join(" ")
            );
        }
    }
    if let Some(a) = &s.announce {
        render_announce(&mut out, a, &s.services);
    }
    let mut not_up = String::new();
    for svc in &s.services {
        for rs in svc.real_servers.iter().filter(|rs| rs.state != "up") {
            let why = rs
                .last_check
                .as_ref()
                .and_then(|c| c.failure.as_ref().map(|f| format!(": {} {f}", c.checker)))
                .unwrap_or_default();
            let since = rs
                .since
                .map(|t| format!(" since {}", ago(t)))
                .unwrap_or_default();
            let _ = writeln!(
                not_up,
                "  {} of {} {}: {}{since}{why}",
                endpoint(rs.address, rs.port),
                svc.protocol,
                endpoint(svc.address, svc.port),
                rs.state
            );
        }
        if svc.sorry_active
            && let Some(sorry) = &svc.sorry_server
        {
            let _ = writeln!(
                not_up,
                "  {} {}: below quorum, the sorry server {sorry} takes new connections",
                svc.protocol,
                endpoint(svc.address, svc.port)
            );
        }
    }
    if !not_up.is_empty() {
        out += "\nReal servers not up\n";
        out += &not_up;
    }
    out
}

/// Each announced VIP (with its services' Maglev checksums, to compare directors), then BIRD's
/// protocols as `birdc show protocols` lists them.
fn render_announce(
    out: &mut String,
    a: &crate::announce::AnnounceStatus,
    services: &[ServiceStatus],
) {
    let _ = writeln!(
        out,
        "\nAnnounced through BIRD (routes in table {} via {}, proto {})",
        a.table, a.device, a.route_protocol
    );
    for vip in &a.vips {
        let state = match &vip.why_not {
            None if vip.announced => format!("announced since {}", ago(vip.since)),
            None => "not announced".to_string(),
            Some(why) => format!("not announced since {}: {why}", ago(vip.since)),
        };
        let checksums: Vec<String> = services
            .iter()
            .filter(|svc| svc.address == vip.address)
            .map(|svc| {
                let sum = svc
                    .table_checksum
                    .map_or("none".to_string(), |c| format!("{c:08x}"));
                format!("{}/{} {sum}", svc.port, svc.protocol)
            })
            .collect();
        let _ = writeln!(
            out,
            "  {} {state}; Maglev checksums {}",
            vip.address,
            checksums.join(", ")
        );
    }
    match &a.bird_error {
        Some(e) => {
            let _ = writeln!(out, "  BIRD: {e}");
        }
        None => {
            for p in &a.bird {
                let _ = writeln!(
                    out,
                    "  {:<12} {:<8} {:<6} {:<14} {}",
                    p.name, p.protocol, p.state, p.since, p.info
                );
            }
        }
    }
}

/// The five numbers of `--stats` (counters) or `--rate` (per second), right-aligned.
fn traffic_columns(t: &Traffic, columns: Columns) -> String {
    let values = if columns == Columns::Rate {
        [t.cps, t.in_pps, t.out_pps, t.in_bps, t.out_bps].map(|v| format!("{v:.0}"))
    } else {
        [
            t.conns,
            t.in_packets,
            t.out_packets,
            t.in_bytes,
            t.out_bytes,
        ]
        .map(|v| v.to_string())
    };
    values.map(|v| format!("{v:>8}")).join(" ")
}

/// "42 s ago" from seconds since the epoch.
fn ago(t: f64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let secs = (now - t).max(0.0) as u64;
    match secs {
        0..120 => format!("{secs} s ago"),
        120..7200 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

/// `xlb stats`: the data plane's counters.
pub fn render_stats(s: &Status) -> String {
    let mut out = String::from("outcome counters:\n");
    for (name, n) in &s.dataplane.outcomes {
        let _ = writeln!(out, "  {name:<22} {n}");
    }
    out += "flow table (placed by Maglev, not found):\n";
    for (name, n) in &s.dataplane.flow_events {
        let _ = writeln!(out, "  {name:<22} {n}");
    }
    let _ = writeln!(
        out,
        "flow table: {} of {} entries",
        s.dataplane.flow_table_entries, s.dataplane.flow_table_size
    );
    out += "services:\n";
    for svc in &s.services {
        let _ = writeln!(
            out,
            "  {} {} {}: {} packets, {} bytes, {} connections",
            svc.address,
            svc.port,
            svc.protocol,
            svc.traffic.in_packets,
            svc.traffic.in_bytes,
            svc.traffic.conns
        );
        for rs in &svc.real_servers {
            let _ = writeln!(
                out,
                "    {} ({}, weight {}): {} packets, {} bytes, {} connections",
                endpoint(rs.address, rs.port),
                rs.state,
                rs.effective_weight,
                rs.traffic.in_packets,
                rs.traffic.in_bytes,
                rs.traffic.conns
            );
        }
    }
    if !s.vrrp.is_empty() {
        out += "VRRP:\n";
        for vi in &s.vrrp {
            let _ = writeln!(
                out,
                "  instance {} {} priority {} adverts sent {} received {}",
                vi.name, vi.state, vi.effective_priority, vi.adverts_sent, vi.adverts_received
            );
        }
        for (reason, n) in &s.dataplane.vrrp_dropped {
            let _ = writeln!(out, "  dropped {reason} {n}");
        }
    }
    out
}

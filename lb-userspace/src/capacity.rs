//! The data plane's limits, checked against a config before anything runs: `xlb check`,
//! `xlb run` and every reload refuse a config over one, naming the first `virtual_server` or
//! `real_server` over it, so that a running xlb never serves nothing because of its own limits.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
};

use lb_common::{
    Backend, Claim, Control, Counters, FLOW_TOUCH_SLOTS, FlowEvent, FlowKey, FlowTouchPair,
    FlowValue, MAX_BACKENDS, MAX_CLAIMS, MAX_MEMBERS, MAX_NAT_SOURCES, MAX_SERVICES, MAX_TX_PORTS,
    MEMBER_SLOTS, MemberSlot, NAT_FILTER_WORDS, NatReply, NatSource, Outcome, PERSISTENCE_ENTRIES,
    PersistenceKey, RECENT_FLOW_SLOTS, RECENT_NAT_SOURCE_SLOTS, RECENT_REPLY_SLOTS, RecentFlow,
    RecentNatSource, RecentReply, RingChunk, VIP_FILTER_WORDS, VIP_SLOTS, VipKey, VipSlot,
    VipValue, max_services, ring_chunks, table_size_for, table_slots,
};
use lb_config::{Config, Origin};

use crate::{reconcile::place_vips, service::addr_words};

/// What a config asks of the data plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub services: usize,
    pub max_services: u32,
    /// (service, real server) entries, sorry servers included.
    pub backends: usize,
    /// Distinct Maglev tables the config needs now: services with the same real servers and
    /// weights share one.
    pub tables: usize,
    pub maglev_size: u32,
    /// Services with more real servers than the table size balances to within 1 %.
    pub loosely_balanced: Vec<String>,
}

/// Kernel memory of the data plane's maps, in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Every map but the flow table, by name.
    pub maps: Vec<(&'static str, u64)>,
    pub flows: u64,
    pub flow_entries: u32,
}

impl Memory {
    pub fn without_flows(&self) -> u64 {
        self.maps.iter().map(|(_, b)| b).sum()
    }
}

/// Bytes a BPF array of `entries` values of `value` bytes takes (values padded to 8).
fn array(entries: u32, value: usize) -> u64 {
    entries as u64 * value.next_multiple_of(8) as u64
}

/// A preallocated BPF hash map: each element carries a header of about 48 bytes (list node,
/// hash, padding) before its key and value, each padded to 8.
fn hash(entries: u32, key: usize, value: usize) -> u64 {
    entries as u64 * (48 + key.next_multiple_of(8) + value.next_multiple_of(8)) as u64
}

/// The maps' kernel memory for tables of `maglev_size` entries, `cpus` CPUs and a flow table
/// of `flow_entries`.
pub fn memory(maglev_size: u32, cpus: usize, flow_entries: u32) -> Memory {
    let per_cpu = |entries: u32, value: usize| array(entries, value) * cpus as u64;
    Memory {
        maps: vec![
            ("XLB_VIPS", array(2 * VIP_SLOTS, size_of::<VipSlot>())),
            ("XLB_VIP_FILTER", array(VIP_FILTER_WORDS, 8)),
            ("XLB_VIP_ADDRS", hash(2 * MAX_SERVICES, 16, 4)),
            ("XLB_CLAIMS", array(MAX_CLAIMS, size_of::<Claim>())),
            (
                "XLB_RINGS",
                array(ring_chunks(maglev_size), size_of::<RingChunk>()),
            ),
            ("XLB_MEMBERS", array(MEMBER_SLOTS, size_of::<MemberSlot>())),
            ("XLB_BACKENDS", array(MAX_BACKENDS, size_of::<Backend>())),
            ("XLB_TX_PORTS", hash(MAX_TX_PORTS, 4, 8)),
            ("XLB_CONTROL", array(1, size_of::<Control>())),
            (
                "XLB_VIP_STATS",
                per_cpu(MAX_SERVICES, size_of::<Counters>()),
            ),
            (
                "XLB_BACKEND_STATS",
                per_cpu(MAX_BACKENDS, size_of::<Counters>()),
            ),
            ("XLB_OUTCOMES", per_cpu(Outcome::COUNT, 8)),
            ("XLB_FLOW_EVENTS", per_cpu(FlowEvent::COUNT, 8)),
            (
                "XLB_RECENT_FLOWS",
                per_cpu(RECENT_FLOW_SLOTS, size_of::<RecentFlow>()),
            ),
            ("XLB_SYN_TIMES", array(RECENT_FLOW_SLOTS, 8)),
            (
                "XLB_FLOW_TOUCHES",
                array(FLOW_TOUCH_SLOTS / 2, size_of::<FlowTouchPair>()),
            ),
            (
                "XLB_NAT_SOURCES",
                hash(
                    MAX_NAT_SOURCES,
                    size_of::<NatSource>(),
                    size_of::<NatReply>(),
                ),
            ),
            ("XLB_NAT_FILTER", array(NAT_FILTER_WORDS, 8)),
            (
                "XLB_PERSISTENCE",
                hash(
                    PERSISTENCE_ENTRIES,
                    size_of::<PersistenceKey>(),
                    size_of::<FlowValue>(),
                ),
            ),
            (
                "XLB_RECENT_REPLIES",
                per_cpu(RECENT_REPLY_SLOTS, size_of::<RecentReply>()),
            ),
            (
                "XLB_RECENT_NAT_SOURCES",
                per_cpu(RECENT_NAT_SOURCE_SLOTS, size_of::<RecentNatSource>()),
            ),
        ],
        flows: hash(flow_entries, size_of::<FlowKey>(), size_of::<FlowValue>()),
        flow_entries,
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// One limit a config goes over, where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverLimit {
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for OverLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin.span() {
            Some(span) => write!(f, "{span}: error: {}", self.message),
            None => write!(f, "error: {}", self.message),
        }
    }
}

/// Checks every limit; the errors, in file order, or what the config uses.
pub fn check(config: &Config) -> Result<Usage, Vec<OverLimit>> {
    let maglev_size = config.global_defs.xlb_maglev_table_size;
    let limit = max_services(maglev_size);
    let mut errors = Vec::new();
    let services = &config.virtual_servers;
    if let Some(vs) = services.get(limit as usize) {
        let note = if limit < MAX_SERVICES {
            format!(
                " with xlb_maglev_table_size {maglev_size} ({} table slots)",
                table_slots(maglev_size)
            )
        } else {
            String::new()
        };
        errors.push(OverLimit {
            origin: vs.origin.clone(),
            message: format!(
                "found virtual service number {} ({} in all), expected at most {limit}: xlb's \
                 limit{note}",
                limit + 1,
                services.len()
            ),
        });
    }
    let mut backends = 0usize;
    let mut over_backends = false;
    let mut loosely_balanced = Vec::new();
    for vs in services {
        if vs.real_servers.len() > MAX_MEMBERS as usize {
            errors.push(OverLimit {
                origin: vs.real_servers[MAX_MEMBERS as usize].origin.clone(),
                message: format!(
                    "found real server number {} of one virtual service, expected at most \
                     {MAX_MEMBERS}: xlb's limit of members in one Maglev table",
                    MAX_MEMBERS + 1
                ),
            });
        }
        for rs in &vs.real_servers {
            backends += 1;
            if backends > MAX_BACKENDS as usize && !over_backends {
                over_backends = true;
                errors.push(OverLimit {
                    origin: rs.origin.clone(),
                    message: format!(
                        "found real-server entry number {backends} (each real server of each \
                         virtual service is one), expected at most {MAX_BACKENDS}: xlb's limit"
                    ),
                });
            }
        }
        if vs.sorry_server.is_some() {
            backends += 1;
        }
        if table_size_for(vs.real_servers.len()) > maglev_size {
            loosely_balanced.push(format!(
                "{} {}:{} ({} real servers)",
                vs.protocol.name(),
                vs.address,
                vs.port,
                vs.real_servers.len()
            ));
        }
    }
    if backends > MAX_BACKENDS as usize && !over_backends {
        // Only sorry servers took it over the limit.
        errors.push(OverLimit {
            origin: Origin::default(),
            message: format!(
                "found {backends} real-server entries with the sorry servers, expected at most \
                 {MAX_BACKENDS}: xlb's limit"
            ),
        });
    }

    // Addresses the data plane tracks: every VIP address and every VRRP virtual address.
    let mut addresses: BTreeSet<IpAddr> = BTreeSet::new();
    let address_limit = 2 * MAX_SERVICES as usize;
    let mut over_addresses = false;
    let mut add = |ip: IpAddr, origin: &Origin, errors: &mut Vec<OverLimit>| {
        if addresses.insert(ip) && addresses.len() > address_limit && !over_addresses {
            over_addresses = true;
            errors.push(OverLimit {
                origin: origin.clone(),
                message: format!(
                    "found address number {} ({ip}) among VIPs and virtual addresses, expected \
                     at most {address_limit}: xlb's limit",
                    addresses.len()
                ),
            });
        }
    };
    for vs in services {
        add(vs.address, &vs.origin, &mut errors);
    }
    for vi in &config.vrrp_instances {
        for vip in vi
            .virtual_ipaddress
            .iter()
            .chain(&vi.virtual_ipaddress_excluded)
        {
            add(vip.address, &vi.origin, &mut errors);
        }
    }
    // Claim 0 is for VIPs no instance holds.
    if let Some(vi) = config.vrrp_instances.get(MAX_CLAIMS as usize - 1) {
        errors.push(OverLimit {
            origin: vi.origin.clone(),
            message: format!(
                "found VRRP instance number {}, expected at most {}: xlb's limit",
                MAX_CLAIMS,
                MAX_CLAIMS - 1
            ),
        });
    }

    // The VIP table is placed the way the reconciler places it.
    if errors.is_empty() {
        let keys: BTreeMap<VipKey, VipValue> = services
            .iter()
            .map(|vs| {
                let key = VipKey {
                    addr: addr_words(vs.address),
                    port: vs.port.to_be(),
                    proto: crate::service::Protocol::from(vs.protocol).number(),
                    _pad: 0,
                };
                (key, VipValue::default())
            })
            .collect();
        if let Err(e) = place_vips(&keys) {
            errors.push(OverLimit {
                origin: Origin::default(),
                message: format!("{e:#}"),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let tables: BTreeSet<Vec<(IpAddr, u32)>> = services
        .iter()
        .map(|vs| {
            let mut reals: Vec<(IpAddr, u32)> = vs
                .real_servers
                .iter()
                .filter(|rs| rs.weight > 0)
                .map(|rs| (rs.address, rs.weight))
                .collect();
            reals.sort();
            reals
        })
        .collect();
    Ok(Usage {
        services: services.len(),
        max_services: limit,
        backends,
        tables: tables.len(),
        maglev_size,
        loosely_balanced,
    })
}

impl Usage {
    /// What `xlb check` says of a config beside printing it.
    pub fn summary(&self, memory: &Memory, cpus: usize) -> String {
        let mut out = format!(
            "xlb: {} virtual service(s) (limit {}), {} real-server entries (limit {MAX_BACKENDS}), \
             {} distinct Maglev table(s) of {} entries\n",
            self.services, self.max_services, self.backends, self.tables, self.maglev_size
        );
        out += &format!(
            "xlb: kernel memory {} for the maps ({} CPUs) + {} for a flow table of {} \
             connections\n",
            mib(memory.without_flows()),
            cpus,
            mib(memory.flows),
            memory.flow_entries
        );
        if !self.loosely_balanced.is_empty() {
            out += &format!(
                "xlb: note: {} service(s) have more real servers than tables of {} entries \
                 balance to within 1 % (M > 100 x real servers), e.g. {}; a larger \
                 xlb_maglev_table_size balances them better\n",
                self.loosely_balanced.len(),
                self.maglev_size,
                self.loosely_balanced[0]
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        lb_config::parse_str(text, "k.conf").expect("valid").config
    }

    fn services(n: usize, reals: usize) -> String {
        let mut text = String::new();
        for i in 0..n {
            text += &format!(
                "virtual_server 10.{}.{}.{} 80 {{\n lb_kind DR\n",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            );
            for r in 0..reals {
                text += &format!(" real_server 192.168.{}.{} 80 {{\n }}\n", r >> 8, r & 255);
            }
            text += "}\n";
        }
        text
    }

    #[test]
    fn services_over_the_limit_are_refused_at_the_first_one_over() {
        let c = config(&services(4097, 1));
        let e = check(&c).unwrap_err();
        assert_eq!(e.len(), 1);
        let line = 4096 * 5 + 1;
        assert_eq!(
            e[0].to_string(),
            format!(
                "k.conf:{line}:1: error: found virtual service number 4097 (4097 in all), \
                 expected at most 4096: xlb's limit"
            )
        );
        assert!(check(&config(&services(4096, 1))).is_ok());
    }

    #[test]
    fn a_group_s_services_count_each_and_the_one_over_is_its_line() {
        // 200 addresses on two ports: 400 services, over the 287 of a 131071 table; the 288th
        // is the 88th address of the group's second line.
        let text = "global_defs {\n xlb_maglev_table_size 131071\n}\n\
                    virtual_server_group g {\n 10.0.0.1-200 80\n 10.0.1.1-200 443\n}\n\
                    virtual_server group g {\n lb_algo mh\n lb_kind DR\n real_server 10.9.0.1 {\n }\n}\n";
        let c = config(text);
        assert_eq!(c.virtual_servers.len(), 400);
        let e = check(&c).unwrap_err();
        assert!(
            e[0].to_string().starts_with(
                "k.conf:6:2: error: found virtual service number 288 (400 in all), expected at \
                 most 287"
            ),
            "{}",
            e[0]
        );
    }

    #[test]
    fn larger_tables_leave_room_for_fewer_services() {
        let text = format!(
            "global_defs {{\n xlb_maglev_table_size 131071\n}}\n{}",
            services(288, 1)
        );
        let e = check(&config(&text)).unwrap_err();
        assert!(
            e[0].to_string()
                .contains("expected at most 287: xlb's limit with xlb_maglev_table_size 131071"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn real_server_entries_over_the_limit_name_the_first_over() {
        // 17 services of 4096 real servers: entry 65,537 is the first of the 17th.
        let c = config(&services(17, 4096));
        let e = check(&c).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        let per_service = 2 + 4096 * 2 + 1;
        let line = 16 * per_service + 3;
        assert!(
            e[0].to_string().starts_with(&format!(
                "k.conf:{line}:2: error: found real-server entry number 65537"
            )),
            "{}",
            e[0]
        );
        let c = config(&services(1, 4097));
        let e = check(&c).unwrap_err();
        assert!(
            e[0].to_string().contains("real server number 4097"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn shared_tables_are_counted_once_and_memory_fits_the_budget() {
        let c = config(&services(3, 4));
        let usage = check(&c).unwrap();
        assert_eq!((usage.services, usage.backends, usage.tables), (3, 12, 1));
        let m = memory(usage.maglev_size, 2, 1 << 21);
        assert!(m.without_flows() < 256 << 20, "{}", mib(m.without_flows()));
        let rings = m.maps.iter().find(|(n, _)| *n == "XLB_RINGS").unwrap().1;
        assert_eq!(rings, 4352 * 16381 * 2);
    }
}

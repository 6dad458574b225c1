//! The loaded XDP program under BPF_PROG_TEST_RUN, with the reconciler writing its maps as the
//! daemon does: what packet tests drive and what they predict with userspace's own code.

use std::{collections::HashMap, net::IpAddr};

use aya::programs::{TestRun as _, TestRunOptions};
use lb_common::{DEFAULT_MAGLEV_TABLE_SIZE, FlowEvent, Outcome, hash::Flow};
use lb_userspace::{
    dataplane::{Dataplane, LoadOptions},
    reconcile::{FlowTimeouts, Reconciler},
    service::{BackendPath, Protocol, RealServer, Service, addr_words, desired},
    tables::ServiceTable,
};

use crate::packet::{DIRECTOR_MAC, PacketSpec};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;
pub const SEED: u32 = 0x5eed;
/// BPF_PROG_TEST_RUN without a context runs "on" the loopback device.
pub const LO_IFINDEX: u32 = 1;

pub fn backend_mac(i: u8) -> [u8; 6] {
    [0x02, 0xbe, 0, 0, 0, i]
}

pub struct Harness {
    pub dp: Dataplane,
    pub reconciler: Reconciler,
    pub services: Vec<Service>,
    pub paths: HashMap<IpAddr, BackendPath>,
}

impl Harness {
    /// VIPs 10.0.0.100:80/TCP, 10.0.0.100:53/UDP, [2001:db8::100]:80/TCP and :53/UDP, each on
    /// three backends with weights 1, 2, 3.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let mut services = Vec::new();
        for (vip, backends) in [
            ("10.0.0.100", ["10.0.1.1", "10.0.1.2", "10.0.1.3"]),
            (
                "2001:db8::100",
                ["2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"],
            ),
        ] {
            for (port, protocol) in [(80, Protocol::Tcp), (53, Protocol::Udp)] {
                let ip: IpAddr = vip.parse().unwrap();
                services.push(Service {
                    vip: (ip, port).into(),
                    protocol,
                    source_hash: false,
                    persistence: 0,
                    forwarding: lb_common::Forwarding::DirectRouting,
                    real_servers: backends
                        .iter()
                        .zip(1..)
                        .map(|(b, w)| RealServer {
                            addr: (b.parse::<IpAddr>().unwrap(), port).into(),
                            weight: w,
                            alive: true,
                        })
                        .collect(),
                });
            }
        }
        let mut paths = HashMap::new();
        for (i, b) in [
            "10.0.1.1",
            "10.0.1.2",
            "10.0.1.3",
            "2001:db8:1::1",
            "2001:db8:1::2",
            "2001:db8:1::3",
        ]
        .iter()
        .enumerate()
        {
            paths.insert(
                b.parse().unwrap(),
                BackendPath {
                    ifindex: LO_IFINDEX,
                    mac: backend_mac(i as u8 + 1),
                    src_mac: DIRECTOR_MAC,
                },
            );
        }
        Self::with(services, paths, 1 << 16)
    }

    /// Any services, their backends' paths, a flow table of `flow_table_size` entries; applied.
    pub fn with(
        services: Vec<Service>,
        paths: HashMap<IpAddr, BackendPath>,
        flow_table_size: u32,
    ) -> Self {
        let dp = Dataplane::load(
            None,
            LoadOptions {
                flow_table_size,
                maglev_size: DEFAULT_MAGLEV_TABLE_SIZE,
            },
        )
        .expect("loading the XDP program (run as root)");
        let timeouts = FlowTimeouts {
            tcp_idle: dp.clock().ticks(std::time::Duration::from_secs(900)),
            udp_idle: dp.clock().ticks(std::time::Duration::from_secs(300)),
            syn_window: dp.clock().ticks(lb_userspace::reconcile::SYN_WINDOW),
            ticks_per_second: dp.clock().ticks(std::time::Duration::from_secs(1)),
        };
        let mut h = Self {
            dp,
            reconciler: Reconciler::new(SEED, DEFAULT_MAGLEV_TABLE_SIZE, timeouts),
            services,
            paths,
        };
        h.apply(true);
        h
    }

    pub fn apply(&mut self, active: bool) {
        let d = desired(&self.services, &self.paths, active);
        self.reconciler.apply(&mut self.dp, &d).expect("reconcile");
    }

    /// Runs the program on `frame` as if it arrived on interface `ifindex` (of the network
    /// namespace the calling thread is in, which the program's route lookups then use).
    pub fn run_on(&mut self, frame: &[u8], ifindex: u32) -> (u32, Vec<u8>) {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex.
        let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let mut out = vec![0u8; frame.len() + 512];
        let result = self
            .dp
            .program()
            .unwrap()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    pub fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; frame.len() + 512];
        let result = self
            .dp
            .program()
            .unwrap()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    pub fn outcome(&self, o: Outcome) -> u64 {
        self.dp.stats().unwrap().outcome(o)
    }

    pub fn flow_event(&self, e: FlowEvent) -> u64 {
        self.dp.stats().unwrap().flow_event(e)
    }

    pub fn service(&self, vip: &str, protocol: Protocol) -> Service {
        let vip: IpAddr = vip.parse().unwrap();
        self.services
            .iter()
            .find(|s| s.vip.ip() == vip && s.protocol == protocol)
            .unwrap()
            .clone()
    }

    /// The backend MAC the program sends a frame to.
    pub fn forwarded_to(&mut self, frame: &[u8]) -> [u8; 6] {
        let (action, out) = self.run(frame);
        assert_eq!(action, XDP_TX);
        out[0..6].try_into().unwrap()
    }

    /// The backend userspace predicts for a flow: same hash, same table, same builder.
    pub fn predict(&self, flow: &Flow, service: &Service) -> IpAddr {
        self.table_of(service)
            .place(flow.hash(SEED, service.source_hash))
            .unwrap()
    }

    /// The Maglev table of a service as the reconciler builds it.
    pub fn table_of(&self, service: &Service) -> Predicted {
        let live: Vec<&RealServer> = service.real_servers.iter().filter(|rs| rs.alive).collect();
        let members: Vec<(IpAddr, u16, u32)> = live
            .iter()
            .map(|rs| (rs.addr.ip(), rs.addr.port(), rs.weight))
            .collect();
        Predicted {
            table: ServiceTable::new(&members, DEFAULT_MAGLEV_TABLE_SIZE).unwrap(),
            ips: live.iter().map(|rs| rs.addr.ip()).collect(),
        }
    }

    pub fn mac_of(&self, ip: IpAddr) -> [u8; 6] {
        self.paths[&ip].mac
    }
}

/// A service's table with the address of each member it may name.
pub struct Predicted {
    pub table: ServiceTable,
    pub ips: Vec<IpAddr>,
}

impl Predicted {
    pub fn place(&self, hash: u32) -> Option<IpAddr> {
        self.table.place(hash).map(|i| self.ips[i])
    }
}

pub fn flow_of(spec: &PacketSpec) -> Flow {
    Flow {
        src: addr_words(spec.src),
        dst: addr_words(spec.dst),
        src_port: spec.src_port.to_be(),
        dst_port: spec.dst_port.to_be(),
        proto: spec.l4.number(),
    }
}

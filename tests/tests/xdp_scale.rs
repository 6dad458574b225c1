//! Thousands of services on one director, under BPF_PROG_TEST_RUN with the reconciler writing
//! the maps as the daemon does: the 4,096-service config of an edge director, tables shared by
//! services with the same real servers, and a SYN flood against the flow table.

use std::{
    collections::{BTreeSet, HashMap},
    net::{IpAddr, Ipv4Addr},
    process::Command,
    time::Instant,
};

use lb_common::FlowEvent;
use lb_userspace::{
    health,
    service::{BackendPath, Protocol, RealServer, Service},
};
use rand::{Rng as _, SeedableRng as _};
use xlb_tests::{
    edge,
    harness::{Harness, LO_IFINDEX, XDP_TX, flow_of},
    lab::xlb_binary,
    packet::{DIRECTOR_MAC, L4, PacketSpec},
};

fn mac_of_real(r: usize) -> [u8; 6] {
    [0x02, 0xbe, 0, 0, (r >> 8) as u8, r as u8]
}

fn edge_paths() -> HashMap<IpAddr, BackendPath> {
    edge::real_ips()
        .enumerate()
        .map(|(r, ip)| {
            (
                ip,
                BackendPath {
                    ifindex: LO_IFINDEX,
                    mac: mac_of_real(r),
                    src_mac: DIRECTOR_MAC,
                },
            )
        })
        .collect()
}

fn services_of(text: &str) -> Vec<Service> {
    let loaded = lb_config::parse_str(text, "edge.conf").expect("the edge config parses");
    health::configured(&loaded.config)
}

/// A SYN from a random client to a random service; the service's index.
fn random_syn(rng: &mut impl rand::Rng, services: &[Service]) -> (usize, PacketSpec) {
    let s = rng.gen_range(0..services.len());
    let service = &services[s];
    let l4 = match service.protocol {
        Protocol::Tcp => L4::Tcp,
        Protocol::Udp => L4::Udp,
    };
    let client = Ipv4Addr::from(rng.r#gen::<u32>() | 0x0100_0000);
    let spec = PacketSpec::new(
        &client.to_string(),
        &service.vip.ip().to_string(),
        rng.gen_range(1024..65535),
        service.vip.port(),
        l4,
    );
    (s, spec)
}

#[test]
fn an_edge_config_of_4096_services_is_served() {
    let text = edge::config(&[]);
    let dir = std::env::temp_dir().join(format!("xlb-edge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("edge.conf");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(xlb_binary())
        .args(["check", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("4096 virtual service(s) (limit 4096)"),
        "{said}"
    );
    assert!(said.contains("16384 real-server entries"), "{said}");
    assert!(said.contains("kernel memory"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);

    let services = services_of(&text);
    assert_eq!(services.len(), 4096);
    let started = Instant::now();
    let mut h = Harness::with(services.clone(), edge_paths(), 1 << 16);
    eprintln!("4,096 services applied in {:?}", started.elapsed());

    // Each VIP's four services share one table: as many tables as VIPs with distinct reals.
    let distinct: BTreeSet<[usize; 4]> = (0..edge::VIPS)
        .map(|i| {
            let mut r = edge::reals_of(i);
            r.sort();
            r
        })
        .collect();
    assert_eq!(h.reconciler.tables_in_use(), distinct.len());
    for i in [0, 511, 1023] {
        let slots: BTreeSet<Option<u32>> = services[4 * i..4 * i + 4]
            .iter()
            .map(|s| h.reconciler.table_of(&s.key()))
            .collect();
        assert_eq!(slots.len(), 1, "VIP {i}'s services share a table");
        let slot = slots.into_iter().next().flatten().unwrap();
        let predicted = h.table_of(&services[4 * i]);
        assert_eq!(
            h.dp.table(slot),
            predicted.table.entries(),
            "the kernel's table"
        );
    }

    // A sample of new connections to random services: each to one of its own real servers,
    // the one userspace predicts.
    let mut rng = rand::rngs::StdRng::seed_from_u64(4096);
    for _ in 0..400 {
        let (s, spec) = random_syn(&mut rng, &services);
        let want = h.predict(&flow_of(&spec), &services[s]);
        let (action, out) = h.run(&spec.build());
        assert_eq!(action, XDP_TX, "{spec:?}");
        assert_eq!(&out[0..6], &h.mac_of(want), "{spec:?}");
    }

    // One real server removed from the config: new connections no longer reach it.
    let removed = 5;
    let started = Instant::now();
    h.services = services_of(&edge::config(&[removed]));
    h.apply(true);
    eprintln!(
        "removing one real server from 4,096 services applied in {:?}",
        started.elapsed()
    );
    let affected: Vec<usize> = (0..h.services.len())
        .filter(|&s| edge::reals_of(s / 4).contains(&removed))
        .collect();
    assert!(
        affected.len() >= 4 * 32,
        "{} services had it",
        affected.len()
    );
    let gone = mac_of_real(removed);
    let mut reached_others = 0;
    for n in 0..600usize {
        let s = affected[n % affected.len()];
        let (_, spec) = random_syn(&mut rng, &h.services[s..s + 1]);
        let (action, out) = h.run(&spec.build());
        assert_eq!(action, XDP_TX, "{spec:?}");
        assert_ne!(
            &out[0..6],
            &gone,
            "{spec:?} reached the removed real server"
        );
        reached_others += 1;
    }
    assert_eq!(reached_others, 600);
}

#[test]
fn services_with_the_same_reals_share_one_table_until_one_changes() {
    let reals = ["10.0.1.1", "10.0.1.2", "10.0.1.3"];
    let service = |port: u16, weights: [u32; 3]| Service {
        vip: (IpAddr::from([10, 0, 0, 100]), port).into(),
        protocol: Protocol::Tcp,
        source_hash: false,
        persistence: 0,
        forwarding: lb_common::Forwarding::DirectRouting,
        real_servers: reals
            .iter()
            .zip(weights)
            .map(|(ip, weight)| RealServer {
                addr: (ip.parse::<IpAddr>().unwrap(), port).into(),
                weight,
                alive: true,
            })
            .collect(),
    };
    let paths: HashMap<IpAddr, BackendPath> = reals
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            (
                ip.parse().unwrap(),
                BackendPath {
                    ifindex: LO_IFINDEX,
                    mac: mac_of_real(i),
                    src_mac: DIRECTOR_MAC,
                },
            )
        })
        .collect();
    let mut h = Harness::with(
        vec![service(80, [1, 2, 3]), service(443, [1, 2, 3])],
        paths,
        1 << 16,
    );
    let (http, https) = (h.services[0].key(), h.services[1].key());
    assert_eq!(h.reconciler.table_of(&http), h.reconciler.table_of(&https));
    assert_eq!(h.reconciler.tables_in_use(), 1);
    let check = |h: &mut Harness| {
        for port in [80u16, 443] {
            let s = h
                .services
                .iter()
                .position(|s| s.vip.port() == port)
                .unwrap();
            for client_port in 2000..2100 {
                let spec = PacketSpec::new("192.0.2.7", "10.0.0.100", client_port, port, L4::Tcp);
                let want = h.predict(&flow_of(&spec), &h.services[s].clone());
                assert_eq!(h.forwarded_to(&spec.build()), h.mac_of(want), "{spec:?}");
            }
        }
    };
    check(&mut h);

    h.services[1] = service(443, [1, 2, 6]);
    h.apply(true);
    assert_ne!(h.reconciler.table_of(&http), h.reconciler.table_of(&https));
    assert_eq!(h.reconciler.tables_in_use(), 2);
    check(&mut h);

    h.services[1] = service(443, [1, 2, 3]);
    h.apply(true);
    assert_eq!(h.reconciler.table_of(&http), h.reconciler.table_of(&https));
    check(&mut h);
}

/// A SYN is placed by Maglev but not remembered, so a flood of SYNs from random sources cannot
/// push established connections out of the flow table: after 300,000 of them into a 65,536-entry
/// table and a fourth backend added, every one of 1,000 established connections keeps its
/// backend (before, about a quarter moved), and new connections do reach the new backend.
#[test]
fn a_syn_flood_cannot_flush_established_flows() {
    let reals: Vec<IpAddr> = (1..=4).map(|i| IpAddr::from([10, 0, 1, i])).collect();
    let service = |n: usize| Service {
        vip: (IpAddr::from([10, 0, 0, 100]), 80).into(),
        protocol: Protocol::Tcp,
        source_hash: false,
        persistence: 0,
        forwarding: lb_common::Forwarding::DirectRouting,
        real_servers: reals[..n]
            .iter()
            .map(|ip| RealServer {
                addr: (*ip, 80).into(),
                weight: 1,
                alive: true,
            })
            .collect(),
    };
    let paths: HashMap<IpAddr, BackendPath> = reals
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            (
                *ip,
                BackendPath {
                    ifindex: LO_IFINDEX,
                    mac: mac_of_real(i),
                    src_mac: DIRECTOR_MAC,
                },
            )
        })
        .collect();
    let mut h = Harness::with(vec![service(3)], paths, 65_536);

    let established: Vec<PacketSpec> = (0..1000u32)
        .map(|i| {
            let client = Ipv4Addr::from(0xc633_0000 + i); // 198.51.0.0/16
            PacketSpec::new(&client.to_string(), "10.0.0.100", 40000, 80, L4::Tcp).established()
        })
        .collect();
    let before: Vec<[u8; 6]> = established
        .iter()
        .map(|s| h.forwarded_to(&s.build()))
        .collect();

    let mut rng = rand::rngs::StdRng::seed_from_u64(300_000);
    let started = Instant::now();
    let flood = 300_000;
    for _ in 0..flood {
        let client = Ipv4Addr::from(rng.r#gen::<u32>() | 0x0100_0000);
        let spec = PacketSpec::new(
            &client.to_string(),
            "10.0.0.100",
            rng.gen_range(1024..65535),
            80,
            L4::Tcp,
        );
        assert_eq!(h.run(&spec.build()).0, XDP_TX);
    }
    eprintln!("{flood} SYNs in {:?}", started.elapsed());
    assert!(h.flow_event(FlowEvent::Syn) >= flood);

    h.services = vec![service(4)];
    h.apply(true);
    let moved = established
        .iter()
        .zip(&before)
        .filter(|(s, mac)| h.forwarded_to(&s.build()) != **mac)
        .count();
    assert_eq!(moved, 0, "established connections that changed backend");

    // New connections: each SYN and the segment after it go to one backend, and the new
    // backend gets its share.
    let newcomer = mac_of_real(3);
    let mut on_newcomer = 0;
    for port in 0..1000u16 {
        let syn = PacketSpec::new("203.0.113.9", "10.0.0.100", 10_000 + port, 80, L4::Tcp);
        let first = h.forwarded_to(&syn.build());
        let ack = syn.clone().established();
        assert_eq!(
            h.forwarded_to(&ack.build()),
            first,
            "SYN then ACK of {syn:?}"
        );
        on_newcomer += usize::from(first == newcomer);
    }
    assert!(
        (150..350).contains(&on_newcomer),
        "the new backend's share of 1,000 new flows: {on_newcomer}"
    );
}

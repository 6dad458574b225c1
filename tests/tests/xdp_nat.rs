//! NAT (lb_kind NAT) under BPF_PROG_TEST_RUN: the exact bytes out, in both directions, for IPv4
//! and IPv6, TCP and UDP, with the real server's port differing from the VIP's. Every expected
//! frame is built from scratch by the test's packet builder (checksums computed whole), so
//! equality also proves the program's incremental checksum updates.
//!
//! Replies are routed by the kernel's FIB: they run "on" an interface of a network namespace
//! this test builds, with the client behind a second interface (a static neighbour entry), or
//! not yet resolved.

use std::{collections::HashMap, net::IpAddr};

use lb_common::{Forwarding, Outcome};
use lb_userspace::service::{BackendPath, Protocol, RealServer, Service};
use xlb_tests::{
    harness::{Harness, LO_IFINDEX, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX, backend_mac},
    lab::{Netns, mac_of, unique_name},
    packet::{self, DIRECTOR_MAC, L4, PacketSpec, TCP_ACK},
};

const VIP4: &str = "10.0.0.100";
const VIP6: &str = "2001:db8::100";
const CLIENT4: &str = "192.0.2.10";
const CLIENT6: &str = "2001:db8:c::10";
const CLIENT_MAC: [u8; 6] = [0x02, 0xc1, 0, 0, 0, 0x10];
/// The real servers: one per family, listening on other ports than the VIP's.
const RS4: &str = "10.0.2.1";
const RS6: &str = "2001:db8:2::1";
const RS_PORT_TCP: u16 = 8080;
const RS_PORT_UDP: u16 = 5353;

fn nat_service(vip: &str, port: u16, protocol: Protocol, rs: &str, rs_port: u16) -> Service {
    let vip: IpAddr = vip.parse().unwrap();
    let rs: IpAddr = rs.parse().unwrap();
    Service {
        vip: (vip, port).into(),
        protocol,
        source_hash: false,
        persistence: 0,
        forwarding: Forwarding::Nat,
        real_servers: vec![RealServer {
            addr: (rs, rs_port).into(),
            weight: 1,
            alive: true,
        }],
    }
}

fn harness() -> Harness {
    let services = vec![
        nat_service(VIP4, 80, Protocol::Tcp, RS4, RS_PORT_TCP),
        nat_service(VIP4, 53, Protocol::Udp, RS4, RS_PORT_UDP),
        nat_service(VIP6, 80, Protocol::Tcp, RS6, RS_PORT_TCP),
        nat_service(VIP6, 53, Protocol::Udp, RS6, RS_PORT_UDP),
    ];
    let paths = HashMap::from([
        (
            RS4.parse().unwrap(),
            BackendPath {
                ifindex: LO_IFINDEX,
                mac: backend_mac(1),
                src_mac: DIRECTOR_MAC,
            },
        ),
        (
            RS6.parse().unwrap(),
            BackendPath {
                ifindex: LO_IFINDEX,
                mac: backend_mac(2),
                src_mac: DIRECTOR_MAC,
            },
        ),
    ]);
    Harness::with(services, paths, 1 << 16)
}

fn with_macs(mut frame: Vec<u8>, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    frame
}

/// (what, vip, client, real server, vip port, real server port, protocol, backend MAC)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u16,
    u16,
    L4,
    u8,
);

fn cases() -> Vec<Case> {
    vec![
        ("IPv4 TCP", VIP4, CLIENT4, RS4, 80, RS_PORT_TCP, L4::Tcp, 1),
        ("IPv4 UDP", VIP4, CLIENT4, RS4, 53, RS_PORT_UDP, L4::Udp, 1),
        ("IPv6 TCP", VIP6, CLIENT6, RS6, 80, RS_PORT_TCP, L4::Tcp, 2),
        ("IPv6 UDP", VIP6, CLIENT6, RS6, 53, RS_PORT_UDP, L4::Udp, 2),
    ]
}

/// Client to VIP: destination rewritten to the real server's address and port, TTL one less,
/// Ethernet addresses to the real server's; sent back out (the real server is on the same
/// interface here).
#[test]
fn requests_go_to_the_real_server_address_and_port() {
    let mut h = harness();
    for (what, vip, client, rs, vport, rport, l4, mac) in cases() {
        for established in [false, true] {
            let mut spec = PacketSpec::new(client, vip, 40000, vport, l4);
            if established {
                spec = spec.established();
            }
            let (action, out) = h.run(&spec.build());
            let mut expected = spec.clone();
            expected.dst = rs.parse().unwrap();
            expected.dst_port = rport;
            let expected = with_macs(expected.ttl(63).build(), backend_mac(mac), DIRECTOR_MAC);
            assert_eq!(action, XDP_TX, "{what}");
            assert_eq!(out, expected, "{what} (established {established})");
        }
    }
    // An IPv4 UDP datagram without a checksum keeps none.
    let mut spec = PacketSpec::new(CLIENT4, VIP4, 40001, 53, L4::Udp);
    spec.no_udp_checksum = true;
    let (action, out) = h.run(&spec.build());
    let mut expected = spec.clone();
    expected.dst = RS4.parse().unwrap();
    expected.dst_port = RS_PORT_UDP;
    let expected = with_macs(expected.ttl(63).build(), backend_mac(1), DIRECTOR_MAC);
    assert_eq!((action, out), (XDP_TX, expected));

    // A TTL that would reach 0 on the way through: dropped, as a router drops it.
    let before = h.outcome(Outcome::DropTtlExceeded);
    for (_, vip, client, _, vport, _, l4, _) in cases() {
        let (action, _) = h.run(
            &PacketSpec::new(client, vip, 40002, vport, l4)
                .ttl(1)
                .build(),
        );
        assert_eq!(action, XDP_DROP);
    }
    assert_eq!(h.outcome(Outcome::DropTtlExceeded), before + 4);
}

/// A namespace where replies arrive: the real servers' side on `srv`, the client's on `cli`
/// (with a static neighbour entry for the client unless `resolved` is false), forwarding on.
struct ReplyNet {
    ns: Netns,
    srv: u32,
    cli: u32,
    cli_mac: [u8; 6],
}

impl ReplyNet {
    /// Puts the client's interface in `h`'s devmap, so replies can be redirected there.
    fn redirect_to_client(&self, h: &mut Harness) {
        let cli = self.cli;
        self.ns
            .enter(|| {
                h.dp.add_tx_port(cli)
                    .expect("the client's interface in the devmap")
            })
            .unwrap();
    }

    fn new(resolved: bool) -> Self {
        let ns = Netns::new(unique_name("natr")).expect("a namespace");
        for argv in [
            vec![
                "ip", "link", "add", "srv", "type", "veth", "peer", "name", "srvp",
            ],
            vec![
                "ip", "link", "add", "cli", "type", "veth", "peer", "name", "clip",
            ],
            vec!["ip", "addr", "add", "10.0.2.254/24", "dev", "srv"],
            vec!["ip", "addr", "add", "192.0.2.254/24", "dev", "cli"],
            vec![
                "ip",
                "addr",
                "add",
                "2001:db8:2::fe/64",
                "dev",
                "srv",
                "nodad",
            ],
            vec![
                "ip",
                "addr",
                "add",
                "2001:db8:c::fe/64",
                "dev",
                "cli",
                "nodad",
            ],
            vec!["sysctl", "-qw", "net.ipv4.ip_forward=1"],
            vec!["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"],
        ] {
            ns.run(&argv).unwrap();
        }
        for dev in ["srv", "srvp", "cli", "clip"] {
            ns.run(&["ip", "link", "set", dev, "up"]).unwrap();
        }
        if resolved {
            let mac = CLIENT_MAC
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":");
            for client in [CLIENT4, CLIENT6] {
                ns.run(&[
                    "ip",
                    "neigh",
                    "replace",
                    client,
                    "lladdr",
                    &mac,
                    "dev",
                    "cli",
                    "nud",
                    "permanent",
                ])
                .unwrap();
            }
        }
        // Asked of `ip`: /sys shows the namespace that mounted it, not this one.
        let index = |dev: &str| -> u32 {
            let line = ns.run(&["ip", "-o", "link", "show", "dev", dev]).unwrap();
            line.split(':').next().unwrap().trim().parse().unwrap()
        };
        let (srv, cli) = (index("srv"), index("cli"));
        let cli_mac = mac_of(&ns, "cli").unwrap();
        Self {
            ns,
            srv,
            cli,
            cli_mac,
        }
    }
}

/// Real server to client: the VIP's address and port back as the source, TTL one less, then
/// where the FIB says the client is: redirected to the client's interface with the neighbour's
/// MAC. The director never saw the connection (no flow table entry): the mapping is enough.
#[test]
fn replies_get_the_vip_back_and_go_where_the_client_is() {
    let mut h = harness();
    let net = ReplyNet::new(true);
    net.redirect_to_client(&mut h);
    for (what, vip, client, rs, vport, rport, l4, _) in cases() {
        let mut reply = PacketSpec::new(rs, client, rport, 40000, l4);
        reply.tcp_flags = TCP_ACK;
        let (action, out) = net.ns.enter(|| h.run_on(&reply.build(), net.srv)).unwrap();
        let mut expected = reply.clone();
        expected.src = vip.parse().unwrap();
        expected.src_port = vport;
        let expected = with_macs(expected.ttl(63).build(), CLIENT_MAC, net.cli_mac);
        assert_eq!(action, XDP_REDIRECT, "{what}");
        assert_eq!(out, expected, "{what}");
    }
    // Replies are counted out on their backend.
    let stats = h.dp.stats().unwrap();
    let out_packets: u64 = stats.backends.iter().map(|b| b.counters.out_packets).sum();
    assert_eq!(out_packets, 4);

    // To this host itself (a health check's answer, from the real server's service port):
    // the director's own connection, untouched.
    for (_, _, _, rs, _, rport, l4, _) in cases() {
        let own = if rs.contains(':') {
            "2001:db8:2::fe"
        } else {
            "10.0.2.254"
        };
        let answer = PacketSpec::new(rs, own, rport, 40000, l4).established();
        let (action, out) = net.ns.enter(|| h.run_on(&answer.build(), net.srv)).unwrap();
        assert_eq!((action, out), (XDP_PASS, answer.build()));
    }

    // From a real server port no service uses: not a reply to translate.
    let other = PacketSpec::new(RS4, CLIENT4, 9999, 40000, L4::Tcp).established();
    let (action, out) = net.ns.enter(|| h.run_on(&other.build(), net.srv)).unwrap();
    assert_eq!((action, out), (XDP_PASS, other.build()));
}

/// After a takeover the new master may have no neighbour entry for the client yet: the reply
/// is handed to the kernel already translated (it forwards it and resolves the neighbour), never
/// untranslated.
#[test]
fn an_unresolved_client_gets_its_reply_through_the_kernel_translated() {
    let mut h = harness();
    let net = ReplyNet::new(false);
    let before = h.outcome(Outcome::PassNatUnresolved);
    for (what, vip, client, rs, vport, rport, l4, _) in cases() {
        let reply = PacketSpec::new(rs, client, rport, 40000, l4).established();
        let frame = reply.build();
        let (action, out) = net.ns.enter(|| h.run_on(&frame, net.srv)).unwrap();
        let mut expected = reply.clone();
        expected.src = vip.parse().unwrap();
        expected.src_port = vport;
        // The Ethernet addresses are the kernel's to choose.
        let expected = with_macs(expected.ttl(63).build(), frame[0..6].try_into().unwrap(), {
            let mut m = [0; 6];
            m.copy_from_slice(&frame[6..12]);
            m
        });
        assert_eq!(action, XDP_PASS, "{what}");
        assert_eq!(out, expected, "{what}");
    }
    assert_eq!(h.outcome(Outcome::PassNatUnresolved), before + 4);
}

/// An ICMP type and code.
type Kind = (u8, u8);

/// The ICMP errors a NAT director translates, as (what, IPv4 type/code, ICMPv6 type/code).
const ERRORS: [(&str, Kind, Kind); 3] = [
    ("port unreachable", (3, 3), (1, 4)),
    ("fragmentation needed / packet too big", (3, 4), (2, 0)),
    ("time exceeded", (11, 0), (3, 0)),
];

/// A TCP or UDP packet with a little data, whole (IP header included).
fn ip_of(src: &str, dst: &str, sport: u16, dport: u16, l4: L4) -> Vec<u8> {
    let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    let segment = packet::l4_segment(src, dst, sport, dport, l4, TCP_ACK, b"quoted data");
    packet::ip_packet(src, dst, l4.number(), &segment)
}

/// How much of the quoted packet an error carries: its IP header and 8 bytes (a router's
/// IPv4 error: the TCP checksum is not in it), or all of it (the UDP/TCP checksum is).
fn quote_lengths(ip: &str) -> [usize; 2] {
    let header = if ip.contains(':') { 40 } else { 20 };
    [header + 8, usize::MAX]
}

/// The client's error about a reply (VIP:vport to client) goes to the real server, about its
/// own packet (real server:rport to client): the error's destination and the quote's source
/// translated, every checksum (IP, quoted IP, quoted TCP/UDP when quoted, ICMP) as if
/// computed whole.
#[test]
fn errors_from_the_client_side_reach_the_real_server_translated() {
    let mut h = harness();
    for (what, vip, client, rs, vport, rport, l4, mac) in cases() {
        for (error, v4_kind, v6_kind) in ERRORS {
            let (kind, code) = if vip.contains(':') { v6_kind } else { v4_kind };
            for quote in quote_lengths(vip) {
                let reply = ip_of(vip, client, vport, 40000, l4);
                let frame = packet::icmp_error(
                    client.parse().unwrap(),
                    vip.parse().unwrap(),
                    kind,
                    code,
                    &reply,
                    quote,
                    64,
                );
                let (action, out) = h.run(&frame);
                let own = ip_of(rs, client, rport, 40000, l4);
                let expected = with_macs(
                    packet::icmp_error(
                        client.parse().unwrap(),
                        rs.parse().unwrap(),
                        kind,
                        code,
                        &own,
                        quote,
                        63,
                    ),
                    backend_mac(mac),
                    DIRECTOR_MAC,
                );
                assert_eq!(action, XDP_TX, "{what} {error} quote {quote}");
                assert_eq!(out, expected, "{what} {error} quote {quote}");
            }
        }
    }
}

/// The real server's error about a request (client to real server:rport), or a router's on
/// the server side, goes back to the client about the packet the client sent (client to
/// VIP:vport): the quote's destination translated, and the error's source when the real server
/// sent it; routed to the client's interface.
#[test]
fn errors_from_the_server_side_reach_the_client_translated() {
    let mut h = harness();
    let net = ReplyNet::new(true);
    net.redirect_to_client(&mut h);
    for (what, vip, client, rs, vport, rport, l4, _) in cases() {
        let router = if rs.contains(':') {
            "2001:db8:2::77"
        } else {
            "10.0.2.77"
        };
        for (error, v4_kind, v6_kind) in ERRORS {
            let (kind, code) = if vip.contains(':') { v6_kind } else { v4_kind };
            for quote in quote_lengths(vip) {
                for (sender, sender_after) in [(rs, vip), (router, router)] {
                    let request = ip_of(client, rs, 40000, rport, l4);
                    let frame = packet::icmp_error(
                        sender.parse().unwrap(),
                        client.parse().unwrap(),
                        kind,
                        code,
                        &request,
                        quote,
                        64,
                    );
                    let (action, out) = net.ns.enter(|| h.run_on(&frame, net.srv)).unwrap();
                    let sent = ip_of(client, vip, 40000, vport, l4);
                    let expected = with_macs(
                        packet::icmp_error(
                            sender_after.parse().unwrap(),
                            client.parse().unwrap(),
                            kind,
                            code,
                            &sent,
                            quote,
                            63,
                        ),
                        CLIENT_MAC,
                        net.cli_mac,
                    );
                    let case = format!("{what} {error} quote {quote} from {sender}");
                    assert_eq!(action, XDP_REDIRECT, "{case}");
                    assert_eq!(out, expected, "{case}");
                }
            }
        }
    }
}

/// A fragment from a NAT real server may carry part of a reply, which cannot be translated
/// without its ports: dropped and counted, never forwarded with the real server's address. A
/// fragment from another host on that side is the kernel's.
#[test]
fn fragments_from_real_servers_are_dropped() {
    let mut h = harness();
    let before = h.outcome(Outcome::DropFragment);
    let mut first = PacketSpec::new(RS4, CLIENT4, RS_PORT_UDP, 40000, L4::Udp).build();
    first[14 + 6] = 0x20; // MF
    let mut later = first.clone();
    later[14 + 6] = 0x00;
    later[14 + 7] = 0xb9; // offset 185 * 8
    let mut payload = vec![17, 0, 0, 1, 0, 0, 0, 1];
    payload.extend(packet::l4_segment(
        RS6.parse().unwrap(),
        CLIENT6.parse().unwrap(),
        RS_PORT_UDP,
        40000,
        L4::Udp,
        0,
        b"",
    ));
    let v6 = packet::ethernet(
        None,
        0x86dd,
        &packet::ip_packet(RS6.parse().unwrap(), CLIENT6.parse().unwrap(), 44, &payload),
    );
    for (what, frame) in [("first", &first), ("later", &later), ("IPv6", &v6)] {
        assert_eq!(h.run(frame).0, XDP_DROP, "{what}");
    }
    assert_eq!(h.outcome(Outcome::DropFragment), before + 3);
    let mut other = PacketSpec::new("10.0.2.77", CLIENT4, 9999, 40000, L4::Udp).build();
    other[14 + 6] = 0x20;
    assert_eq!(h.run(&other), (XDP_PASS, other.clone()));
}

/// Replies from one real server to one client reuse this CPU's route for the rest of the
/// jiffy, but never past the route's MTU: a reply larger than the client's link takes the FIB's answer (too big: handed
/// to the kernel, which sends the real server "fragmentation needed"), however recently a
/// small one was redirected.
#[test]
fn a_recent_reply_keeps_the_mtu_check() {
    let mut h = harness();
    let net = ReplyNet::new(true);
    net.ns
        .run(&["ip", "link", "set", "cli", "mtu", "1000"])
        .unwrap();
    net.redirect_to_client(&mut h);
    let small = PacketSpec::new(RS4, CLIENT4, RS_PORT_TCP, 40000, L4::Tcp).established();
    let mut large = small.clone();
    large.payload = vec![0x5a; 1200];
    let before = h.outcome(Outcome::PassNatUnresolved);
    for _ in 0..3 {
        let (action, _) = net.ns.enter(|| h.run_on(&small.build(), net.srv)).unwrap();
        assert_eq!(action, XDP_REDIRECT);
        let (action, _) = net.ns.enter(|| h.run_on(&large.build(), net.srv)).unwrap();
        assert_eq!(action, XDP_PASS, "a reply over the client link's MTU");
    }
    assert_eq!(h.outcome(Outcome::PassNatUnresolved), before + 3);
}

/// Each CPU keeps copies of the NAT source entries it used; a reload that gives a real server
/// to another service makes them stale at once: the next reply carries the new service's VIP
/// and port, and a removed real server's replies are no longer translated.
#[test]
fn a_reload_reaches_replies_at_once() {
    let mut h = harness();
    let net = ReplyNet::new(true);
    net.redirect_to_client(&mut h);
    let reply = PacketSpec::new(RS4, CLIENT4, RS_PORT_TCP, 40000, L4::Tcp).established();
    let source_of = |h: &mut Harness| {
        let (action, out) = net.ns.enter(|| h.run_on(&reply.build(), net.srv)).unwrap();
        (
            action,
            out[26..30].to_vec(),
            u16::from_be_bytes([out[34], out[35]]),
        )
    };
    let vip4: std::net::Ipv4Addr = VIP4.parse().unwrap();
    for _ in 0..2 {
        assert_eq!(
            source_of(&mut h),
            (XDP_REDIRECT, vip4.octets().to_vec(), 80)
        );
    }
    // The real server moves to another VIP and port.
    let i = h
        .services
        .iter()
        .position(|s| s.vip.port() == 80 && s.vip.ip() == IpAddr::from(vip4))
        .unwrap();
    h.services[i] = nat_service("10.0.0.200", 8000, Protocol::Tcp, RS4, RS_PORT_TCP);
    h.apply(true);
    assert_eq!(
        source_of(&mut h),
        (XDP_REDIRECT, vec![10, 0, 0, 200], 8000),
        "the reply follows the reload"
    );
    // It leaves the config: its replies are its own traffic again.
    h.services.remove(i);
    h.apply(true);
    let (action, out) = net.ns.enter(|| h.run_on(&reply.build(), net.srv)).unwrap();
    assert_eq!((action, out), (XDP_PASS, reply.build()));
}

/// Malformed NAT traffic is never forwarded, nor rewritten: quotes cut short, ICMP hidden in
/// Ethernet padding, transport headers cut short, in both directions.
#[test]
fn malformed_nat_frames_are_never_forwarded() {
    let mut h = harness();
    let net = ReplyNet::new(true);
    let v4 = |s: &str| -> IpAddr { s.parse().unwrap() };
    let request = ip_of(CLIENT4, RS4, 40000, RS_PORT_TCP, L4::Tcp);
    let reply = ip_of(VIP4, CLIENT4, 80, 40000, L4::Tcp);
    let server_error = |quote| packet::icmp_error(v4(RS4), v4(CLIENT4), 3, 3, &request, quote, 64);
    let client_error = |quote| packet::icmp_error(v4(CLIENT4), v4(VIP4), 3, 3, &reply, quote, 64);
    let cut = |frame: Vec<u8>, keep: usize| frame[..keep].to_vec();
    let reply_frame = PacketSpec::new(RS4, CLIENT4, RS_PORT_TCP, 40000, L4::Tcp)
        .established()
        .build();
    let request_frame = PacketSpec::new(CLIENT4, VIP4, 40000, 80, L4::Tcp)
        .established()
        .build();
    // (what, frame, arriving on the server side)
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "server's error quoting no ports",
            server_error(20 + 2),
            true,
        ),
        (
            "server's error hidden in padding",
            packet::with_ip_length(server_error(usize::MAX), 20),
            true,
        ),
        (
            "client's error quoting no ports",
            client_error(20 + 2),
            false,
        ),
        (
            "client's error whose quote ends past the IP packet",
            packet::with_ip_length(client_error(usize::MAX), 20 + 8 + 20),
            false,
        ),
        (
            "reply with its TCP header cut short",
            packet::with_ip_length(cut(reply_frame.clone(), 14 + 20 + 10), 20 + 10),
            true,
        ),
        (
            "request with its TCP header cut short",
            packet::with_ip_length(cut(request_frame.clone(), 14 + 20 + 10), 20 + 10),
            false,
        ),
        (
            "reply frame cut inside the IP header",
            cut(reply_frame, 14 + 12),
            true,
        ),
    ];
    let before = h.outcome(Outcome::PassMalformed);
    for (what, frame, server_side) in &cases {
        let (action, out) = if *server_side {
            net.ns.enter(|| h.run_on(frame, net.srv)).unwrap()
        } else {
            h.run(frame)
        };
        assert_eq!((action, &out), (XDP_PASS, frame), "{what}");
    }
    assert_eq!(
        h.outcome(Outcome::PassMalformed),
        before + cases.len() as u64
    );
}

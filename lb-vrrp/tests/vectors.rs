//! Real keepalived 2.2.7 captures (tests/vectors/*.pcap, each with the keepalived.conf it was
//! captured with): every advert must decode to what the conf says and re-encode to the same
//! bytes; an [`Instance`] configured like the conf must produce those bytes itself; and the
//! gratuitous ARP / unsolicited NA frames must match the builders.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lb_vrrp::packet::{self, MULTICAST_V4, MULTICAST_V6};
use lb_vrrp::{Action, Auth, Instance, InstanceConfig, RxMeta, State, Version};

/// Classic pcap (not pcapng), either byte order, micro- or nanosecond timestamps.
mod pcap {
    use std::time::Duration;

    pub const LINKTYPE_ETHERNET: u32 = 1;
    pub const LINKTYPE_LINUX_SLL: u32 = 113;
    pub const LINKTYPE_LINUX_SLL2: u32 = 276;

    pub struct Record {
        pub time: Duration,
        pub data: Vec<u8>,
    }

    pub struct Capture {
        pub linktype: u32,
        pub records: Vec<Record>,
    }

    pub fn parse(bytes: &[u8]) -> Result<Capture, String> {
        let header = bytes.get(..24).ok_or("file shorter than the pcap header")?;
        let magic = [header[0], header[1], header[2], header[3]];
        let (big_endian, nanos) = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
            _ => return Err(format!("not a classic pcap file (magic {magic:02x?})")),
        };
        let u32_at = |b: &[u8], at: usize| -> Result<u32, String> {
            let word: [u8; 4] = b
                .get(at..at + 4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| format!("truncated at byte {at}"))?;
            Ok(if big_endian {
                u32::from_be_bytes(word)
            } else {
                u32::from_le_bytes(word)
            })
        };
        let linktype = u32_at(bytes, 20)? & 0x0fff_ffff;
        let mut records = Vec::new();
        let mut at = 24;
        while at < bytes.len() {
            let secs = u32_at(bytes, at)?;
            let frac = u32_at(bytes, at + 4)?;
            let incl = usize::try_from(u32_at(bytes, at + 8)?).map_err(|e| e.to_string())?;
            let start = at + 16;
            let data = bytes
                .get(start..start + incl)
                .ok_or(format!("record at {at} truncated"))?;
            let sub = if nanos {
                Duration::from_nanos(frac.into())
            } else {
                Duration::from_micros(frac.into())
            };
            records.push(Record {
                time: Duration::from_secs(secs.into()) + sub,
                data: data.to_vec(),
            });
            at = start + incl;
        }
        Ok(Capture { linktype, records })
    }

    /// The network layer of a link-layer frame.
    pub struct NetworkLayer<'a> {
        pub ethertype: u16,
        pub bytes: &'a [u8],
        /// Source MAC, when the link type carries one.
        pub src_mac: Option<[u8; 6]>,
    }

    pub fn network_layer(linktype: u32, frame: &[u8]) -> Option<NetworkLayer<'_>> {
        match linktype {
            LINKTYPE_ETHERNET => {
                let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
                let mut offset = 14;
                // 802.1Q / 802.1ad tags.
                while ethertype == 0x8100 || ethertype == 0x88a8 {
                    ethertype =
                        u16::from_be_bytes([*frame.get(offset + 2)?, *frame.get(offset + 3)?]);
                    offset += 4;
                }
                let src: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
                Some(NetworkLayer {
                    ethertype,
                    bytes: frame.get(offset..)?,
                    src_mac: Some(src),
                })
            }
            LINKTYPE_LINUX_SLL => {
                let ethertype = u16::from_be_bytes([*frame.get(14)?, *frame.get(15)?]);
                let addr_len = u16::from_be_bytes([*frame.get(4)?, *frame.get(5)?]);
                let src = (addr_len == 6)
                    .then(|| frame.get(6..12)?.try_into().ok())
                    .flatten();
                Some(NetworkLayer {
                    ethertype,
                    bytes: frame.get(16..)?,
                    src_mac: src,
                })
            }
            LINKTYPE_LINUX_SLL2 => {
                let ethertype = u16::from_be_bytes([*frame.first()?, *frame.get(1)?]);
                let src = (*frame.get(11)? == 6)
                    .then(|| frame.get(12..18)?.try_into().ok())
                    .flatten();
                Some(NetworkLayer {
                    ethertype,
                    bytes: frame.get(20..)?,
                    src_mac: src,
                })
            }
            _ => None,
        }
    }
}

/// Just enough of keepalived.conf for these vectors: one vrrp_instance.
#[derive(Debug, Default)]
struct Conf {
    vrid: u8,
    priority: u8,
    version: u8,
    advert_int: Duration,
    auth_pass: Option<String>,
    unicast_src: Option<IpAddr>,
    unicast_peers: Vec<IpAddr>,
    vips: Vec<IpAddr>,
    garp_master_repeat: u32,
    garp_master_delay: Duration,
}

impl Conf {
    fn parse(text: &str) -> Conf {
        let mut conf = Conf {
            version: 2,
            garp_master_repeat: 5,
            garp_master_delay: Duration::from_secs(5),
            ..Conf::default()
        };
        let mut block: Option<&str> = None;
        for line in text.lines() {
            let tokens: Vec<&str> = line
                .split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let Some(&first) = tokens.first() else {
                continue;
            };
            if first == "}" {
                block = None;
                continue;
            }
            match block {
                Some("virtual_ipaddress") => {
                    let addr = first.split('/').next().unwrap_or(first);
                    conf.vips.push(addr.parse().expect("VIP"));
                    continue;
                }
                Some("unicast_peer") => {
                    conf.unicast_peers.push(first.parse().expect("peer"));
                    continue;
                }
                _ => {}
            }
            let value = tokens.get(1).copied().unwrap_or("");
            match first {
                "virtual_ipaddress" | "unicast_peer" => block = Some(first),
                "virtual_router_id" => conf.vrid = value.parse().expect("vrid"),
                "priority" => conf.priority = value.parse().expect("priority"),
                "version" => conf.version = value.parse().expect("version"),
                "advert_int" => {
                    conf.advert_int = Duration::from_secs_f64(value.parse().expect("advert_int"))
                }
                "auth_pass" => conf.auth_pass = Some(value.to_string()),
                "unicast_src_ip" => conf.unicast_src = Some(value.parse().expect("unicast_src_ip")),
                "vrrp_garp_master_repeat" => {
                    conf.garp_master_repeat = value.parse().expect("repeat")
                }
                "vrrp_garp_master_delay" => {
                    conf.garp_master_delay = Duration::from_secs(value.parse().expect("delay"))
                }
                _ => {}
            }
        }
        conf
    }

    fn version(&self) -> Version {
        if self.version == 3 {
            Version::V3
        } else {
            Version::V2
        }
    }

    fn auth(&self) -> Auth {
        self.auth_pass
            .as_deref()
            .map_or(Auth::None, |p| Auth::simple_password(p.as_bytes()))
    }

    /// The instance this conf describes, on the node with address `primary`.
    fn instance_config(&self, primary: IpAddr) -> InstanceConfig {
        let mut cfg = InstanceConfig::new(self.vrid, self.priority, primary, self.vips.clone());
        cfg.version = self.version();
        // keepalived's advert_int is a decimal; round to the unit of the version.
        cfg.advert_int =
            Duration::from_millis((self.advert_int.as_secs_f64() * 100.0).round() as u64 * 10);
        cfg.unicast_peers = self.unicast_peers.clone();
        cfg.auth = self.auth();
        cfg.announce.master_repeat = self.garp_master_repeat;
        cfg.announce.master_delay = self.garp_master_delay;
        cfg.announce.lower_prio_repeat = self.garp_master_repeat;
        cfg.announce.lower_prio_delay = self.garp_master_delay;
        cfg
    }
}

/// One VRRP packet out of a capture.
struct Captured {
    time: Duration,
    meta: RxMeta,
    /// The VRRP message.
    payload: Vec<u8>,
    /// The whole IPv4 packet and its identification, for IPv4.
    ipv4: Option<(Vec<u8>, u16)>,
}

/// A captured frame that is not VRRP.
struct OtherFrame {
    ethertype: u16,
    /// Network-layer bytes.
    l3: Vec<u8>,
    src_mac: [u8; 6],
    /// The whole link-layer frame.
    frame: Vec<u8>,
}

struct Vector {
    name: String,
    conf: Conf,
    adverts: Vec<Captured>,
    others: Vec<OtherFrame>,
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn load(name: &str) -> Vector {
    let dir = vectors_dir();
    let conf_text =
        std::fs::read_to_string(dir.join(format!("{name}.conf"))).expect("conf readable");
    let bytes = std::fs::read(dir.join(format!("{name}.pcap"))).expect("pcap readable");
    let capture = pcap::parse(&bytes).expect("valid pcap");
    assert!(
        matches!(
            capture.linktype,
            pcap::LINKTYPE_ETHERNET | pcap::LINKTYPE_LINUX_SLL | pcap::LINKTYPE_LINUX_SLL2
        ),
        "{name}: unsupported link type {}",
        capture.linktype
    );
    let mut adverts = Vec::new();
    let mut others = Vec::new();
    for record in &capture.records {
        let Some(pcap::NetworkLayer {
            ethertype,
            bytes: l3,
            src_mac,
        }) = pcap::network_layer(capture.linktype, &record.data)
        else {
            continue;
        };
        let other = |src_mac: [u8; 6]| OtherFrame {
            ethertype,
            l3: l3.to_vec(),
            src_mac,
            frame: record.data.clone(),
        };
        match ethertype {
            0x0800 => {
                let Some(&proto) = l3.get(9) else { continue };
                if proto != packet::IPPROTO_VRRP {
                    continue;
                }
                let total = usize::from(u16::from_be_bytes([l3[2], l3[3]]));
                // Drop link-layer padding, as the kernel does before a raw socket sees it.
                let ip = &l3[..total];
                let (meta, payload) = packet::parse_ipv4(ip).expect("captured IPv4 header parses");
                let id = u16::from_be_bytes([ip[4], ip[5]]);
                adverts.push(Captured {
                    time: record.time,
                    meta,
                    payload: payload.to_vec(),
                    ipv4: Some((ip.to_vec(), id)),
                });
            }
            0x86dd if l3.len() >= 40 => {
                let payload_len = usize::from(u16::from_be_bytes([l3[4], l3[5]]));
                let next = l3[6];
                let src = IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(&l3[8..24]).expect("16 bytes"),
                ));
                let dst = IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(&l3[24..40]).expect("16 bytes"),
                ));
                let body = &l3[40..40 + payload_len];
                if next == packet::IPPROTO_VRRP {
                    let meta = RxMeta {
                        src,
                        dst,
                        ttl: Some(l3[7]),
                    };
                    adverts.push(Captured {
                        time: record.time,
                        meta,
                        payload: body.to_vec(),
                        ipv4: None,
                    });
                } else if let Some(mac) = src_mac {
                    others.push(other(mac));
                }
            }
            _ => {
                if let Some(mac) = src_mac {
                    others.push(other(mac));
                }
            }
        }
    }
    assert!(!adverts.is_empty(), "{name}: no VRRP packets found");
    Vector {
        name: name.to_string(),
        conf: Conf::parse(&conf_text),
        adverts,
        others,
    }
}

const ALL: &[&str] = &[
    "v2-noauth-2vip-mcast",
    "v2-pass-mcast",
    "v2-pass-unicast",
    "v2-shortpass-mcast",
    "v3-mcast",
    "v3-adv0.1-mcast",
    "v3-unicast",
    "v3-ipv6-mcast",
    "v3-ipv6-unicast",
];

#[test]
fn every_vector_is_present() {
    for name in ALL {
        let v = load(name);
        assert!(
            v.adverts.len() >= 3,
            "{name}: expected adverts and a priority 0 advert"
        );
    }
}

#[test]
fn adverts_decode_to_the_conf_and_reencode_identically() {
    for name in ALL {
        let v = load(name);
        let conf = &v.conf;
        let last = v.adverts.len() - 1;
        for (i, cap) in v.adverts.iter().enumerate() {
            let advert = packet::decode(&cap.payload, &cap.meta)
                .unwrap_or_else(|e| panic!("{name} advert {i}: {e} ({:02x?})", cap.payload));
            assert_eq!(advert.version, conf.version(), "{name} advert {i}: version");
            assert_eq!(advert.vrid, conf.vrid, "{name} advert {i}: vrid");
            let priority = if i == last { 0 } else { conf.priority };
            assert_eq!(advert.priority, priority, "{name} advert {i}: priority");
            assert_eq!(
                advert.interval(),
                conf.advert_int,
                "{name} advert {i}: interval"
            );
            assert_eq!(advert.auth, conf.auth(), "{name} advert {i}: auth");
            assert_eq!(advert.addresses, conf.vips, "{name} advert {i}: addresses");

            if let Some(src) = conf.unicast_src {
                assert_eq!(cap.meta.src, src, "{name}: unicast source");
            }
            let expected_dst = match conf.unicast_peers.first() {
                Some(&peer) => peer,
                None if cap.meta.src.is_ipv6() => IpAddr::V6(MULTICAST_V6),
                None => IpAddr::V4(MULTICAST_V4),
            };
            assert_eq!(cap.meta.dst, expected_dst, "{name} advert {i}: destination");

            let encoded = advert.encode(cap.meta.src, cap.meta.dst).expect("encodes");
            assert_eq!(
                encoded, cap.payload,
                "{name} advert {i}: re-encoding differs"
            );

            if let (Some((ip, id)), IpAddr::V4(src), IpAddr::V4(dst)) =
                (&cap.ipv4, cap.meta.src, cap.meta.dst)
            {
                let rebuilt = packet::build_ipv4(src, dst, *id, &encoded).expect("fits");
                assert_eq!(&rebuilt, ip, "{name} advert {i}: IPv4 packet differs");
            }
        }
    }
}

#[test]
fn checksum_corruption_is_detected_in_every_vector() {
    for name in ALL {
        let v = load(name);
        for cap in &v.adverts {
            for byte in 0..cap.payload.len() {
                let mut corrupted = cap.payload.clone();
                corrupted[byte] ^= 0x01;
                // Flipping a bit of the version, type or count fails earlier checks; anything else
                // must fail the checksum (or, for v2 auth bytes, still fail it: they are summed).
                assert!(
                    packet::decode(&corrupted, &cap.meta).is_err(),
                    "{name}: byte {byte} flip accepted"
                );
            }
            if cap.meta.src.is_ipv6() || v.conf.version() == Version::V3 {
                // v3 covers the pseudo-header: a different source must not verify.
                let other_src = match cap.meta.src {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(10, 77, 0, 99)),
                    IpAddr::V6(_) => IpAddr::V6("fe80::99".parse().expect("addr")),
                };
                let meta = RxMeta {
                    src: other_src,
                    ..cap.meta
                };
                assert_eq!(
                    packet::decode(&cap.payload, &meta),
                    Err(lb_vrrp::DropReason::BadChecksum),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn adverts_are_spaced_by_the_interval() {
    for name in ALL {
        let v = load(name);
        let steady: Vec<_> = v.adverts[..v.adverts.len() - 1]
            .iter()
            .map(|c| c.time)
            .collect();
        for pair in steady.windows(2) {
            let gap = pair[1] - pair[0];
            let diff = gap.abs_diff(v.conf.advert_int);
            assert!(
                diff < Duration::from_millis(30),
                "{}: gap {gap:?} vs advert_int {:?}",
                v.name,
                v.conf.advert_int
            );
        }
    }
}

/// The node's own instance, configured from the conf, emits exactly the captured bytes: the
/// advert on taking over and the priority 0 advert on shutdown.
#[test]
fn instance_from_conf_reproduces_the_capture() {
    for name in ALL {
        let v = load(name);
        let src = v.adverts[0].meta.src;
        let mut vr = Instance::new(v.conf.instance_config(src)).expect("conf is valid");
        assert!(vr.start(Duration::ZERO).contains(&Action::StateChanged {
            from: State::Init,
            to: State::Backup,
            reason: lb_vrrp::TransitionReason::Started,
        }));
        let at = vr.next_deadline().expect("down timer armed");
        assert_eq!(at, vr.master_down_interval());
        let actions = vr.on_timer(at);
        let mut expected = vec![
            Action::SendAdvert {
                priority: v.conf.priority,
            },
            Action::AddAddresses,
        ];
        if v.conf.garp_master_repeat > 0 {
            expected.push(Action::AnnounceAddresses {
                repeat: v.conf.garp_master_repeat,
            });
        }
        expected.push(Action::StateChanged {
            from: State::Backup,
            to: State::Master,
            reason: lb_vrrp::TransitionReason::MasterDown,
        });
        assert_eq!(actions, expected, "{name}");

        let sent = vr.encode_adverts(v.conf.priority).expect("encodes");
        assert_eq!(sent.len(), 1, "{name}: one destination");
        assert_eq!(sent[0].dst, v.adverts[0].meta.dst, "{name}");
        assert_eq!(
            sent[0].payload, v.adverts[0].payload,
            "{name}: takeover advert differs"
        );

        // The next timer is exactly one interval later.
        assert_eq!(vr.next_deadline(), Some(at + v.conf.advert_int), "{name}");

        let actions = vr.shutdown(at + Duration::from_millis(1500));
        assert_eq!(actions[0], Action::SendAdvert { priority: 0 }, "{name}");
        let stop = vr.encode_adverts(0).expect("encodes");
        let captured_stop = &v.adverts[v.adverts.len() - 1];
        assert_eq!(
            stop[0].payload, captured_stop.payload,
            "{name}: priority 0 advert differs"
        );
    }
}

/// The peer of the captured node, configured from the same conf with its roles swapped,
/// accepts every captured advert: no check rejects real keepalived traffic.
#[test]
fn peer_instance_accepts_the_captured_adverts() {
    for name in ALL {
        let v = load(name);
        let first = &v.adverts[0];
        let (peer_addr, peers) = match v.conf.unicast_peers.first() {
            Some(&peer) => (peer, vec![first.meta.src]),
            None => match first.meta.src {
                IpAddr::V4(_) => (IpAddr::V4(Ipv4Addr::new(10, 77, 0, 12)), vec![]),
                IpAddr::V6(_) => (
                    IpAddr::V6("fe80::77:ff:fe00:12".parse().expect("addr")),
                    vec![],
                ),
            },
        };
        let mut cfg = v.conf.instance_config(peer_addr);
        cfg.priority = 100;
        cfg.unicast_peers = peers;
        let mut vr = Instance::new(cfg).expect("valid");
        vr.start(Duration::ZERO);
        let mut now = Duration::from_millis(10);
        for cap in &v.adverts[..v.adverts.len() - 1] {
            let actions = vr
                .on_packet(now, &cap.payload, &cap.meta)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(actions.is_empty(), "{name}");
            assert_eq!(vr.state(), State::Backup);
            assert_eq!(
                vr.next_deadline(),
                Some(now + vr.master_down_interval()),
                "{name}: down timer reset"
            );
            assert_eq!(vr.master_address(), Some(cap.meta.src));
            now += v.conf.advert_int;
        }
        // The shutdown advert: take over after the skew time.
        let stop = &v.adverts[v.adverts.len() - 1];
        vr.on_packet(now, &stop.payload, &stop.meta)
            .expect("accepted");
        assert_eq!(vr.next_deadline(), Some(now + vr.skew_time()), "{name}");
        vr.on_timer(now + vr.skew_time());
        assert_eq!(vr.state(), State::Master, "{name}");
    }
}

#[test]
fn gratuitous_arps_match_the_builder() {
    for name in ALL.iter().filter(|n| !n.contains("ipv6")) {
        let v = load(name);
        let mut garps = 0;
        for OtherFrame {
            ethertype,
            l3,
            src_mac: mac,
            frame,
        } in &v.others
        {
            if *ethertype != 0x0806 || l3.len() < 28 {
                continue;
            }
            let spa = Ipv4Addr::new(l3[14], l3[15], l3[16], l3[17]);
            let tpa = Ipv4Addr::new(l3[24], l3[25], l3[26], l3[27]);
            if spa != tpa {
                // Ordinary ARP resolution of the unicast peer, sent by the kernel.
                continue;
            }
            assert!(
                v.conf.vips.contains(&IpAddr::V4(spa)),
                "{name}: GARP for {spa}"
            );
            assert_eq!(
                &packet::gratuitous_arp(*mac, spa)[..],
                &frame[..],
                "{name}: GARP for {spa} differs"
            );
            garps += 1;
        }
        let expected = v.conf.garp_master_repeat as usize * v.conf.vips.len();
        assert_eq!(garps, expected, "{name}: GARP count");
    }
}

#[test]
fn neighbour_adverts_match_the_builder() {
    for name in ALL.iter().filter(|n| n.contains("ipv6")) {
        let v = load(name);
        let mut adverts = 0;
        for OtherFrame {
            ethertype,
            l3,
            src_mac: mac,
            frame,
        } in &v.others
        {
            // ICMPv6 (58) neighbour advertisement (136) sent to ff02::1 by the VRRP node.
            if *ethertype != 0x86dd || l3[6] != 58 || l3.get(40) != Some(&136) || l3[24] != 0xff {
                continue;
            }
            let target = Ipv6Addr::from(<[u8; 16]>::try_from(&l3[48..64]).expect("16 bytes"));
            assert!(
                v.conf.vips.contains(&IpAddr::V6(target)),
                "{name}: NA for {target}"
            );
            assert_eq!(
                &packet::unsolicited_neighbour_advert(*mac, target, false)[..],
                &frame[..],
                "{name}: {target}"
            );
            let icmp = packet::unsolicited_neighbour_advert_icmpv6(target, target, *mac, false);
            assert_eq!(&icmp[..], &l3[40..], "{name}: ICMPv6 part");
            adverts += 1;
        }
        let expected = v.conf.garp_master_repeat as usize * v.conf.vips.len();
        assert_eq!(adverts, expected, "{name}: NA count");
    }
}

/// v2-interaction.pcap: keepalived (n1, priority 150) takes over, then hears adverts injected
/// from n2: priority 100 (it answers at once and re-announces), 200 four times (it steps down
/// silently), then 0 (it takes over after its skew time); then it is stopped. Our instance,
/// fed the same adverts at the same times, must send the same adverts at the same times
/// (within keepalived's few milliseconds of processing delay) and the same bytes.
#[test]
fn replay_against_keepalived_reactions() {
    let v = load("v2-interaction");
    let n1 = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 11));
    let (theirs, injected): (Vec<&Captured>, Vec<&Captured>) =
        v.adverts.iter().partition(|c| c.meta.src == n1);
    assert_eq!(injected.len(), 6, "injected adverts");

    let mut vr = Instance::new(v.conf.instance_config(n1)).expect("valid");
    // Start so that the first takeover lands on keepalived's first advert.
    let origin = theirs[0].time - vr.master_down_interval();
    let t = |c: &Captured| c.time - origin;
    vr.start(Duration::ZERO);

    let mut ours: Vec<(Duration, u8, Vec<u8>)> = Vec::new();
    let mut announcements = 0;
    let mut record = |now: Duration, vr: &Instance, actions: Vec<Action>, ours: &mut Vec<_>| {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => {
                    let sent = vr.encode_adverts(priority).expect("encodes");
                    ours.push((now, priority, sent[0].payload.clone()));
                }
                Action::AnnounceAddresses { repeat } => announcements += repeat,
                _ => {}
            }
        }
    };
    let stop_at = t(theirs[theirs.len() - 1]);
    let mut inputs = injected.iter().peekable();
    loop {
        let timer = vr.next_deadline().filter(|&d| d < stop_at);
        let input = inputs.peek().map(|c| t(c));
        let now = match (timer, input) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => break,
        };
        if input == Some(now) {
            let cap = inputs.next().expect("peeked");
            let actions = vr
                .on_packet(now, &cap.payload, &cap.meta)
                .expect("injected adverts are valid");
            record(now, &vr, actions, &mut ours);
        } else {
            let actions = vr.on_timer(now);
            record(now, &vr, actions, &mut ours);
        }
    }
    let actions = vr.shutdown(stop_at);
    record(stop_at, &vr, actions, &mut ours);

    assert_eq!(
        ours.len(),
        theirs.len(),
        "advert count: ours {:?}",
        ours.iter().map(|o| (o.0, o.1)).collect::<Vec<_>>()
    );
    let input_times: Vec<Duration> = injected.iter().map(|c| t(c)).collect();
    // Each advert's delay after what caused it (the previous advert or the latest input).
    // keepalived re-arms its timer only after sending the gratuitous ARPs, so absolute times
    // drift by milliseconds per takeover; the delays must agree.
    let cause = |at: Duration, previous: Duration| {
        input_times
            .iter()
            .copied()
            .filter(|&i| i <= at)
            .fold(previous, Duration::max)
    };
    for (i, ((at, priority, bytes), cap)) in ours.iter().zip(&theirs).enumerate() {
        let advert = packet::decode(&cap.payload, &cap.meta).expect("decodes");
        assert_eq!(*priority, advert.priority, "advert {i}");
        assert_eq!(bytes, &cap.payload, "advert {i} bytes");
        // The first is aligned by construction, the last is our shutdown call.
        if i == 0 || i == ours.len() - 1 {
            continue;
        }
        let our_delay = *at - cause(*at, ours[i - 1].0);
        let their_delay = t(cap) - cause(t(cap), t(theirs[i - 1]));
        assert!(
            our_delay.abs_diff(their_delay) < Duration::from_millis(10),
            "advert {i}: ours {our_delay:?} after its cause, keepalived {their_delay:?}"
        );
    }
    // Two takeovers and one answer to the lower priority, 2 rounds each (garp_master_repeat 2).
    assert_eq!(announcements, 6);
    let garps = v.others.iter().filter(|o| o.ethertype == 0x0806).count();
    assert_eq!(garps, 6);
}

//! Decoding is total: no input panics. Encoding then decoding gives back the advert.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use lb_vrrp::packet::{self, MULTICAST_V4, MULTICAST_V6};
use lb_vrrp::{Advert, Auth, Instance, InstanceConfig, RxMeta, Version};
use proptest::prelude::*;

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        Just(IpAddr::V4(MULTICAST_V4)),
        Just(IpAddr::V6(MULTICAST_V6)),
    ]
}

fn any_meta() -> impl Strategy<Value = RxMeta> {
    (any_ip(), any_ip(), proptest::option::of(any::<u8>())).prop_map(|(src, dst, ttl)| RxMeta {
        src,
        dst,
        ttl,
    })
}

/// A valid advert and a matching (src, dst) pair.
fn valid_advert() -> impl Strategy<Value = (Advert, IpAddr, IpAddr)> {
    let v4 = (
        any::<bool>(),
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(any::<[u8; 4]>(), 0..20),
        proptest::option::of(any::<[u8; 8]>()),
        any::<[u8; 4]>(),
        any::<bool>(),
        any::<u16>(),
    )
        .prop_map(|(v2, vrid, priority, addrs, pass, src, mcast, int)| {
            let version = if v2 { Version::V2 } else { Version::V3 };
            let advert = Advert {
                version,
                vrid,
                priority,
                advert_int: if v2 { int % 256 } else { int % 4096 },
                auth: match (v2, pass) {
                    (true, Some(p)) => Auth::SimplePassword(p),
                    _ => Auth::None,
                },
                addresses: addrs
                    .into_iter()
                    .map(|o| IpAddr::V4(Ipv4Addr::from(o)))
                    .collect(),
            };
            let dst = if mcast {
                IpAddr::V4(MULTICAST_V4)
            } else {
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))
            };
            (advert, IpAddr::V4(Ipv4Addr::from(src)), dst)
        });
    let v6 = (
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(any::<[u8; 16]>(), 0..10),
        any::<[u8; 16]>(),
        any::<u16>(),
    )
        .prop_map(|(vrid, priority, addrs, src, int)| {
            let advert = Advert {
                version: Version::V3,
                vrid,
                priority,
                advert_int: int % 4096,
                auth: Auth::None,
                addresses: addrs
                    .into_iter()
                    .map(|o| IpAddr::V6(Ipv6Addr::from(o)))
                    .collect(),
            };
            (
                advert,
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(MULTICAST_V6),
            )
        });
    prop_oneof![v4, v6]
}

fn test_instance() -> Instance {
    let me = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let mut vr = Instance::new(InstanceConfig::new(
        7,
        100,
        me,
        vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))],
    ))
    .expect("valid");
    vr.start(Duration::ZERO);
    vr
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), meta in any_meta()) {
        let _ = packet::decode(&bytes, &meta);
        let _ = packet::parse_ipv4(&bytes);
        let mut vr = test_instance();
        let _ = vr.on_packet(Duration::from_secs(1), &bytes, &meta);
    }

    #[test]
    fn encode_decode_round_trip((advert, src, dst) in valid_advert()) {
        let bytes = advert.encode(src, dst).expect("valid advert encodes");
        prop_assert_eq!(bytes.len(), advert.encoded_len(src.is_ipv6()));
        let decoded = packet::decode(&bytes, &RxMeta::new(src, dst));
        prop_assert_eq!(decoded, Ok(advert));
    }

    #[test]
    fn mutated_adverts_never_panic(
        (advert, src, dst) in valid_advert(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut bytes = advert.encode(src, dst).expect("valid advert encodes");
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let meta = RxMeta::new(src, dst);
        let _ = packet::decode(&bytes, &meta);
        let mut vr = test_instance();
        let _ = vr.on_packet(Duration::from_secs(1), &bytes, &meta);
    }

    #[test]
    fn ipv4_wrapped_adverts_parse_back((advert, src, dst) in valid_advert(), id in any::<u16>()) {
        if let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) {
            let payload = advert.encode(src, dst).expect("encodes");
            let packet = packet::build_ipv4(s, d, id, &payload).expect("fits");
            let (meta, inner) = packet::parse_ipv4(&packet).expect("parses");
            prop_assert_eq!(inner, &payload[..]);
            prop_assert_eq!(packet::decode(inner, &meta), Ok(advert));
        }
    }
}

/// A deterministic sweep on top of proptest: every single-byte value at every position of a
/// real advert, for both versions.
#[test]
fn exhaustive_single_byte_substitutions() {
    let src = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 11));
    let dst = IpAddr::V4(MULTICAST_V4);
    for version in [Version::V2, Version::V3] {
        let advert = Advert {
            version,
            vrid: 51,
            priority: 150,
            advert_int: if version == Version::V2 { 1 } else { 100 },
            auth: if version == Version::V2 {
                Auth::simple_password(b"kpa12345")
            } else {
                Auth::None
            },
            addresses: vec![
                IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100)),
                IpAddr::V4(Ipv4Addr::new(10, 77, 0, 101)),
            ],
        };
        let good = advert.encode(src, dst).expect("encodes");
        for at in 0..good.len() {
            for value in 0..=255u8 {
                let mut bytes = good.clone();
                bytes[at] = value;
                let result = packet::decode(&bytes, &RxMeta::new(src, dst));
                if value == good[at] {
                    assert_eq!(result.as_ref(), Ok(&advert));
                } else {
                    assert!(result.is_err(), "byte {at} = {value:#04x} accepted");
                }
            }
        }
    }
}

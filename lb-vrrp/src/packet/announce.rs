//! Gratuitous ARP and unsolicited Neighbour Advertisement frames, as keepalived sends them when
//! it takes over virtual addresses, so that neighbours repoint their caches at the new master.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Checksum;

/// Length of a gratuitous ARP frame (Ethernet header + ARP for IPv4), before any padding the
/// NIC adds to reach the 60-byte minimum.
pub const ARP_FRAME_LEN: usize = 42;
/// Length of an unsolicited Neighbour Advertisement ICMPv6 message with its target link-layer
/// address option.
pub const NA_ICMPV6_LEN: usize = 32;
/// Length of the full Ethernet frame carrying it (Ethernet 14 + IPv6 40 + ICMPv6 32).
pub const NA_FRAME_LEN: usize = 14 + 40 + NA_ICMPV6_LEN;

const BROADCAST: [u8; 6] = [0xff; 6];
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];
const IPPROTO_ICMPV6: u8 = 58;
const ICMPV6_NEIGHBOUR_ADVERT: u8 = 136;
const NA_FLAG_ROUTER: u8 = 0x80;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const ND_OPT_TARGET_LINK_ADDR: u8 = 2;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// RFC 2464 section 7: ff02::1 maps to 33:33 followed by its low 32 bits.
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// The gratuitous ARP frame keepalived broadcasts for `address`.
///
/// It is an ARP *request* (op 1) with sender and target protocol address both `address`, the
/// sender hardware address `mac`, and — unlike RFC 5227's zeros — the broadcast address as the
/// target hardware address.
pub fn gratuitous_arp(mac: [u8; 6], address: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    let mut frame = [0u8; ARP_FRAME_LEN];
    frame[0..6].copy_from_slice(&BROADCAST);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_ARP);
    // Hardware type Ethernet, protocol IPv4, address lengths 6 and 4, operation request.
    frame[14..22].copy_from_slice(&[
        0x00,
        0x01,
        ETHERTYPE_IPV4[0],
        ETHERTYPE_IPV4[1],
        6,
        4,
        0x00,
        0x01,
    ]);
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&address.octets());
    frame[32..38].copy_from_slice(&BROADCAST);
    frame[38..42].copy_from_slice(&address.octets());
    frame
}

/// The ICMPv6 unsolicited Neighbour Advertisement for `target`, checksummed for an IPv6 packet
/// from `src` to ff02::1.
///
/// Flags: Override always, Router if `router` (keepalived sets it when the interface forwards
/// IPv6), never Solicited; one Target Link-Layer Address option carrying `mac`.
pub fn unsolicited_neighbour_advert_icmpv6(
    src: Ipv6Addr,
    target: Ipv6Addr,
    mac: [u8; 6],
    router: bool,
) -> [u8; NA_ICMPV6_LEN] {
    let mut msg = [0u8; NA_ICMPV6_LEN];
    msg[0] = ICMPV6_NEIGHBOUR_ADVERT;
    msg[4] = NA_FLAG_OVERRIDE | if router { NA_FLAG_ROUTER } else { 0 };
    msg[8..24].copy_from_slice(&target.octets());
    msg[24] = ND_OPT_TARGET_LINK_ADDR;
    // Option length in units of 8 bytes.
    msg[25] = 1;
    msg[26..32].copy_from_slice(&mac);
    let checksum = Checksum::new()
        .add_pseudo_header(
            IpAddr::V6(src),
            IpAddr::V6(ALL_NODES),
            IPPROTO_ICMPV6,
            NA_ICMPV6_LEN as u32,
        )
        .add_bytes(&msg)
        .finish();
    msg[2..4].copy_from_slice(&checksum.to_be_bytes());
    msg
}

/// The whole Ethernet frame keepalived writes to a packet socket to announce `target`.
///
/// keepalived uses the virtual address itself as the IPv6 source (not the interface's
/// link-local address), hop limit 255, destination ff02::1 / 33:33:00:00:00:01, traffic class
/// and flow label zero.
pub fn unsolicited_neighbour_advert(
    mac: [u8; 6],
    target: Ipv6Addr,
    router: bool,
) -> [u8; NA_FRAME_LEN] {
    let mut frame = [0u8; NA_FRAME_LEN];
    frame[0..6].copy_from_slice(&ALL_NODES_MAC);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV6);
    let ip = &mut frame[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(NA_ICMPV6_LEN as u16).to_be_bytes());
    ip[6] = IPPROTO_ICMPV6;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&target.octets());
    ip[24..40].copy_from_slice(&ALL_NODES.octets());
    frame[54..].copy_from_slice(&unsolicited_neighbour_advert_icmpv6(
        target, target, mac, router,
    ));
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn na_checksum_verifies() {
        let src: Ipv6Addr = "2001:db8::1".parse().expect("addr");
        let msg = unsolicited_neighbour_advert_icmpv6(src, src, [2, 0, 0, 0, 0, 1], true);
        let sum = Checksum::new()
            .add_pseudo_header(IpAddr::V6(src), IpAddr::V6(ALL_NODES), IPPROTO_ICMPV6, 32)
            .add_bytes(&msg)
            .finish();
        assert_eq!(sum, 0);
        assert_eq!(msg[4], 0xa0);
    }
}

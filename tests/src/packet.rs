//! Frames built byte by byte, with correct checksums, for BPF_PROG_TEST_RUN and labs.

use std::net::IpAddr;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xd0];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp,
    Udp,
}

impl L4 {
    pub const fn number(self) -> u8 {
        match self {
            L4::Tcp => 6,
            L4::Udp => 17,
        }
    }
}

pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

/// A client-to-VIP packet.
#[derive(Clone, Debug)]
pub struct PacketSpec {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub l4: L4,
    pub vlan: Option<u16>,
    pub payload: Vec<u8>,
    /// TCP flags: SYN unless changed.
    pub tcp_flags: u8,
    /// IPv4 TTL or IPv6 hop limit: 64 unless changed.
    pub ttl: u8,
    /// Send a UDP datagram over IPv4 without a checksum (0).
    pub no_udp_checksum: bool,
}

impl PacketSpec {
    pub fn new(src: &str, dst: &str, src_port: u16, dst_port: u16, l4: L4) -> Self {
        Self {
            src: src.parse().expect("test address"),
            dst: dst.parse().expect("test address"),
            src_port,
            dst_port,
            l4,
            vlan: None,
            payload: b"hello xlb".to_vec(),
            tcp_flags: TCP_SYN,
            ttl: 64,
            no_udp_checksum: false,
        }
    }

    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// A segment of an established connection (ACK, no SYN).
    pub fn established(mut self) -> Self {
        self.tcp_flags = TCP_ACK;
        self
    }

    pub fn vlan(mut self, id: u16) -> Self {
        self.vlan = Some(id);
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut l4 = l4_segment(
            self.src,
            self.dst,
            self.src_port,
            self.dst_port,
            self.l4,
            self.tcp_flags,
            &self.payload,
        );
        if self.no_udp_checksum && self.l4 == L4::Udp {
            l4[6..8].copy_from_slice(&[0, 0]);
        }
        let ip = ip_packet_ttl(self.src, self.dst, self.l4.number(), &l4, self.ttl);
        ethernet(self.vlan, ether_type(self.src), &ip)
    }
}

pub fn ether_type(ip: IpAddr) -> u16 {
    if ip.is_ipv4() { 0x0800 } else { 0x86dd }
}

pub fn ethernet(vlan: Option<u16>, ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + payload.len());
    f.extend_from_slice(&DIRECTOR_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    if let Some(id) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
    }
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// One's-complement sum of 16-bit words, folded.
pub fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut odd: Option<u8> = None;
    for chunk in chunks {
        for &b in *chunk {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => panic!("mixed address families"),
    }
    p
}

pub fn l4_segment(
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    l4: L4,
    tcp_flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&src_port.to_be_bytes());
    s.extend_from_slice(&dst_port.to_be_bytes());
    let csum_at = match l4 {
        L4::Tcp => {
            s.extend_from_slice(&1u32.to_be_bytes()); // seq
            s.extend_from_slice(&0u32.to_be_bytes()); // ack
            s.extend_from_slice(&[0x50, tcp_flags]); // 20-byte header
            s.extend_from_slice(&64240u16.to_be_bytes());
            s.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
            16
        }
        L4::Udp => {
            s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            s.extend_from_slice(&[0, 0]);
            6
        }
    };
    s.extend_from_slice(payload);
    let c = checksum(&[&pseudo_header(src, dst, l4.number(), s.len()), &s]);
    s[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    s
}

/// An IPv4 header (no options) or IPv6 header in front of `payload`.
pub fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Vec<u8> {
    ip_packet_ttl(src, dst, proto, payload, 64)
}

/// [`ip_packet`] with this TTL (hop limit).
pub fn ip_packet_ttl(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8], ttl: u8) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
            p.extend_from_slice(&[0x12, 0x34, 0x40, 0, ttl, proto, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            let c = checksum(&[&p]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            p.extend_from_slice(&[proto, ttl]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed address families"),
    }
    p.extend_from_slice(payload);
    p
}

/// IPv4 with header options (IHL > 5): a record-route-sized NOP padding.
pub fn ipv4_with_options(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = ip_packet(src, dst, proto, payload);
    let options = [1u8; 8]; // eight NOPs
    p.splice(20..20, options);
    p[0] = 0x45 + 2;
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[10..12].copy_from_slice(&[0, 0]);
    let c = checksum(&[&p[..28]]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// ICMP "fragmentation needed" (or ICMPv6 "packet too big") from a router, about the backend's
/// reply `vip:vip_port -> client:client_port`, addressed to the VIP.
pub fn frag_needed(
    router: &str,
    vip: &str,
    client: &str,
    vip_port: u16,
    client_port: u16,
    l4: L4,
) -> Vec<u8> {
    frag_needed_to(router, vip, vip, client, vip_port, client_port, l4)
}

/// As [`frag_needed`], addressed to `to` rather than to the VIP that sent the quoted packet.
pub fn frag_needed_to(
    router: &str,
    to: &str,
    vip: &str,
    client: &str,
    vip_port: u16,
    client_port: u16,
    l4: L4,
) -> Vec<u8> {
    let router: IpAddr = router.parse().expect("test address");
    let to: IpAddr = to.parse().expect("test address");
    let vip: IpAddr = vip.parse().expect("test address");
    let client: IpAddr = client.parse().expect("test address");
    let quoted_l4 = l4_segment(vip, client, vip_port, client_port, l4, TCP_ACK, b"");
    let quoted = ip_packet(vip, client, l4.number(), &quoted_l4);
    let mut icmp = Vec::new();
    if router.is_ipv4() {
        icmp.extend_from_slice(&[3, 4, 0, 0, 0, 0, 0x05, 0xdc]);
        icmp.extend_from_slice(&quoted[..28]);
        let c = checksum(&[&icmp]);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        ethernet(None, 0x0800, &ip_packet(router, to, 1, &icmp))
    } else {
        icmp.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0x05, 0x00]);
        icmp.extend_from_slice(&quoted[..48]);
        let c = checksum(&[&pseudo_header(router, to, 58, icmp.len()), &icmp]);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        ethernet(None, 0x86dd, &ip_packet(router, to, 58, &icmp))
    }
}

/// An ICMP (or ICMPv6) error of `kind` and `code` from `from` to `to`, `ttl` hops left, quoting
/// the first `quote_len` bytes of the IP packet `quoted` (a router's IPv4 error quotes 28: the
/// header and 8 bytes; Linux quotes as much as fits).
#[allow(clippy::too_many_arguments)]
pub fn icmp_error(
    from: IpAddr,
    to: IpAddr,
    kind: u8,
    code: u8,
    quoted: &[u8],
    quote_len: usize,
    ttl: u8,
) -> Vec<u8> {
    let mut icmp = vec![kind, code, 0, 0, 0, 0, 0x05, 0xdc];
    icmp.extend_from_slice(&quoted[..quote_len.min(quoted.len())]);
    if from.is_ipv4() {
        let c = checksum(&[&icmp]);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        ethernet(None, 0x0800, &ip_packet_ttl(from, to, 1, &icmp, ttl))
    } else {
        let c = checksum(&[&pseudo_header(from, to, 58, icmp.len()), &icmp]);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        ethernet(None, 0x86dd, &ip_packet_ttl(from, to, 58, &icmp, ttl))
    }
}

/// Sets the IP packet's own length (IPv4 total length, IPv6 payload length) of an untagged
/// frame, leaving its bytes where they are: what lies past the new length is Ethernet padding.
pub fn with_ip_length(mut frame: Vec<u8>, len: u16) -> Vec<u8> {
    match frame[14] >> 4 {
        4 => {
            frame[16..18].copy_from_slice(&len.to_be_bytes());
            frame[24..26].copy_from_slice(&[0, 0]);
            let c = checksum(&[&frame[14..34]]);
            frame[24..26].copy_from_slice(&c.to_be_bytes());
        }
        _ => frame[18..20].copy_from_slice(&len.to_be_bytes()),
    }
    frame
}

/// An untagged frame given VLAN tags, outermost first, as (TPID, VLAN id).
pub fn with_tags(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    for (tpid, id) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
    }
    f.extend_from_slice(&frame[12..]);
    f
}

//! Wire headers, as far as the program reads them, and bounds-checked access to the packet.
//!
//! Header fields are read and written as the words they are, although a frame's IP header
//! starts 2 bytes past a 4-byte boundary (after a 14-byte Ethernet header): the verifier allows
//! unaligned packet access on the architectures whose JITs XDP runs on at speed (x86-64 and
//! arm64 handle it in hardware), and the alternative, `read_unaligned`, has LLVM assemble every
//! word byte by byte.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use lb_common::Addr;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_ARP: u16 = 0x0806;

pub const ARPOP_REQUEST: u16 = 1;
pub const ICMPV6_NEIGHBOUR_SOLICITATION: u8 = 135;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_DSTOPTS: u8 = 60;

pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
pub const ICMPV6_TIME_EXCEED: u8 = 3;

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

/// More-fragments flag and fragment offset of the IPv4 `frag_off` field (host order).
pub const IP_MF_OFFSET: u16 = 0x3fff;

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// Network order.
    pub proto: u16,
}

#[repr(C)]
pub struct VlanHdr {
    pub tci: u16,
    /// Network order.
    pub proto: u16,
}

#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub check: u16,
    pub saddr: u32,
    pub daddr: u32,
}

#[repr(C)]
pub struct Ipv6Hdr {
    pub version_class_flow: u32,
    pub payload_len: u16,
    pub next_hdr: u8,
    pub hop_limit: u8,
    pub saddr: [u32; 4],
    pub daddr: [u32; 4],
}

/// The first four bytes of TCP and UDP alike.
#[repr(C)]
pub struct Ports {
    pub src: u16,
    pub dst: u16,
}

/// ARP for IPv4 over Ethernet.
#[repr(C)]
pub struct ArpEthIpv4 {
    pub htype: u16,
    pub ptype: u16,
    pub hlen: u8,
    pub plen: u8,
    /// Network order.
    pub op: u16,
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    pub tha: [u8; 6],
    /// Target protocol address: the address asked about.
    pub tpa: [u8; 4],
}

/// ICMPv6 neighbour solicitation: header and target address.
#[repr(C)]
pub struct NeighbourSolicitation {
    pub kind: u8,
    pub code: u8,
    pub check: u16,
    pub reserved: u32,
    pub target: [u32; 4],
}

/// The TCP header up to its flags.
#[repr(C)]
pub struct TcpPrefix {
    pub src: u16,
    pub dst: u16,
    pub seq: u32,
    pub ack: u32,
    pub data_offset: u8,
    pub flags: u8,
}

/// The TCP header up to its checksum.
#[repr(C)]
pub struct TcpToCheck {
    pub src: u16,
    pub dst: u16,
    pub seq: u32,
    pub ack: u32,
    pub data_offset_flags: u16,
    pub window: u16,
    pub check: u16,
}

#[repr(C)]
pub struct UdpHdr {
    pub src: u16,
    pub dst: u16,
    pub len: u16,
    pub check: u16,
}

#[repr(C)]
pub struct IcmpHdr {
    pub kind: u8,
    pub code: u8,
    pub check: u16,
    pub rest: u32,
}

pub const TCP_HDR_LEN: usize = 20;
pub const UDP_HDR_LEN: usize = 8;

/// A pointer to a `T` at `offset` in the packet, if the whole `T` lies inside it.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *const T)
}

/// Whether `len` bytes from `offset` lie inside the packet.
#[inline(always)]
pub fn has_bytes(ctx: &XdpContext, offset: usize, len: usize) -> bool {
    ctx.data() + offset + len <= ctx.data_end()
}

/// An IPv6 address field in the packet, as four words (a typed array copy of unknown alignment
/// would become a call to a byte-loop memmove).
///
/// # Safety
/// `field` lies inside the packet.
#[inline(always)]
pub unsafe fn read_addr(field: *const Addr) -> Addr {
    let w = field as *const u32;
    unsafe { [w.read(), w.add(1).read(), w.add(2).read(), w.add(3).read()] }
}

/// Writes `addr` into an IPv6 address field in the packet, word by word.
///
/// # Safety
/// `field` lies inside the packet.
#[inline(always)]
pub unsafe fn write_addr(field: *mut Addr, addr: &Addr) {
    let w = field as *mut u32;
    for (i, word) in addr.iter().enumerate() {
        // Volatile: LLVM would merge the four stores back into a memcpy.
        unsafe { w.add(i).write_volatile(*word) };
    }
}

/// Sets the frame's Ethernet destination and source to the 12 bytes at `macs` (a destination
/// MAC followed by a source MAC), as six halfwords: array assignment would call a byte-loop
/// memmove. XDP frames start at least 2-byte aligned (headroom plus NET_IP_ALIGN), as does
/// every map value that holds such a pair.
#[inline(always)]
pub fn set_macs(ctx: &XdpContext, macs: *const [u8; 12]) {
    if let Some(eth) = ptr_at::<EthHdr>(ctx, 0) {
        let from = macs as *const u16;
        let to = eth as *mut u16;
        for i in 0..6 {
            // SAFETY: the Ethernet header lies inside the packet; `macs` is 12 readable bytes.
            unsafe { to.add(i).write(*from.add(i)) };
        }
    }
}

//! NAT (IPVS "Masq"): rewriting a client's packet to the real server's address and port, and the
//! real server's reply back to the VIP's, as a router does (TTL decremented), with the IP and
//! TCP/UDP checksums updated incrementally (RFC 1624) rather than recomputed.
//!
//! Checksums are sums of 16-bit words, which come out the same in either byte order as long as
//! every word, the checksum included, is read and written the same way (RFC 1071): here as they
//! lie in memory.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use lb_common::Addr;

use crate::headers::*;

/// Where a packet's headers are, as parsing found them.
#[derive(Clone, Copy)]
pub struct Headers {
    pub l3: usize,
    pub l4: usize,
    pub v4: bool,
    pub proto: u8,
}

/// Which end of the packet NAT rewrites.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Toward the real server: the destination.
    Destination,
    /// Back to the client: the source.
    Source,
}

#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// HC' = ~(~HC + ~m + m') (RFC 1624, equation 3): the checksum after one word went from `old`
/// to `new`.
#[inline(always)]
fn replace16(check: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

#[inline(always)]
fn replace32(check: u16, old: u32, new: u32) -> u16 {
    let check = replace16(check, old as u16, new as u16);
    replace16(check, (old >> 16) as u16, (new >> 16) as u16)
}

#[inline(always)]
fn replace_addr(mut check: u16, old: &Addr, new: &Addr, v4: bool) -> u16 {
    if v4 {
        return replace32(check, old[3], new[3]);
    }
    for i in 0..4 {
        check = replace32(check, old[i], new[i]);
    }
    check
}

/// Rewrites one end of a TCP or UDP packet to `addr`:`port` (port in network order), the TTL
/// (hop limit) one less. `Err(())` when the TTL would reach 0, or a header is cut short (the
/// parser checked them; the verifier wants the checks here, next to the writes).
#[inline(always)]
pub fn rewrite(ctx: &XdpContext, at: &Headers, end: End, addr: &Addr, port: u16) -> Result<(), ()> {
    // The old address, and the TTL/hop limit, first (checked before anything is written).
    let old: Addr;
    if at.v4 {
        let ip = ptr_at::<Ipv4Hdr>(ctx, at.l3).ok_or(())? as *mut Ipv4Hdr;
        // SAFETY: `ip` lies inside the packet (checked just above).
        unsafe {
            let ttl = (*ip).ttl;
            if ttl <= 1 {
                return Err(());
            }
            let field = match end {
                End::Destination => &raw mut (*ip).daddr,
                End::Source => &raw mut (*ip).saddr,
            };
            let was = field.read_unaligned();
            old = [0, 0, 0, was];
            // TTL and protocol share a 16-bit word of the header checksum.
            let ttl_word = &raw mut (*ip).ttl as *mut u16;
            let old_word = ttl_word.read_unaligned();
            (*ip).ttl = ttl - 1;
            let new_word = ttl_word.read_unaligned();
            let mut check = (*ip).check;
            check = replace16(check, old_word, new_word);
            check = replace32(check, was, addr[3]);
            (*ip).check = check;
            field.write_unaligned(addr[3]);
        }
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, at.l3).ok_or(())? as *mut Ipv6Hdr;
        // SAFETY: as above.
        unsafe {
            let hops = (*ip).hop_limit;
            if hops <= 1 {
                return Err(());
            }
            (*ip).hop_limit = hops - 1;
            let field = match end {
                End::Destination => &raw mut (*ip).daddr,
                End::Source => &raw mut (*ip).saddr,
            };
            old = field.read_unaligned();
            field.write_unaligned(*addr);
        }
    }
    // The transport header: its checksum covers the addresses (pseudo-header) and the port.
    if at.proto == IPPROTO_TCP {
        let tcp = ptr_at::<TcpToCheck>(ctx, at.l4).ok_or(())? as *mut TcpToCheck;
        // SAFETY: `tcp` lies inside the packet.
        unsafe {
            let field = match end {
                End::Destination => &raw mut (*tcp).dst,
                End::Source => &raw mut (*tcp).src,
            };
            let was = field.read_unaligned();
            let mut check = (*tcp).check;
            check = replace_addr(check, &old, addr, at.v4);
            check = replace16(check, was, port);
            (*tcp).check = check;
            field.write_unaligned(port);
        }
    } else {
        let udp = ptr_at::<UdpHdr>(ctx, at.l4).ok_or(())? as *mut UdpHdr;
        // SAFETY: `udp` lies inside the packet.
        unsafe {
            let field = match end {
                End::Destination => &raw mut (*udp).dst,
                End::Source => &raw mut (*udp).src,
            };
            let was = field.read_unaligned();
            let check = (*udp).check;
            // An IPv4 UDP checksum of 0 means none was computed: it stays none.
            if check != 0 || !at.v4 {
                let mut check = replace_addr(check, &old, addr, at.v4);
                check = replace16(check, was, port);
                // 0 is "no checksum": a computed 0 is sent as its other form.
                (*udp).check = if check == 0 { 0xffff } else { check };
            }
            field.write_unaligned(port);
        }
    }
    Ok(())
}

/// The IPv4 total length or IPv6 payload length, for the route lookup's MTU check.
#[inline(always)]
pub fn ip_len(ctx: &XdpContext, at: &Headers) -> u16 {
    if at.v4 {
        ptr_at::<Ipv4Hdr>(ctx, at.l3)
            .map(|ip| u16::from_be(unsafe { (*ip).tot_len }))
            .unwrap_or(0)
    } else {
        ptr_at::<Ipv6Hdr>(ctx, at.l3)
            .map(|ip| {
                u16::from_be(unsafe { (*ip).payload_len })
                    .saturating_add(size_of::<Ipv6Hdr>() as u16)
            })
            .unwrap_or(0)
    }
}

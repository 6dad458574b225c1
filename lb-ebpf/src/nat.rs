//! NAT (IPVS "Masq"): rewriting a client's packet to the real server's address and port, and the
//! real server's reply back to the VIP's, as a router does (TTL decremented), with the IP and
//! TCP/UDP checksums updated incrementally (RFC 1624) rather than recomputed.
//!
//! Checksums are sums of 16-bit words, which come out the same in either byte order as long as
//! every word, the checksum included, is read and written the same way (RFC 1071): here as they
//! lie in memory.
//!
//! Fields are read and written as the words they are (see [`crate::headers`] on alignment):
//! `read_unaligned` would make LLVM assemble each word byte by byte, and copy an IPv6 address
//! through a call to a byte-loop memmove.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use lb_common::Addr;

use crate::headers::*;

/// Where a packet's headers are, as parsing found them.
#[derive(Clone, Copy)]
pub struct Headers {
    pub l3: usize,
    pub l4: usize,
    /// The IP packet's length: IPv4's total length, IPv6's payload length and fixed header
    /// (for the route lookup's MTU check). 0 in a quote.
    pub len: u16,
    pub v4: bool,
    pub proto: u8,
}

/// An ICMP error's quote of the packet it is about: where its headers are, and how many bytes
/// of its transport header the error carries (an IPv4 router quotes only 8).
#[derive(Clone, Copy)]
pub struct Quote {
    pub inner: Headers,
    pub l4_len: usize,
}

/// Which end of the packet NAT rewrites.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Toward the real server: the destination.
    Destination,
    /// Back to the client: the source.
    Source,
}

/// A checksum being brought up to date: the sum of the complement of the old checksum and of
/// every replaced word's old complement and new value (RFC 1624, equation 3), over 16- and
/// 32-bit words alike (their one's complement sums agree once folded), folded once at the end.
struct Update(u64);

impl Update {
    #[inline(always)]
    fn of(check: u16) -> Self {
        Self(u64::from(!check))
    }

    #[inline(always)]
    fn word16(&mut self, old: u16, new: u16) {
        self.0 += u64::from(!old) + u64::from(new);
    }

    #[inline(always)]
    fn word32(&mut self, old: u32, new: u32) {
        self.0 += u64::from(!old) + u64::from(new);
    }

    #[inline(always)]
    fn addr(&mut self, old: &Addr, new: &Addr, v4: bool) {
        if v4 {
            self.word32(old[3], new[3]);
        } else {
            for i in 0..4 {
                self.word32(old[i], new[i]);
            }
        }
    }

    /// The new checksum.
    #[inline(always)]
    fn check(self) -> u16 {
        // A few dozen terms under 2^32 at most: under 2^38, folded to 33 bits then to 16.
        let mut sum = (self.0 & 0xffff_ffff) + (self.0 >> 32);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        !(sum as u16)
    }
}

/// Takes one from an IPv4 header's TTL (at least 2), and its word from the header checksum.
/// TTL and protocol share a 16-bit word of the checksum: the new word is worked out from the
/// old one rather than read back after the TTL's byte is written (a wide read of a narrow
/// write just made waits for the write to land).
///
/// # Safety
/// `ip` lies inside the packet.
#[inline(always)]
unsafe fn ttl_less_one(ip: *mut Ipv4Hdr, check: &mut Update) {
    let ttl_word = unsafe { &raw mut (*ip).ttl } as *mut u16;
    // SAFETY: inside the header, as the caller says.
    let old = unsafe { ttl_word.read() };
    // The TTL is the word's first byte in memory: its low byte here (BPF is little-endian on
    // the hosts xlb runs on), and above 1, so nothing borrows from the protocol.
    let new = if cfg!(target_endian = "little") {
        old.wrapping_sub(1)
    } else {
        old.wrapping_sub(0x100)
    };
    unsafe { ttl_word.write(new) };
    check.word16(old, new);
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
            let was = field.read();
            old = [0, 0, 0, was];
            let mut check = Update::of((*ip).check);
            ttl_less_one(ip, &mut check);
            check.word32(was, addr[3]);
            (*ip).check = check.check();
            field.write(addr[3]);
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
            old = read_addr(field);
            write_addr(field, addr);
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
            let mut check = Update::of((*tcp).check);
            check.addr(&old, addr, at.v4);
            check.word16(field.read(), port);
            (*tcp).check = check.check();
            field.write(port);
        }
    } else {
        let udp = ptr_at::<UdpHdr>(ctx, at.l4).ok_or(())? as *mut UdpHdr;
        // SAFETY: `udp` lies inside the packet.
        unsafe {
            let field = match end {
                End::Destination => &raw mut (*udp).dst,
                End::Source => &raw mut (*udp).src,
            };
            let was = field.read();
            let check = (*udp).check;
            // An IPv4 UDP checksum of 0 means none was computed: it stays none.
            if check != 0 || !at.v4 {
                let mut update = Update::of(check);
                update.addr(&old, addr, at.v4);
                update.word16(was, port);
                let check = update.check();
                // 0 is "no checksum": a computed 0 is sent as its other form.
                (*udp).check = if check == 0 { 0xffff } else { check };
            }
            field.write(port);
        }
    }
    Ok(())
}

/// Rewrites an ICMP error about a NAT flow as [`rewrite`] rewrites the flow's own packets at
/// `end`. The quoted packet went the other way, so its opposite end changes: toward the real
/// server (the client's error about a reply), the quote's source VIP:vport becomes the real
/// server's address and port and so does the error's destination; toward the client (the real
/// server's error about a request, or a router's on the way), the quote's destination real
/// server becomes VIP:vport, and the error's source too when the real server sent it. The
/// quote's IP checksum and, when quoted whole, its TCP/UDP checksum follow; the ICMP checksum
/// covers all of it (and, for ICMPv6, the outer addresses).
#[inline(always)]
pub fn rewrite_quoted(
    ctx: &XdpContext,
    at: &Headers,
    quote: &Quote,
    end: End,
    addr: &Addr,
    port: u16,
) -> Result<(), ()> {
    let inner = &quote.inner;
    // The ICMP checksum word, read first: every change below is folded into it.
    let icmp = ptr_at::<IcmpHdr>(ctx, at.l4).ok_or(())? as *mut IcmpHdr;
    // SAFETY: `icmp` lies inside the packet (checked just above).
    let mut icmp_check = Update::of(unsafe { (*icmp).check });
    // The quote's address at its opposite end.
    let old: Addr;
    if at.v4 {
        let ip = ptr_at::<Ipv4Hdr>(ctx, at.l3).ok_or(())? as *mut Ipv4Hdr;
        let quoted = ptr_at::<Ipv4Hdr>(ctx, inner.l3).ok_or(())? as *mut Ipv4Hdr;
        // SAFETY: both headers lie inside the packet (checked just above).
        unsafe {
            let ttl = (*ip).ttl;
            if ttl <= 1 {
                return Err(());
            }
            let quoted_field = match end {
                End::Destination => &raw mut (*quoted).saddr,
                End::Source => &raw mut (*quoted).daddr,
            };
            let was = quoted_field.read();
            old = [0, 0, 0, was];
            let quoted_check = (*quoted).check;
            let mut update = Update::of(quoted_check);
            update.word32(was, addr[3]);
            let new_quoted_check = update.check();
            (*quoted).check = new_quoted_check;
            quoted_field.write(addr[3]);
            // ICMPv4's checksum covers its message only: the quote's words.
            icmp_check.word32(was, addr[3]);
            icmp_check.word16(quoted_check, new_quoted_check);

            let outer_field = match end {
                End::Destination => &raw mut (*ip).daddr,
                End::Source => &raw mut (*ip).saddr,
            };
            let mut check = Update::of((*ip).check);
            ttl_less_one(ip, &mut check);
            if outer_field.read() == was {
                check.word32(was, addr[3]);
                outer_field.write(addr[3]);
            }
            (*ip).check = check.check();
        }
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, at.l3).ok_or(())? as *mut Ipv6Hdr;
        let quoted = ptr_at::<Ipv6Hdr>(ctx, inner.l3).ok_or(())? as *mut Ipv6Hdr;
        // SAFETY: as above.
        unsafe {
            let hops = (*ip).hop_limit;
            if hops <= 1 {
                return Err(());
            }
            (*ip).hop_limit = hops - 1;
            let quoted_field = match end {
                End::Destination => &raw mut (*quoted).saddr,
                End::Source => &raw mut (*quoted).daddr,
            };
            old = read_addr(quoted_field);
            write_addr(quoted_field, addr);
            icmp_check.addr(&old, addr, false);
            // ICMPv6's checksum covers the outer addresses too (its pseudo-header).
            let outer_field = match end {
                End::Destination => &raw mut (*ip).daddr,
                End::Source => &raw mut (*ip).saddr,
            };
            if read_addr(outer_field) == old {
                icmp_check.addr(&old, addr, false);
                write_addr(outer_field, addr);
            }
        }
    }
    // The quote's transport header: its port at that end always (within the 8 bytes every
    // error carries), its checksum when quoted.
    if inner.proto == IPPROTO_TCP {
        let ports = ptr_at::<Ports>(ctx, inner.l4).ok_or(())? as *mut Ports;
        // SAFETY: `ports` lies inside the packet.
        let was = unsafe {
            let field = match end {
                End::Destination => &raw mut (*ports).src,
                End::Source => &raw mut (*ports).dst,
            };
            let was = field.read();
            field.write(port);
            was
        };
        icmp_check.word16(was, port);
        if quote.l4_len >= size_of::<TcpToCheck>() {
            let tcp = ptr_at::<TcpToCheck>(ctx, inner.l4).ok_or(())? as *mut TcpToCheck;
            // SAFETY: `tcp` lies inside the packet.
            unsafe {
                let check = (*tcp).check;
                let mut update = Update::of(check);
                update.addr(&old, addr, at.v4);
                update.word16(was, port);
                let new = update.check();
                (*tcp).check = new;
                icmp_check.word16(check, new);
            }
        }
    } else {
        let udp = ptr_at::<UdpHdr>(ctx, inner.l4).ok_or(())? as *mut UdpHdr;
        // SAFETY: `udp` lies inside the packet (the 8 bytes every error quotes).
        unsafe {
            let field = match end {
                End::Destination => &raw mut (*udp).src,
                End::Source => &raw mut (*udp).dst,
            };
            let was = field.read();
            field.write(port);
            icmp_check.word16(was, port);
            let check = (*udp).check;
            if check != 0 || !at.v4 {
                let mut update = Update::of(check);
                update.addr(&old, addr, at.v4);
                update.word16(was, port);
                let mut new = update.check();
                if new == 0 {
                    new = 0xffff;
                }
                (*udp).check = new;
                icmp_check.word16(check, new);
            }
        }
    }
    // SAFETY: `icmp` was checked to lie inside the packet above.
    unsafe { (*icmp).check = icmp_check.check() };
    Ok(())
}

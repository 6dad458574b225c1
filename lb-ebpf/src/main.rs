//! The xlb XDP program: Direct Routing and NAT for configured VIPs.
//!
//! Per packet, top to bottom: parse Ethernet (VLAN tags), IPv4 or IPv6, TCP or UDP (or the ICMP
//! error that quotes such a packet) into a [`Flow`]; look up the VIP; find the connection in the
//! flow table, or else place it (the client's persistence template, or the VIP's live Maglev
//! table) and remember the choice; rewrite it as the service forwards (DR: the two MAC
//! addresses; NAT: the destination too, see [`nat`]); send the frame back out (XDP_TX) or to
//! the backend's interface (devmap redirect). A NAT real server's reply is translated back and
//! routed to the client. Anything else passes untouched. Every packet bumps exactly one
//! outcome counter.
#![no_std]
#![no_main]

mod headers;
mod nat;

use aya_ebpf::{
    bindings::{
        BPF_F_MMAPABLE, BPF_F_NO_COMMON_LRU, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_SUCCESS,
        bpf_fib_lookup,
        xdp_action::{XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX},
    },
    helpers::{bpf_fib_lookup as fib_lookup, bpf_jiffies64},
    macros::{map, xdp},
    maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use headers::*;
use lb_common::{
    Addr, BACKEND_F_VALID, Backend, Claim, Control, Counters, DEFAULT_FLOW_TABLE_SIZE,
    DEFAULT_MAGLEV_TABLE_SIZE, FLOW_TOUCH_SLOTS, FlowEvent, FlowKey, FlowTouchPair, FlowValue,
    Forwarding, MAX_BACKENDS, MAX_CLAIMS, MAX_NAT_SOURCES, MAX_SERVICES, MAX_TX_PORTS,
    MEMBER_SLOTS, MemberSlot, NAT_FILTER_WORDS, NO_MEMBER, NatReply, NatSource, Outcome,
    PERSISTENCE_ENTRIES, PROTO_TCP, PersistenceKey, RECENT_FLOW_SLOTS, RECENT_NAT_SOURCE_SLOTS,
    RECENT_REPLY_SLOTS, RING_CHUNK, RecentFlow, RecentNatSource, RecentReply, RingChunk,
    VIP_ADDR_CLAIM_MASK, VIP_ADDR_F_SERVICES, VIP_F_SOURCE_HASH, VIP_FILTER_WORDS, VIP_PROBES,
    VIP_SLOTS, VipAddrValue, VipKey, VipSlot, VipValue, flow_touch, hash, ring_chunks,
    touched_within, v4_mapped, vip_filter_bit,
};
use nat::{End, Headers, Quote};

/// Two halves of [`VIP_SLOTS`] slots; `Control::vip_flips` says which one is live. Mapped into
/// the control plane's memory, which writes a whole half at memory speed.
#[map]
static XLB_VIPS: Array<VipSlot> = Array::with_max_entries(2 * VIP_SLOTS, BPF_F_MMAPABLE);
/// Every VIP address, whatever its ports (fragments and extension-header packets carry none),
/// and every VRRP virtual address: value [`VipAddrValue`], its claim and flags.
#[map]
static XLB_VIP_ADDRS: HashMap<Addr, VipAddrValue> = HashMap::with_max_entries(2 * MAX_SERVICES, 0);
/// One bit per hash of every address with virtual services ([`vip_filter_bit`]).
#[map]
static XLB_VIP_FILTER: Array<u64> = Array::with_max_entries(VIP_FILTER_WORDS, BPF_F_MMAPABLE);
#[map]
static XLB_CLAIMS: Array<Claim> = Array::with_max_entries(MAX_CLAIMS, 0);
/// Every Maglev table, end to end: table `t`'s entry `i` is entry `t * M + i` (Katran's
/// `ch_rings`), packed [`RING_CHUNK`] to a map value. The array lookup checks the index, so a
/// slot computed from any hash is safe. Sized at load for the configured M; mapped into the
/// control plane's memory.
#[map]
static XLB_RINGS: Array<RingChunk> =
    Array::with_max_entries(ring_chunks(DEFAULT_MAGLEV_TABLE_SIZE), BPF_F_MMAPABLE);
/// Each service's member block: the backend id of each position its table names.
#[map]
static XLB_MEMBERS: Array<MemberSlot> = Array::with_max_entries(MEMBER_SLOTS, BPF_F_MMAPABLE);
/// Mapped into the control plane's memory too, which reads every entry at once for stats.
#[map]
static XLB_BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, BPF_F_MMAPABLE);
#[map]
static XLB_TX_PORTS: DevMapHash = DevMapHash::with_max_entries(MAX_TX_PORTS, 0);
#[map]
static XLB_CONTROL: Array<Control> = Array::with_max_entries(1, 0);
#[map]
static XLB_VIP_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);
#[map]
static XLB_BACKEND_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);
#[map]
static XLB_OUTCOMES: PerCpuArray<u64> = PerCpuArray::with_max_entries(Outcome::COUNT, 0);
/// Connection tracking: the backend each client connection went to, so that it stays there when
/// the tables change. Per-CPU LRU lists keep updates from contending across CPUs; the table
/// itself is shared, so a flow that moves to another CPU keeps its backend. Resized at load.
#[map]
static XLB_FLOWS: LruHashMap<FlowKey, FlowValue> =
    LruHashMap::with_max_entries(DEFAULT_FLOW_TABLE_SIZE, BPF_F_NO_COMMON_LRU);
/// When a flow of each slot was last written or refreshed in the flow table
/// ([`lb_common::FLOW_TOUCH_SLOTS`]): a SYN whose slot lies untouched for an idle timeout has
/// no entry to repoint, and skips the lookup.
#[map]
static XLB_FLOW_TOUCHES: Array<FlowTouchPair> = Array::with_max_entries(FLOW_TOUCH_SLOTS / 2, 0);
/// Each CPU's route lookup in progress (see [`fib_route`]).
#[map]
static XLB_FIB_SCRATCH: PerCpuArray<bpf_fib_lookup> = PerCpuArray::with_max_entries(1, 0);
/// Each CPU's last NAT replies' translations and routes ([`RecentReply`]).
#[map]
static XLB_RECENT_REPLIES: PerCpuArray<RecentReply> =
    PerCpuArray::with_max_entries(RECENT_REPLY_SLOTS, 0);
/// Each CPU's last NAT source map entries ([`RecentNatSource`]).
#[map]
static XLB_RECENT_NAT_SOURCES: PerCpuArray<RecentNatSource> =
    PerCpuArray::with_max_entries(RECENT_NAT_SOURCE_SLOTS, 0);
/// Persistent services' clients and the backend of their last connection (IPVS's persistence
/// templates).
#[map]
static XLB_PERSISTENCE: LruHashMap<PersistenceKey, FlowValue> =
    LruHashMap::with_max_entries(PERSISTENCE_ENTRIES, 0);
/// NAT real servers (address, port, protocol) and the service their replies answer for.
#[map]
static XLB_NAT_SOURCES: HashMap<NatSource, NatReply> =
    HashMap::with_max_entries(MAX_NAT_SOURCES, 0);
/// A bit per hash of a NAT real server's address ([`lb_common::vip_filter_bit`]): replies are
/// looked for only among packets from those.
#[map]
static XLB_NAT_FILTER: Array<u64> = Array::with_max_entries(NAT_FILTER_WORDS, BPF_F_MMAPABLE);
#[map]
static XLB_FLOW_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(FlowEvent::COUNT, 0);
/// Per CPU, the flows it saw in their last jiffy ([`RecentFlow`]): a packet of a flow already
/// seen this jiffy on this CPU costs an inlined array read instead of the flow table's hash
/// lookup. NIC queues hash flows to CPUs, so a flow's packets meet one CPU's cache.
#[map]
static XLB_RECENT_FLOWS: PerCpuArray<RecentFlow> =
    PerCpuArray::with_max_entries(RECENT_FLOW_SLOTS, 0);
/// When (jiffies) a SYN last came for any flow of each recent-flow slot, on any CPU. A CPU's
/// note of a SYN older than that may be stale: the client reused the ports, and the new SYN
/// went through another CPU (and maybe to another backend). Such a note is not followed.
#[map]
static XLB_SYN_TIMES: Array<u64> = Array::with_max_entries(RECENT_FLOW_SLOTS, 0);

// Inlined into the entry point the macro writes: a BPF-to-BPF call costs a return, and on CPUs
// whose returns go through a mitigation thunk (AMD's Safe RET) a return is dearer than the rest
// of a pass verdict.
#[xdp]
#[inline(always)]
pub fn xlb(ctx: XdpContext) -> u32 {
    let outcome = process(&ctx);
    if let Some(count) = XLB_OUTCOMES.get_ptr_mut(outcome as u32) {
        // SAFETY: a per-CPU slot; XDP does not preempt itself on one CPU.
        unsafe { *count += 1 };
    }
    match outcome {
        Outcome::Tx => XDP_TX,
        Outcome::Redirect => XDP_REDIRECT,
        Outcome::PassNotIp
        | Outcome::PassNotVip
        | Outcome::PassInactive
        | Outcome::PassMalformed
        | Outcome::PassIcmpNotToVip
        | Outcome::PassNatUnresolved => XDP_PASS,
        Outcome::DropFragment
        | Outcome::DropNoBackend
        | Outcome::DropRedirect
        | Outcome::DropIpv6Ext
        | Outcome::DropNoTable
        | Outcome::DropLeaseExpired
        | Outcome::DropTtlExceeded => XDP_DROP,
    }
}

/// Not attached: the control plane runs it (BPF_PROG_TEST_RUN) to read the clock that leases
/// and idle timeouts are measured in, which userspace has no other way to see. Writes jiffies
/// into the frame's first eight bytes.
#[xdp]
pub fn xlb_clock(ctx: XdpContext) -> u32 {
    if let Some(word) = ptr_at::<u64>(&ctx, 0) {
        unsafe { (word as *mut u64).write_unaligned(bpf_jiffies64()) };
    }
    XDP_PASS
}

/// A TCP or UDP flow as parsed from the packet (or from the ICMP error quoting it), seen as a
/// client's flow to a VIP: `vip` is where it goes, `client` where it comes from. A NAT real
/// server's reply parses the same way, its destination the client's.
struct Flow {
    vip: VipKey,
    client: Addr,
    client_port: u16,
    v4: bool,
    /// A TCP SYN: a new connection, even when a closed one left this 5-tuple in the flow table.
    opens: bool,
    /// Its destination address may be a VIP's (the VIP address filter says so).
    to_vip_addr: bool,
    /// Parsed from an ICMP error quoting it (the error's own headers are `at`).
    quote: Option<Quote>,
    at: Headers,
}

impl Flow {
    /// Its slot in this CPU's recent flows (and in the SYN times).
    #[inline(always)]
    fn recent_slot(&self) -> u32 {
        RecentFlow::slot(
            &self.client,
            self.client_port,
            &self.vip.addr,
            self.vip.port,
        )
    }

    /// Whether the recent-flow entry `r` is a note of this flow.
    ///
    /// # Safety
    /// `r` is this CPU's own entry.
    #[inline(always)]
    unsafe fn noted_in(&self, r: *const RecentFlow) -> bool {
        unsafe {
            (*r).client == self.client
                && (*r).vip == self.vip.addr
                && (*r).client_port == self.client_port
                && (*r).vip_port == self.vip.port
                && (*r).proto == self.vip.proto
        }
    }

    #[inline(always)]
    fn hash(&self, seed: u32, source_only: bool) -> u32 {
        let ports = hash::ports_word(self.client_port, self.vip.port);
        match (self.v4, source_only) {
            (true, false) => hash::flow_hash_v4(
                seed,
                self.client[3],
                self.vip.addr[3],
                ports,
                self.vip.proto,
            ),
            (true, true) => hash::source_hash_v4(seed, self.client[3]),
            (false, false) => {
                hash::flow_hash_v6(seed, &self.client, &self.vip.addr, ports, self.vip.proto)
            }
            (false, true) => hash::source_hash_v6(seed, &self.client),
        }
    }
}

#[inline(always)]
fn process(ctx: &XdpContext) -> Outcome {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return Outcome::PassMalformed;
    };
    let mut ether_type = u16::from_be(unsafe { (*eth).proto });
    let mut l3 = size_of::<EthHdr>();
    // One 802.1Q tag, or an 802.1ad service tag with the customer's 802.1Q tag inside it
    // (QinQ). XDP_TX sends the tags back out as they came.
    if ether_type == ETH_P_8021AD || ether_type == ETH_P_8021Q {
        let Some(vlan) = ptr_at::<VlanHdr>(ctx, l3) else {
            return Outcome::PassMalformed;
        };
        let outer = ether_type;
        ether_type = u16::from_be(unsafe { (*vlan).proto });
        l3 += size_of::<VlanHdr>();
        if outer == ETH_P_8021AD && ether_type == ETH_P_8021Q {
            let Some(inner) = ptr_at::<VlanHdr>(ctx, l3) else {
                return Outcome::PassMalformed;
            };
            ether_type = u16::from_be(unsafe { (*inner).proto });
            l3 += size_of::<VlanHdr>();
        }
    }
    let flow = match ether_type {
        ETH_P_IP => parse_ipv4(ctx, l3),
        ETH_P_IPV6 => parse_ipv6(ctx, l3),
        ETH_P_ARP => return arp(ctx, l3),
        _ => return Outcome::PassNotIp,
    };
    match flow {
        Ok(flow) => forward(ctx, &flow),
        Err(outcome) => outcome,
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, l3: usize) -> Result<Flow, Outcome> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, l3).ok_or(Outcome::PassMalformed)?;
    // Most traffic a director sees is neither to a VIP nor from a NAT real server: the
    // kernel's, whatever its shape, decided on the addresses alone before the rest is read.
    // (LLVM compiles the filters' lookups as helper calls, which the verifier inlines only
    // later, and keeps four registers across a call: fields read before the lookups would
    // wait on the stack. Measured: pass 0.04x and hit 0.08x of the floor less.) Not ICMP: a
    // router's error about a NAT request is between the router and the client.
    let (proto, saddr, daddr) = unsafe { ((*ip).proto, (*ip).saddr, (*ip).daddr) };
    let to_vip_addr = maybe_vip_addr(&v4_mapped(daddr));
    if proto != IPPROTO_ICMP && !to_vip_addr && !maybe_nat_source(&v4_mapped(saddr)) {
        return Err(Outcome::PassNotVip);
    }
    let (version_ihl, tot_len, frag_off) = unsafe {
        (
            (*ip).version_ihl,
            u16::from_be((*ip).tot_len) as usize,
            u16::from_be((*ip).frag_off),
        )
    };
    let header_len = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || header_len < size_of::<Ipv4Hdr>() || tot_len < header_len {
        return Err(Outcome::PassMalformed);
    }
    // A frame may carry padding past the datagram, never less than the datagram.
    if !has_bytes(ctx, l3, tot_len) {
        return Err(Outcome::PassMalformed);
    }
    if frag_off & IP_MF_OFFSET != 0 {
        return Err(fragment(&v4_mapped(saddr), &v4_mapped(daddr)));
    }
    let l4 = l3 + header_len;
    let l4_len = tot_len - header_len;
    match proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let (src, dst, opens) = transport(ctx, l4, l4_len, proto)?;
            Ok(Flow {
                vip: VipKey {
                    addr: v4_mapped(daddr),
                    port: dst,
                    proto,
                    _pad: 0,
                },
                client: v4_mapped(saddr),
                client_port: src,
                v4: true,
                opens,
                to_vip_addr,
                quote: None,
                at: Headers {
                    l3,
                    l4,
                    len: tot_len as u16,
                    v4: true,
                    proto,
                },
            })
        }
        IPPROTO_ICMP => parse_icmpv4_error(ctx, l3, l4, opaque(l4_len), daddr, to_vip_addr),
        _ => Err(Outcome::PassNotVip),
    }
}

/// Source and destination ports of a TCP or UDP header of `len` bytes, and whether it opens a
/// connection: a SYN without ACK. Clients reuse ports, so a SYN is placed by Maglev (and its
/// entry replaced) rather than sent where an earlier connection with the same ports went,
/// which may be a backend that is draining (as Katran does).
#[inline(always)]
fn transport(
    ctx: &XdpContext,
    l4: usize,
    len: usize,
    proto: u8,
) -> Result<(u16, u16, bool), Outcome> {
    let min_len = if proto == IPPROTO_TCP {
        TCP_HDR_LEN
    } else {
        UDP_HDR_LEN
    };
    if len < min_len {
        return Err(Outcome::PassMalformed);
    }
    let ports = ptr_at::<Ports>(ctx, l4).ok_or(Outcome::PassMalformed)?;
    let (src, dst) = unsafe { ((*ports).src, (*ports).dst) };
    if proto != IPPROTO_TCP {
        return Ok((src, dst, false));
    }
    let tcp = ptr_at::<TcpPrefix>(ctx, l4).ok_or(Outcome::PassMalformed)?;
    let flags = unsafe { (*tcp).flags };
    Ok((src, dst, flags & (TCP_SYN | TCP_ACK) == TCP_SYN))
}

/// An ICMP error (destination unreachable, fragmentation needed among them, or time exceeded)
/// about a VIP flow quotes the backend's reply (VIP to client); it must reach the backend that
/// owns the flow, so that its path MTU shrinks or its connection fails fast (Maglev paper,
/// section 4; IPVS forwards the same errors). About a NAT real server's flow it quotes the
/// request (client to real server) and goes back to the client translated. Everything read lies
/// inside the IP packet's `len` bytes (not in the frame's padding), and the error must be
/// addressed to the quoted packet's source.
#[inline(always)]
fn parse_icmpv4_error(
    ctx: &XdpContext,
    l3: usize,
    l4: usize,
    len: usize,
    daddr: u32,
    to_vip_addr: bool,
) -> Result<Flow, Outcome> {
    let icmp = ptr_at::<IcmpHdr>(ctx, l4).ok_or(Outcome::PassMalformed)?;
    if len < size_of::<IcmpHdr>() {
        return Err(Outcome::PassMalformed);
    }
    let kind = unsafe { (*icmp).kind };
    if kind != ICMP_DEST_UNREACH && kind != ICMP_TIME_EXCEEDED {
        return Err(Outcome::PassNotVip);
    }
    let quoted = l4 + size_of::<IcmpHdr>();
    let ip = ptr_at::<Ipv4Hdr>(ctx, quoted).ok_or(Outcome::PassMalformed)?;
    let (version_ihl, proto, saddr, qdaddr) =
        unsafe { ((*ip).version_ihl, (*ip).proto, (*ip).saddr, (*ip).daddr) };
    let header_len = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || header_len < size_of::<Ipv4Hdr>() {
        return Err(Outcome::PassMalformed);
    }
    let inner_l4 = quoted + header_len;
    let ports = ptr_at::<Ports>(ctx, inner_l4).ok_or(Outcome::PassMalformed)?;
    if len < size_of::<IcmpHdr>() + header_len + size_of::<Ports>() {
        return Err(Outcome::PassMalformed);
    }
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Err(Outcome::PassNotVip);
    }
    if saddr != daddr {
        return Err(Outcome::PassIcmpNotToVip);
    }
    let (src, dst) = unsafe { ((*ports).src, (*ports).dst) };
    Ok(Flow {
        vip: VipKey {
            addr: v4_mapped(saddr),
            port: src,
            proto,
            _pad: 0,
        },
        client: v4_mapped(qdaddr),
        client_port: dst,
        v4: true,
        opens: false,
        // The quote's source is the error's destination.
        to_vip_addr,
        quote: Some(Quote {
            inner: Headers {
                l3: quoted,
                l4: inner_l4,
                len: 0,
                v4: true,
                proto,
            },
            l4_len: len - size_of::<IcmpHdr>() - header_len,
        }),
        at: Headers {
            l3,
            l4,
            len: (l4 - l3 + len) as u16,
            v4: true,
            proto: IPPROTO_ICMP,
        },
    })
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, l3: usize) -> Result<Flow, Outcome> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, l3).ok_or(Outcome::PassMalformed)?;
    // As for IPv4; ICMPv6 goes on for neighbour solicitations too (to a multicast address).
    let (next_hdr, saddr, daddr) = unsafe { ((*ip).next_hdr, (*ip).saddr, (*ip).daddr) };
    let to_vip_addr = maybe_vip_addr(&daddr);
    if next_hdr != IPPROTO_ICMPV6 && !to_vip_addr && !maybe_nat_source(&saddr) {
        return Err(Outcome::PassNotVip);
    }
    let (first_byte, payload_len) =
        unsafe { (*(ip as *const u8), u16::from_be((*ip).payload_len) as usize) };
    if first_byte >> 4 != 6 {
        return Err(Outcome::PassMalformed);
    }
    let l4 = l3 + size_of::<Ipv6Hdr>();
    if !has_bytes(ctx, l4, payload_len) {
        return Err(Outcome::PassMalformed);
    }
    match next_hdr {
        IPPROTO_TCP | IPPROTO_UDP => {
            let (src, dst, opens) = transport(ctx, l4, payload_len, next_hdr)?;
            Ok(Flow {
                vip: VipKey {
                    addr: daddr,
                    port: dst,
                    proto: next_hdr,
                    _pad: 0,
                },
                client: saddr,
                client_port: src,
                v4: false,
                opens,
                to_vip_addr,
                quote: None,
                at: Headers {
                    l3,
                    l4,
                    len: (size_of::<Ipv6Hdr>() + payload_len) as u16,
                    v4: false,
                    proto: next_hdr,
                },
            })
        }
        IPPROTO_ICMPV6 => parse_icmpv6(ctx, l3, l4, opaque(payload_len), &daddr, to_vip_addr),
        IPPROTO_FRAGMENT => Err(fragment(&saddr, &daddr)),
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
            Err(not_for_a_vip(&daddr, Outcome::DropIpv6Ext))
        }
        _ => Err(Outcome::PassNotVip),
    }
}

/// ICMPv6 errors (destination unreachable, packet too big, time exceeded) about a VIP flow or a
/// NAT real server's, read like their IPv4 counterparts (inside the payload's `len` bytes,
/// addressed to the quoted packet's source); neighbour solicitations for a VIP address whose
/// claim lapsed are dropped, like ARP requests.
#[inline(always)]
fn parse_icmpv6(
    ctx: &XdpContext,
    l3: usize,
    l4: usize,
    len: usize,
    daddr: &Addr,
    to_vip_addr: bool,
) -> Result<Flow, Outcome> {
    let icmp = ptr_at::<IcmpHdr>(ctx, l4).ok_or(Outcome::PassMalformed)?;
    if len < size_of::<IcmpHdr>() {
        return Err(Outcome::PassMalformed);
    }
    let kind = unsafe { (*icmp).kind };
    if kind == ICMPV6_NEIGHBOUR_SOLICITATION {
        let ns = ptr_at::<NeighbourSolicitation>(ctx, l4).ok_or(Outcome::PassMalformed)?;
        if len < size_of::<NeighbourSolicitation>() {
            return Err(Outcome::PassMalformed);
        }
        let target = unsafe { (*ns).target };
        return Err(if lapsed_vip_addr(&target) {
            Outcome::DropLeaseExpired
        } else {
            Outcome::PassNotVip
        });
    }
    if kind != ICMPV6_DEST_UNREACH && kind != ICMPV6_PKT_TOOBIG && kind != ICMPV6_TIME_EXCEED {
        return Err(Outcome::PassNotVip);
    }
    let quoted = l4 + size_of::<IcmpHdr>();
    let ip = ptr_at::<Ipv6Hdr>(ctx, quoted).ok_or(Outcome::PassMalformed)?;
    let inner_l4 = quoted + size_of::<Ipv6Hdr>();
    let ports = ptr_at::<Ports>(ctx, inner_l4).ok_or(Outcome::PassMalformed)?;
    if len < size_of::<IcmpHdr>() + size_of::<Ipv6Hdr>() + size_of::<Ports>() {
        return Err(Outcome::PassMalformed);
    }
    let proto = unsafe { (*ip).next_hdr };
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Err(Outcome::PassNotVip);
    }
    let (src, dst, saddr, qdaddr) =
        unsafe { ((*ports).src, (*ports).dst, (*ip).saddr, (*ip).daddr) };
    if saddr != *daddr {
        return Err(Outcome::PassIcmpNotToVip);
    }
    Ok(Flow {
        vip: VipKey {
            addr: saddr,
            port: src,
            proto,
            _pad: 0,
        },
        client: qdaddr,
        client_port: dst,
        v4: false,
        opens: false,
        // The quote's source is the error's destination.
        to_vip_addr,
        quote: Some(Quote {
            inner: Headers {
                l3: quoted,
                l4: inner_l4,
                len: 0,
                v4: false,
                proto,
            },
            l4_len: len - size_of::<IcmpHdr>() - size_of::<Ipv6Hdr>(),
        }),
        at: Headers {
            l3,
            l4,
            len: (l4 - l3 + len) as u16,
            v4: false,
            proto: IPPROTO_ICMPV6,
        },
    })
}

/// `len` as a value LLVM knows nothing about. The frame was checked to hold the IP packet, so
/// from a length check LLVM would prove the frame bounds check of the same bytes redundant and
/// drop it, and that bounds check is the one the verifier follows.
#[inline(always)]
fn opaque(len: usize) -> usize {
    // SAFETY: a read of a local.
    unsafe { core::ptr::read_volatile(&len) }
}

/// `outcome` when `addr` is a VIP address with virtual servers, else the packet is none of our
/// business.
#[inline(always)]
fn not_for_a_vip(addr: &Addr, outcome: Outcome) -> Outcome {
    if !maybe_vip_addr(addr) {
        return Outcome::PassNotVip;
    }
    match XLB_VIP_ADDRS.get_ptr(addr) {
        Some(value) if unsafe { *value } & VIP_ADDR_F_SERVICES != 0 => outcome,
        _ => Outcome::PassNotVip,
    }
}

/// A fragment: to a VIP address, or from a NAT real server (whose replies it may carry, and
/// which cannot be translated without their ports), it is dropped; anything else is the
/// kernel's.
#[inline(always)]
fn fragment(saddr: &Addr, daddr: &Addr) -> Outcome {
    if maybe_nat_source(saddr) {
        let marker = NatSource::address_of(saddr);
        if unsafe { XLB_NAT_SOURCES.get(&marker) }.is_some() {
            return Outcome::DropFragment;
        }
    }
    not_for_a_vip(daddr, Outcome::DropFragment)
}

/// Whether `addr` may have virtual services: its bit in the VIP address filter is set (an
/// inlined array read, where the address map would cost a hash lookup).
#[inline(always)]
fn maybe_vip_addr(addr: &Addr) -> bool {
    let bit = vip_filter_bit(addr);
    match XLB_VIP_FILTER.get(bit / 64) {
        Some(word) => word & (1u64 << (bit % 64)) != 0,
        None => true,
    }
}

/// Whether `addr` may be a NAT real server's, whose replies are translated: its bit in the NAT
/// source filter is set.
#[inline(always)]
fn maybe_nat_source(addr: &Addr) -> bool {
    let bit = vip_filter_bit(addr);
    match XLB_NAT_FILTER.get(bit / 64) {
        Some(word) => word & (1u64 << (bit % 64)) != 0,
        None => false,
    }
}

/// Whether `addr` is a VIP address whose claim has lapsed: this director's control plane died,
/// another director may hold the address now, and the stack (which may still have it) must
/// not answer for it.
#[inline(always)]
fn lapsed_vip_addr(addr: &Addr) -> bool {
    let Some(value) = XLB_VIP_ADDRS.get_ptr(addr) else {
        return false;
    };
    let claim = unsafe { *value } & VIP_ADDR_CLAIM_MASK;
    match XLB_CLAIMS.get(claim) {
        Some(claim) => claim.lapsed(unsafe { bpf_jiffies64() }),
        None => false,
    }
}

/// ARP requests for a VIP address are dropped once its claim lapses; all other ARP passes.
#[inline(always)]
fn arp(ctx: &XdpContext, l3: usize) -> Outcome {
    let Some(arp) = ptr_at::<ArpEthIpv4>(ctx, l3) else {
        return Outcome::PassNotIp;
    };
    let (op, tpa) = unsafe { (u16::from_be((*arp).op), (*arp).tpa) };
    if op == ARPOP_REQUEST && lapsed_vip_addr(&v4_mapped(u32::from_ne_bytes(tpa))) {
        return Outcome::DropLeaseExpired;
    }
    Outcome::PassNotIp
}

#[inline(always)]
fn forward(ctx: &XdpContext, flow: &Flow) -> Outcome {
    let Some(control) = XLB_CONTROL.get(0) else {
        return Outcome::DropNoTable;
    };
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    if flow.to_vip_addr {
        let recent = XLB_RECENT_FLOWS.get_ptr_mut(flow.recent_slot());
        if !flow.opens
            && let Some(outcome) = recently_forwarded(ctx, flow, recent, control, bytes)
        {
            return outcome;
        }
        if let Some(vip) = find_vip(&flow.vip, control.live_vip_half()) {
            let outcome = serve(ctx, flow, vip, control, bytes, recent);
            // A VIP's packets that reach a backend are counted once, on the backend (whose
            // entry names its VIP); the others here. `xlb stats` adds the two up, which saves
            // the hot path an update.
            if !matches!(
                outcome,
                Outcome::Tx | Outcome::Redirect | Outcome::DropRedirect
            ) {
                count(&XLB_VIP_STATS, vip.id, bytes);
            }
            return outcome;
        }
    }
    // Not to a VIP: a NAT real server's reply (or an error about a request to it), or none of
    // the data plane's business. The parser let a packet not to a VIP address through only
    // from a NAT real server's (ICMP errors apart).
    let parsed_as_reply = !flow.to_vip_addr && flow.quote.is_none();
    if parsed_as_reply || maybe_nat_source(&flow.client) {
        return reply(ctx, flow, control.nat_generation, bytes);
    }
    Outcome::PassNotVip
}

/// A packet of a flow this CPU forwarded earlier in this jiffy, under the same VIP table: sent
/// where the last one went, without the VIP table's lookup or the flow table's (the note keeps
/// what they gave). `None` when there is no such note, or when anything is not as it was then
/// (the service's claim, the backend): the full path decides.
#[inline(always)]
fn recently_forwarded(
    ctx: &XdpContext,
    flow: &Flow,
    recent: Option<*mut RecentFlow>,
    control: &Control,
    bytes: u64,
) -> Option<Outcome> {
    let r = recent?;
    let now = unsafe { bpf_jiffies64() };
    // SAFETY: this CPU's own slot; XDP does not preempt itself on one CPU.
    let (backend_id, generation, claim, vip_flags) = unsafe {
        if (*r).seen != now
            || (*r).opened != 0
            || (*r).vip_flips != control.vip_flips
            || !flow.noted_in(r)
        {
            return None;
        }
        ((*r).backend_id, (*r).generation, (*r).claim, (*r).vip_flags)
    };
    let claim = XLB_CLAIMS.get(u32::from(claim))?;
    if claim.active == 0 || claim.forwarding_lapsed(now) {
        return None;
    }
    let backend = XLB_BACKENDS.get(backend_id)?;
    if backend.flags & BACKEND_F_VALID == 0 || backend.generation != generation {
        return None;
    }
    Some(finish(
        ctx,
        flow,
        u32::from(vip_flags),
        backend_id,
        backend,
        bytes,
        0,
    ))
}

#[inline(always)]
fn serve(
    ctx: &XdpContext,
    flow: &Flow,
    vip: &VipValue,
    control: &Control,
    bytes: u64,
    recent: Option<*mut RecentFlow>,
) -> Outcome {
    let Some(claim) = XLB_CLAIMS.get(vip.claim) else {
        return Outcome::DropNoTable;
    };
    if claim.active == 0 {
        return Outcome::PassInactive;
    }
    // Inlined by the verifier into one load, unlike the ktime helpers.
    let now = unsafe { bpf_jiffies64() };
    if claim.forwarding_lapsed(now) {
        return Outcome::DropLeaseExpired;
    }

    let key = FlowKey {
        client: flow.client,
        client_port: flow.client_port,
        vip_id: vip.id as u16,
    };
    let idle = if flow.vip.proto == PROTO_TCP {
        control.tcp_idle
    } else {
        control.udp_idle
    };
    // A SYN is placed by Maglev and only noted in this CPU's recent flows: the connection is
    // remembered at its first packet without SYN, where the SYN went, so a flood of SYNs from
    // spoofed sources never pushes a connection out of the flow table. Clients reuse ports, so
    // a SYN never follows an entry a closed connection left either (Katran's rule).
    if flow.opens {
        flow_event(FlowEvent::Syn);
        let (id, backend) = match place_new(flow, vip, control, now) {
            Ok(placed) => placed,
            Err(outcome) => return outcome,
        };
        note_recent(recent, flow, vip, control, id, backend, now, 1);
        if let Some(t) = XLB_SYN_TIMES.get_ptr_mut(flow.recent_slot()) {
            // SAFETY: an aligned u64 of an array map: stored whole.
            unsafe { *t = now };
        }
        // An entry a closed connection left for these ports is pointed at the SYN's backend
        // (never inserted: a flood of SYNs adds nothing). Otherwise the connection's next
        // packet, if another CPU (another recent-flow cache) takes it, would follow the old
        // entry to the old connection's backend. Only a slot touched within the idle timeout
        // can hold such an entry: most of a flood's SYNs skip the lookup.
        if may_be_remembered(&key, now, idle)
            && let Some(entry) = XLB_FLOWS.get_ptr_mut(&key)
        {
            // SAFETY: a map value; field stores, as in `remembered`.
            unsafe {
                (*entry).backend_id = id;
                (*entry).generation = backend.generation;
                (*entry).last_seen = now;
            }
            touch(&key, now);
        }
        return finish(ctx, flow, vip.flags, id, backend, bytes, NEW_CONNECTION);
    }
    let (backend_id, backend, conns) = match recently_opened(recent, flow, now, control.syn_window)
    {
        // Counted at its SYN.
        Some((id, backend)) => {
            remember(&key, id, backend, now);
            (id, backend, 0)
        }
        None => match remembered(&key, now, idle) {
            Ok((id, backend)) => (id, backend, 0),
            Err(why) => {
                flow_event(why);
                let (id, backend) = match place_new(flow, vip, control, now) {
                    Ok(placed) => placed,
                    Err(outcome) => return outcome,
                };
                remember(&key, id, backend, now);
                (id, backend, NEW_CONNECTION)
            }
        },
    };
    note_recent(recent, flow, vip, control, backend_id, backend, now, 0);
    finish(ctx, flow, vip.flags, backend_id, backend, bytes, conns)
}

/// What a placement adds to a backend's connection count (IPVS's Conns).
const NEW_CONNECTION: u64 = 1;

/// Writes a flow into the flow table (replacing any entry for its key).
#[inline(always)]
fn remember(key: &FlowKey, backend_id: u32, backend: &Backend, now: u64) {
    let value = FlowValue {
        backend_id,
        generation: backend.generation,
        last_seen: now,
    };
    if XLB_FLOWS.insert(key, &value, 0).is_err() {
        flow_event(FlowEvent::InsertFailed);
        return;
    }
    touch(key, now);
}

/// Notes that `key`'s entry in the flow table was written or refreshed at `now`.
#[inline(always)]
fn touch(key: &FlowKey, now: u64) {
    let slot = key.touch_slot();
    if let Some(pair) = XLB_FLOW_TOUCHES.get_ptr_mut(slot / 2) {
        // SAFETY: an aligned u32 of an array map: stored whole.
        unsafe { (*pair)[(slot % 2) as usize] = flow_touch(now) };
    }
}

/// Whether the flow table may hold a live entry for `key`: its touch slot was touched within
/// the idle timeout.
#[inline(always)]
fn may_be_remembered(key: &FlowKey, now: u64, idle: u64) -> bool {
    let slot = key.touch_slot();
    match XLB_FLOW_TOUCHES.get(slot / 2) {
        Some(pair) => touched_within(pair[(slot % 2) as usize], now, idle),
        None => true,
    }
}

/// Notes in this CPU's recent flows where `flow`'s packet went, and what the VIP table said of
/// its service.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn note_recent(
    recent: Option<*mut RecentFlow>,
    flow: &Flow,
    vip: &VipValue,
    control: &Control,
    backend_id: u32,
    backend: &Backend,
    now: u64,
    opened: u8,
) {
    let Some(r) = recent else {
        return;
    };
    // Field by field (a whole-struct assignment becomes a call to a byte-loop memmove); the
    // service's fields only for a packet without SYN: a SYN's note is never taken for the
    // fast path (`recently_forwarded`), and a SYN flood pays for every store.
    // SAFETY: this CPU's own slot; XDP does not preempt itself on one CPU.
    unsafe {
        (*r).client = flow.client;
        (*r).vip = flow.vip.addr;
        (*r).client_port = flow.client_port;
        (*r).vip_port = flow.vip.port;
        (*r).proto = flow.vip.proto;
        (*r).opened = opened;
        (*r).backend_id = backend_id;
        (*r).generation = backend.generation;
        (*r).seen = now;
        if opened == 0 {
            (*r).vip_id = vip.id as u16;
            (*r).claim = vip.claim as u16;
            (*r).vip_flags = vip.flags as u16;
            (*r).vip_flips = control.vip_flips;
        }
    }
}

/// Rewrites the packet for its backend as the service forwards, counts it (and a new
/// connection) on the backend, and sends it there.
#[inline(always)]
fn finish(
    ctx: &XdpContext,
    flow: &Flow,
    vip_flags: u32,
    backend_id: u32,
    backend: &Backend,
    bytes: u64,
    conns: u64,
) -> Outcome {
    match Forwarding::of(vip_flags) {
        // DR: the real server holds the VIP itself; the Ethernet addresses are all that change.
        Forwarding::DirectRouting => {}
        Forwarding::Nat => {
            let port = backend.real_server_port.to_be();
            let rs = &backend.real_server;
            let rewritten = match &flow.quote {
                None => nat::rewrite(ctx, &flow.at, End::Destination, rs, port),
                Some(q) => nat::rewrite_quoted(ctx, &flow.at, q, End::Destination, rs, port),
            };
            if rewritten.is_err() {
                return Outcome::DropTtlExceeded;
            }
        }
    }
    if let Some(c) = XLB_BACKEND_STATS.get_ptr_mut(backend_id) {
        // SAFETY: a per-CPU slot; XDP does not preempt itself on one CPU.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
            if conns != 0 {
                (*c).conns += conns;
            }
        }
    }

    // `mac` then `src_mac`: the backend entry's first 12 bytes.
    set_macs(ctx, backend as *const Backend as *const [u8; 12]);
    if backend.ifindex == 0 || backend.ifindex as usize == ctx.ingress_ifindex() {
        return Outcome::Tx;
    }
    match XLB_TX_PORTS.redirect(backend.ifindex, 0) {
        Ok(_) => Outcome::Redirect,
        Err(_) => Outcome::DropRedirect,
    }
}

/// A NAT real server's reply to a client: its source becomes the VIP's address and port again,
/// and it goes where the kernel's routes and neighbours say the client is (no neighbour entry
/// yet: the kernel gets it translated, forwards it and resolves one). Only the director whose
/// claim on the service is live translates. This CPU's recent replies spare the next replies
/// between the same real server and client, in the same jiffy, both the NAT source lookup and
/// the route lookup.
#[inline(always)]
fn reply(ctx: &XdpContext, flow: &Flow, generation: u32, bytes: u64) -> Outcome {
    let now = unsafe { bpf_jiffies64() };
    let ingress = ctx.ingress_ifindex() as u32;
    // The reply's source is a real server's, its destination the client's.
    let (rs, rs_port, client) = (&flow.client, flow.client_port, &flow.vip.addr);
    let Some(recent) = XLB_RECENT_REPLIES.get_ptr_mut(RecentReply::slot(rs, rs_port, client))
    else {
        return Outcome::DropNoTable;
    };
    // SAFETY: this CPU's own slot; XDP does not preempt itself on one CPU.
    let (noted, max_len) = unsafe {
        (
            (*recent).seen == now
                && (*recent).generation == generation
                && (*recent).source.addr == *rs
                && (*recent).dst == *client
                && (*recent).source.port == rs_port
                && (*recent).source.proto == flow.vip.proto
                && (*recent).ingress == ingress,
            (*recent).max_len,
        )
    };
    let routed = noted && flow.at.len <= max_len;
    let nat = if routed {
        // SAFETY: as above.
        unsafe { &(*recent).reply }
    } else {
        let source = NatSource {
            addr: *rs,
            port: rs_port,
            proto: flow.vip.proto,
            _pad: 0,
        };
        let Some(nat) = nat_source(&source, generation) else {
            return Outcome::PassNotVip;
        };
        nat
    };
    let Some(claim) = XLB_CLAIMS.get(nat.claim) else {
        return Outcome::DropNoTable;
    };
    if claim.active == 0 {
        return Outcome::PassInactive;
    }
    if claim.forwarding_lapsed(now) {
        return Outcome::DropLeaseExpired;
    }
    let (vip_addr, vip_port, backend_id) = (nat.vip.addr, nat.vip.port, nat.backend_id);
    // Where it goes, asked before anything is rewritten: a packet to this host itself (the
    // answer to a health check, say) is the director's own connection, not a reply.
    let route = if routed {
        Route::Via
    } else {
        let q = RouteQuery {
            src: &vip_addr,
            dst: client,
            sport: vip_port,
            dport: flow.vip.port,
            ingress,
        };
        match fib_route(ctx, &flow.at, &q) {
            Ok(fib) => {
                let max_len = if noted && max_len > flow.at.len {
                    max_len
                } else {
                    flow.at.len
                };
                // SAFETY: this CPU's own slot and scratch entry.
                unsafe { note_reply(recent, flow, &q, nat, fib, max_len, now, generation) };
                Route::Via
            }
            Err(route) => route,
        }
    };
    if let Route::Local = route {
        return Outcome::PassNotVip;
    }
    let rewritten = match &flow.quote {
        None => nat::rewrite(ctx, &flow.at, End::Source, &vip_addr, vip_port),
        Some(q) => nat::rewrite_quoted(ctx, &flow.at, q, End::Source, &vip_addr, vip_port),
    };
    if rewritten.is_err() {
        return Outcome::DropTtlExceeded;
    }
    if let Some(c) = XLB_BACKEND_STATS.get_ptr_mut(backend_id) {
        // SAFETY: a per-CPU slot; XDP does not preempt itself on one CPU.
        unsafe {
            (*c).out_packets += 1;
            (*c).out_bytes += bytes;
        }
    }
    let Route::Via = route else {
        // No neighbour entry yet (or a route the kernel must handle): the kernel gets it,
        // translated, forwards it and resolves the neighbour.
        return Outcome::PassNatUnresolved;
    };
    // SAFETY: this CPU's recent-reply entry, found fresh or written by this packet's lookup.
    let ifindex = unsafe { (*recent).ifindex };
    // SAFETY: as above; `dmac` then `smac` are 12 bytes of the entry.
    set_macs(ctx, unsafe { &raw const (*recent).dmac } as *const [u8; 12]);
    if ifindex == ingress {
        return Outcome::Tx;
    }
    match XLB_TX_PORTS.redirect(ifindex, 0) {
        Ok(_) => Outcome::Redirect,
        Err(_) => Outcome::DropRedirect,
    }
}

/// Notes a reply's translation `nat` and its route `fib` in this CPU's recent replies, for the
/// next replies between the same real server and client in this jiffy.
///
/// # Safety
/// `recent` is this CPU's own entry, `fib` its route lookup scratch entry.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn note_reply(
    recent: *mut RecentReply,
    flow: &Flow,
    q: &RouteQuery,
    nat: &NatReply,
    fib: *const bpf_fib_lookup,
    max_len: u16,
    now: u64,
    generation: u32,
) {
    let r = recent;
    // Field by field, volatile: LLVM merges adjacent copies into a memmove call otherwise.
    unsafe {
        for i in 0..4 {
            (&raw mut (*r).source.addr[i]).write_volatile(flow.client[i]);
            (&raw mut (*r).dst[i]).write_volatile(q.dst[i]);
            (&raw mut (*r).reply.vip.addr[i]).write_volatile(nat.vip.addr[i]);
        }
        (&raw mut (*r).source.port).write_volatile(flow.client_port);
        (&raw mut (*r).source.proto).write_volatile(flow.vip.proto);
        (&raw mut (*r).ingress).write_volatile(q.ingress);
        (&raw mut (*r).reply.vip.port).write_volatile(nat.vip.port);
        (&raw mut (*r).reply.vip.proto).write_volatile(nat.vip.proto);
        (&raw mut (*r).reply.backend_id).write_volatile(nat.backend_id);
        (&raw mut (*r).reply.claim).write_volatile(nat.claim);
        (&raw mut (*r).ifindex).write_volatile((*fib).ifindex);
        for i in 0..6 {
            (&raw mut (*r).dmac[i]).write_volatile((*fib).dmac[i]);
            (&raw mut (*r).smac[i]).write_volatile((*fib).smac[i]);
        }
        (&raw mut (*r).max_len).write_volatile(max_len);
        (&raw mut (*r).generation).write_volatile(generation);
        (&raw mut (*r).seen).write_volatile(now);
    }
}

/// What a real server's replies are translated to: from this CPU's recent NAT sources while
/// the map's generation holds, else from the map (and noted for the next reply).
#[inline(always)]
fn nat_source(source: &NatSource, generation: u32) -> Option<&'static NatReply> {
    let recent = XLB_RECENT_NAT_SOURCES.get_ptr_mut(source.recent_slot());
    if let Some(r) = recent {
        // SAFETY: this CPU's own slot; XDP does not preempt itself on one CPU.
        if unsafe { (*r).generation == generation && (*r).source == *source } {
            return Some(unsafe { &(*r).reply });
        }
    }
    // SAFETY: a map value, read before the next map change can free it.
    let reply = unsafe { XLB_NAT_SOURCES.get(source) }?;
    if let Some(r) = recent {
        // Field by field, volatile: LLVM merges adjacent copies into a memmove call otherwise.
        // SAFETY: this CPU's own slot.
        unsafe {
            for i in 0..4 {
                (&raw mut (*r).source.addr[i]).write_volatile(source.addr[i]);
                (&raw mut (*r).reply.vip.addr[i]).write_volatile(reply.vip.addr[i]);
            }
            (&raw mut (*r).source.port).write_volatile(source.port);
            (&raw mut (*r).source.proto).write_volatile(source.proto);
            (&raw mut (*r).reply.vip.port).write_volatile(reply.vip.port);
            (&raw mut (*r).reply.vip.proto).write_volatile(reply.vip.proto);
            (&raw mut (*r).reply.backend_id).write_volatile(reply.backend_id);
            (&raw mut (*r).reply.claim).write_volatile(reply.claim);
            (&raw mut (*r).generation).write_volatile(generation);
        }
    }
    Some(reply)
}

/// Where the kernel's routes and neighbours send a packet.
enum Route {
    /// Out of the interface, to the MAC, from the MAC of this CPU's recent-reply entry (kept
    /// there rather than copied: the program's 512-byte stack is nearly full on this path).
    Via,
    /// To this host itself.
    Local,
    /// No neighbour entry yet, or a route only the kernel handles.
    Unresolved,
}

/// A NAT reply's route lookup: from `src`:`sport` (as it will be once translated) to
/// `dst`:`dport`, arriving on `ingress`.
struct RouteQuery<'a> {
    src: &'a Addr,
    dst: &'a Addr,
    sport: u16,
    dport: u16,
    ingress: u32,
}

/// The FIB's route of a packet of IP length `at.len`: the lookup's result (interface and
/// MACs), or where else the packet goes.
#[inline(always)]
fn fib_route(
    ctx: &XdpContext,
    at: &Headers,
    q: &RouteQuery,
) -> Result<*const bpf_fib_lookup, Route> {
    // In a per-CPU scratch entry, not on the stack: the 512-byte stack cannot hold it beside
    // the rest of a reply's state.
    let Some(fib) = XLB_FIB_SCRATCH.get_ptr_mut(0) else {
        return Err(Route::Unresolved);
    };
    // SAFETY: this CPU's own entry; every input field is written (the helper writes the rest).
    let rc = unsafe {
        (*fib).family = if at.v4 { AF_INET } else { AF_INET6 };
        (*fib).l4_protocol = at.proto;
        (*fib).sport = q.sport;
        (*fib).dport = q.dport;
        (*fib).__bindgen_anon_1.tot_len = at.len;
        (*fib).__bindgen_anon_2.flowinfo = 0;
        (*fib).ifindex = q.ingress;
        if at.v4 {
            (*fib).__bindgen_anon_3.ipv4_src = q.src[3];
            (*fib).__bindgen_anon_4.ipv4_dst = q.dst[3];
        } else {
            (*fib).__bindgen_anon_3.ipv6_src = *q.src;
            (*fib).__bindgen_anon_4.ipv6_dst = *q.dst;
        }
        fib_lookup(
            ctx.ctx as *mut _,
            fib,
            size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Ok(fib),
        BPF_FIB_LKUP_RET_NOT_FWDED => Err(Route::Local),
        _ => Err(Route::Unresolved),
    }
}

/// Linear probing from the key's home slot in the live half; an empty slot ends the search
/// (halves are written whole, so there are no deleted slots to step over).
#[inline(always)]
fn find_vip(key: &VipKey, half: u32) -> Option<&'static VipValue> {
    let home = key.home_slot();
    let base = (half & 1) * VIP_SLOTS;
    for i in 0..VIP_PROBES {
        let slot = XLB_VIPS.get(base + ((home + i) & (VIP_SLOTS - 1)))?;
        if slot.key == *key {
            return Some(&slot.value);
        }
        if slot.key.proto == 0 {
            return None;
        }
    }
    None
}

/// The backend this CPU sent the flow's SYN to, if the flow's first packet without SYN comes
/// within the SYN window and that backend lives on: the connection is remembered there. (Notes
/// of packets without SYN are the fast path's, `recently_forwarded`.)
#[inline(always)]
fn recently_opened(
    recent: Option<*mut RecentFlow>,
    flow: &Flow,
    now: u64,
    syn_window: u64,
) -> Option<(u32, &'static Backend)> {
    let r = recent?;
    // SAFETY: this CPU's own slot.
    let (seen, backend_id, generation) = unsafe {
        if (*r).opened == 0 || !flow.noted_in(r) {
            return None;
        }
        ((*r).seen, (*r).backend_id, (*r).generation)
    };
    // A later SYN for this slot, through another CPU, may have been this flow's own.
    let later_syn = XLB_SYN_TIMES
        .get(flow.recent_slot())
        .is_some_and(|t| *t > seen);
    if now.wrapping_sub(seen) > syn_window || later_syn {
        return None;
    }
    let backend = XLB_BACKENDS.get(backend_id)?;
    if backend.flags & BACKEND_F_VALID == 0 || backend.generation != generation {
        return None;
    }
    Some((backend_id, backend))
}

/// The backend this connection went to, if it is still alive and still the same backend, and
/// the connection has not been idle past its timeout.
#[inline(always)]
fn remembered(key: &FlowKey, now: u64, idle: u64) -> Result<(u32, &'static Backend), FlowEvent> {
    let entry = XLB_FLOWS.get_ptr_mut(key).ok_or(FlowEvent::New)?;
    // SAFETY: a map value; a racing update on another CPU can only tear these words into
    // another valid flow's, which the generation check below then rejects or accepts as whole.
    let (backend_id, generation, last_seen) =
        unsafe { ((*entry).backend_id, (*entry).generation, (*entry).last_seen) };
    if now.wrapping_sub(last_seen) > idle {
        return Err(FlowEvent::Expired);
    }
    let backend = XLB_BACKENDS.get(backend_id).ok_or(FlowEvent::BackendGone)?;
    if backend.flags & BACKEND_F_VALID == 0 || backend.generation != generation {
        return Err(FlowEvent::BackendGone);
    }
    // Jiffies change every few milliseconds: most packets skip the store.
    if last_seen != now {
        unsafe { (*entry).last_seen = now };
        touch(key, now);
    }
    Ok((backend_id, backend))
}

/// A new connection's backend: while its service's persistence lasts, the one its client's last
/// connection went to (if that backend lives on), else Maglev's choice, remembered for the
/// client. A template is renewed by each new connection, not by the packets of long ones.
#[inline(always)]
fn place_new(
    flow: &Flow,
    vip: &VipValue,
    control: &Control,
    now: u64,
) -> Result<(u32, &'static Backend), Outcome> {
    if vip.persistence == 0 {
        return place(flow, vip, control);
    }
    let key = PersistenceKey {
        client: flow.client,
        vip_id: vip.id,
    };
    if let Some(entry) = XLB_PERSISTENCE.get_ptr_mut(&key) {
        // SAFETY: a map value; a torn read is caught by the generation check, as for flows.
        let (id, generation, seen) =
            unsafe { ((*entry).backend_id, (*entry).generation, (*entry).last_seen) };
        if now.wrapping_sub(seen) <= u64::from(vip.persistence)
            && let Some(backend) = XLB_BACKENDS.get(id)
            && backend.flags & BACKEND_F_VALID != 0
            && backend.generation == generation
        {
            unsafe { (*entry).last_seen = now };
            return Ok((id, backend));
        }
    }
    let (id, backend) = place(flow, vip, control)?;
    let template = FlowValue {
        backend_id: id,
        generation: backend.generation,
        last_seen: now,
    };
    if XLB_PERSISTENCE.insert(&key, &template, 0).is_err() {
        flow_event(FlowEvent::InsertFailed);
    }
    Ok((id, backend))
}

/// A new connection: weighted Maglev over the service's table, then the service's own backend
/// for the member the table names.
#[inline(always)]
fn place(
    flow: &Flow,
    vip: &VipValue,
    control: &Control,
) -> Result<(u32, &'static Backend), Outcome> {
    let hash = flow.hash(control.hash_seed, vip.flags & VIP_F_SOURCE_HASH != 0);
    let entry = vip.ring + hash::slot_in(hash, control.maglev_size);
    let chunk = XLB_RINGS
        .get(entry / RING_CHUNK)
        .ok_or(Outcome::DropNoTable)?;
    let position = chunk[(entry % RING_CHUNK) as usize];
    if position == NO_MEMBER {
        return Err(Outcome::DropNoBackend);
    }
    let member = XLB_MEMBERS
        .get(vip.members + position as u32)
        .ok_or(Outcome::DropNoTable)?;
    let backend = XLB_BACKENDS
        .get(member.backend)
        .ok_or(Outcome::DropNoBackend)?;
    if backend.flags & BACKEND_F_VALID == 0 {
        return Err(Outcome::DropNoBackend);
    }
    Ok((member.backend, backend))
}

#[inline(always)]
fn flow_event(event: FlowEvent) {
    if let Some(count) = XLB_FLOW_EVENTS.get_ptr_mut(event as u32) {
        // SAFETY: a per-CPU slot; XDP does not preempt itself on one CPU.
        unsafe { *count += 1 };
    }
}

#[inline(always)]
fn count(stats: &PerCpuArray<Counters>, index: u32, bytes: u64) {
    if let Some(c) = stats.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot; XDP does not preempt itself on one CPU.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

//! `#[repr(C)]` keys and values of the maps the XDP program reads and writes.
//!
//! Addresses are kept as four 32-bit words holding the address bytes in network order (the way
//! the packet carries them); an IPv4 address is stored IPv4-mapped (`::ffff:a.b.c.d`) so one key
//! type covers both families.

/// Claims: index 0 is for VIPs no VRRP instance holds (claimed while xlb runs); index `n` is
/// the `n`-th VRRP instance's.
pub const MAX_CLAIMS: u32 = 256;
/// The claim of VIPs that no VRRP instance holds.
pub const CLAIM_STATIC: u32 = 0;

/// Virtual services (address, port, protocol) one director serves. Katran's default is 512;
/// edge configs with thousands exist. Also the most Maglev tables the data plane holds live
/// (one per service at most, when no two share one).
pub const MAX_SERVICES: u32 = 4096;
/// Slots of one half of the VIP table: an open-addressed hash table the program probes with
/// plain array reads (inlined by the verifier), where a BPF hash map costs a helper call. Four
/// times [`MAX_SERVICES`] keeps probe runs short.
pub const VIP_SLOTS: u32 = 4 * MAX_SERVICES;
/// A service sits at most this many slots past its home slot; the control plane places it so,
/// and `xlb check` refuses a config it cannot place.
pub const VIP_PROBES: u32 = 8;
/// Real-server entries over all services: one per (service, real server), each with its own
/// liveness and counters, as IPVS keeps them.
pub const MAX_BACKENDS: u32 = 65536;
/// Real servers of one virtual service: the members of one Maglev table.
pub const MAX_MEMBERS: u32 = 4096;
/// Entries of the member map: each service's live block (table position to backend id), and
/// the block a rewrite builds beside it.
pub const MEMBER_SLOTS: u32 = 2 * MAX_BACKENDS;
/// A Maglev table entry that names no member (every real server of the table is drained).
pub const NO_MEMBER: u16 = u16::MAX;
/// Tables beyond one per service: a rewrite builds into a spare and the table it replaces
/// becomes a spare once no packet can be reading it, so double buffering costs this many
/// tables, not twice the lot.
pub const SPARE_TABLES: u32 = 256;
/// Kernel memory for Maglev tables: [`MAX_SERVICES`] tables plus the spares at the default
/// size, 136 MiB. Larger tables mean fewer of them (see [`table_slots`]).
pub const RING_BUDGET_BYTES: u64 =
    (MAX_SERVICES + SPARE_TABLES) as u64 * DEFAULT_MAGLEV_TABLE_SIZE as u64 * 2;
/// The Maglev table sizes (M) a config may choose (`global_defs { xlb_maglev_table_size M }`):
/// the largest prime below each power of two from 2^8 to 2^17, the list Cilium's
/// `--bpf-lb-maglev-table-size` accepts.
///
/// Maglev balances to within about 1 % when M > 100 N for N real servers (Eisenbud et al.,
/// section 3.4), and a larger M moves fewer flows when real servers come and go. An entry takes
/// two bytes; the ring map holds [`table_slots`] tables, so larger tables mean fewer services:
///
/// | M       | N for M > 100 N | one table | table slots | services |
/// |---------|-----------------|-----------|-------------|----------|
/// | 251     | 2               | 502 B     | 4352        | 4096     |
/// | 509     | 5               | 1018 B    | 4352        | 4096     |
/// | 1021    | 10              | 2.0 KiB   | 4352        | 4096     |
/// | 2039    | 20              | 4.0 KiB   | 4352        | 4096     |
/// | 4093    | 40              | 8.0 KiB   | 4352        | 4096     |
/// | 8191    | 81              | 16 KiB    | 4352        | 4096     |
/// | 16381   | 163             | 32 KiB    | 4352        | 4096     |
/// | 32749   | 327             | 64 KiB    | 2176        | 1920     |
/// | 65521   | 655             | 128 KiB   | 1088        | 832      |
/// | 131071  | 1310            | 256 KiB   | 543         | 287      |
///
/// Changing M moves almost every flow to another backend (only flows the flow table remembers
/// stay), so M is a deployment choice made once, the same on every director.
pub const MAGLEV_TABLE_SIZES: [u32; 10] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
];
/// The table size unless configured otherwise, as in Cilium: the smallest listed size with
/// M > 100 N for a service of 100 real servers (it balances up to 163 to within 1 %), 32 KiB
/// per table, with room for [`MAX_SERVICES`] tables and the spares in [`RING_BUDGET_BYTES`].
pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = 16381;
/// The largest table [`crate::maglev::build`] fills (and [`MAGLEV_TABLE_SIZES`]'s largest).
pub const MAX_MAGLEV_TABLE_SIZE: u32 = 131071;

/// The smallest supported table size that balances `real_servers` to within 1 % (M > 100 N),
/// or the largest size when none does: for `xlb check`'s note on a service balanced less
/// evenly (not wrongly) at the configured size.
pub const fn table_size_for(real_servers: usize) -> u32 {
    let mut i = 0;
    while i < MAGLEV_TABLE_SIZES.len() {
        if MAGLEV_TABLE_SIZES[i] as usize > real_servers.saturating_mul(100) {
            return MAGLEV_TABLE_SIZES[i];
        }
        i += 1;
    }
    MAX_MAGLEV_TABLE_SIZE
}

/// Table slots of the ring map for tables of `maglev_size` entries: one per service and the
/// spares, within [`RING_BUDGET_BYTES`].
pub const fn table_slots(maglev_size: u32) -> u32 {
    let fit = RING_BUDGET_BYTES / (maglev_size as u64 * 2);
    let most = (MAX_SERVICES + SPARE_TABLES) as u64;
    (if fit < most { fit } else { most }) as u32
}

/// Services one director serves with tables of `maglev_size` entries: [`MAX_SERVICES`], or
/// fewer when large tables leave fewer slots (each service may need a table of its own).
pub const fn max_services(maglev_size: u32) -> u32 {
    table_slots(maglev_size) - SPARE_TABLES
}

/// Interfaces backends may sit behind (the devmap for redirects).
pub const MAX_TX_PORTS: u32 = 64;
/// A backend id that names nothing.
pub const NO_BACKEND: u32 = u32::MAX;
/// Connections the flow table remembers unless `xlb run --flow-table-size` says otherwise:
/// about 180 MiB of kernel memory, enough for two million concurrent flows.
pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 1 << 21;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Map names, as the XDP program declares them and the pin directory shows them.
pub mod names {
    pub const PROGRAM: &str = "xlb";
    pub const VIPS: &str = "XLB_VIPS";
    pub const VIP_ADDRS: &str = "XLB_VIP_ADDRS";
    pub const VIP_FILTER: &str = "XLB_VIP_FILTER";
    pub const RINGS: &str = "XLB_RINGS";
    pub const MEMBERS: &str = "XLB_MEMBERS";
    pub const BACKENDS: &str = "XLB_BACKENDS";
    pub const TX_PORTS: &str = "XLB_TX_PORTS";
    pub const CONTROL: &str = "XLB_CONTROL";
    pub const CLAIMS: &str = "XLB_CLAIMS";
    pub const VIP_STATS: &str = "XLB_VIP_STATS";
    pub const BACKEND_STATS: &str = "XLB_BACKEND_STATS";
    pub const OUTCOMES: &str = "XLB_OUTCOMES";
    pub const FLOWS: &str = "XLB_FLOWS";
    pub const RECENT_FLOWS: &str = "XLB_RECENT_FLOWS";
    pub const FLOW_TOUCHES: &str = "XLB_FLOW_TOUCHES";
    pub const FLOW_EVENTS: &str = "XLB_FLOW_EVENTS";
    pub const NAT_SOURCES: &str = "XLB_NAT_SOURCES";
    pub const NAT_FILTER: &str = "XLB_NAT_FILTER";
    pub const PERSISTENCE: &str = "XLB_PERSISTENCE";
    pub const RECENT_REPLIES: &str = "XLB_RECENT_REPLIES";
    pub const RECENT_NAT_SOURCES: &str = "XLB_RECENT_NAT_SOURCES";
    /// Reports the data plane's clock when run with BPF_PROG_TEST_RUN.
    pub const CLOCK_PROGRAM: &str = "xlb_clock";
}

/// An address as the packet carries it: four words of network-order bytes.
pub type Addr = [u32; 4];

/// The third word of an IPv4-mapped IPv6 address (`::ffff:0:0/96`), as stored in memory.
pub const V4_MAPPED_WORD: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// An IPv4 address (network-order word) as an [`Addr`].
#[inline(always)]
pub const fn v4_mapped(addr: u32) -> Addr {
    [0, 0, V4_MAPPED_WORD, addr]
}

/// Whether an [`Addr`] holds an IPv4 address.
#[inline(always)]
pub const fn is_v4_mapped(addr: &Addr) -> bool {
    addr[0] == 0 && addr[1] == 0 && addr[2] == V4_MAPPED_WORD
}

/// Key of the VIP map: what the client connects to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipKey {
    pub addr: Addr,
    /// Network byte order, as in the packet.
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

impl VipKey {
    /// Where probing for this service starts in a half of the VIP table. Every field goes
    /// through a multiply before the next is mixed in: folded with xor alone, port and address
    /// bits of sequential VIPs cancel and pile services onto a few slots.
    #[inline(always)]
    pub const fn home_slot(&self) -> u32 {
        let mut h = self.addr[0] ^ self.addr[1].rotate_left(11) ^ self.addr[2].rotate_left(22);
        h = (h ^ self.addr[3]).wrapping_mul(0x85eb_ca6b);
        h = (h ^ ((self.port as u32) << 8) ^ self.proto as u32).wrapping_mul(0xc2b2_ae35);
        h ^= h >> 16;
        // Fibonacci hashing: the top bits of a multiply by 2^32 / golden ratio.
        h.wrapping_mul(0x9e37_79b9) >> (32 - VIP_SLOTS.trailing_zeros())
    }
}

/// Words of the VIP address filter: one bit per hash of an address (65,536 bits), set for
/// every address that has virtual services. A packet to an address whose bit is clear is none
/// of the data plane's business, decided before its ports are even read.
pub const VIP_FILTER_WORDS: u32 = 1024;

/// The bit of the VIP address filter `addr` sets (0..65,536).
#[inline(always)]
pub const fn vip_filter_bit(addr: &Addr) -> u32 {
    (addr[0] ^ addr[1] ^ addr[2] ^ addr[3]).wrapping_mul(0x9e37_79b9) >> 16
}

/// One slot of the VIP table; `key.proto == 0` marks it empty.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipSlot {
    pub key: VipKey,
    pub value: VipValue,
}

/// Hash on the client address only (IPVS `sh`, or `persistence_timeout`), not the 5-tuple.
pub const VIP_F_SOURCE_HASH: u32 = 1 << 0;
/// NAT (IPVS "Masq"): the destination becomes the real server's address and port, and its
/// replies come back through the director, which puts the VIP back as their source. Without
/// it, Direct Routing: only the Ethernet addresses change and replies go straight to clients.
pub const VIP_F_NAT: u32 = 1 << 1;

/// How a service's packets reach its real servers, as the program reads it from
/// [`VipValue::flags`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarding {
    DirectRouting,
    Nat,
}

impl Forwarding {
    #[inline(always)]
    pub const fn of(flags: u32) -> Self {
        if flags & VIP_F_NAT != 0 {
            Forwarding::Nat
        } else {
            Forwarding::DirectRouting
        }
    }

    pub const fn flags(self) -> u32 {
        match self {
            Forwarding::DirectRouting => 0,
            Forwarding::Nat => VIP_F_NAT,
        }
    }
}

/// Real servers' (address, port, protocol) whose replies a NAT director translates: one per
/// NAT real server of every service, as backends are, and one per real server address (its
/// fragments, [`NatSource::address_of`]).
pub const MAX_NAT_SOURCES: u32 = 2 * MAX_BACKENDS;
/// Words of the NAT source filter: as the VIP address filter ([`vip_filter_bit`]), one bit per
/// hash of a NAT real server's address, so that a packet from anyone else is passed after one
/// array read.
pub const NAT_FILTER_WORDS: u32 = VIP_FILTER_WORDS;

/// Key of the NAT source map: a real server as its replies show it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NatSource {
    pub addr: Addr,
    /// Network byte order, as in the packet.
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

impl NatSource {
    /// This source's slot in a CPU's recent NAT sources ([`RECENT_NAT_SOURCE_SLOTS`]).
    #[inline(always)]
    pub const fn recent_slot(&self) -> u32 {
        let h = self.addr[0] ^ self.addr[1] ^ self.addr[2].rotate_left(7) ^ self.addr[3];
        let h = (h ^ (self.port as u32) << 16 ^ self.proto as u32).wrapping_mul(0x9e37_79b9);
        h >> (32 - RECENT_NAT_SOURCE_SLOTS.trailing_zeros())
    }

    /// The entry that marks `addr` as a NAT real server's address, whatever its ports: its
    /// fragments are dropped (without ports they cannot be translated, nor told from its own
    /// traffic).
    pub const fn address_of(addr: &Addr) -> Self {
        Self {
            addr: *addr,
            port: 0,
            proto: 0,
            _pad: 0,
        }
    }
}

/// What a real server's replies are translated back to: the virtual service they answer for.
/// A real server (address, port, protocol) of exactly one NAT service needs nothing else, so a
/// director translates replies of connections it never saw (after a takeover) as well as its
/// own.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatReply {
    /// The service: its address and port become the reply's source.
    pub vip: VipKey,
    /// The backend entry of this real server in that service: its replies are counted there.
    pub backend_id: u32,
    /// The service's claim: only the director that serves the VIP translates.
    pub claim: u32,
    pub _pad: u32,
}

/// Entries of each CPU's recent NAT sources (direct-mapped, by real server and port).
pub const RECENT_NAT_SOURCE_SLOTS: u32 = 256;

/// One entry of a CPU's recent NAT sources: a NAT source map entry this CPU looked up, copied
/// with the map's generation ([`Control::nat_generation`]) of the time. While the generation
/// holds, replies from that real server cost an inlined array read instead of the map's hash
/// lookup, which costs about as much as the rest of a reply's translation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecentNatSource {
    pub source: NatSource,
    pub reply: NatReply,
    /// 0 for an empty entry: the generation is never 0.
    pub generation: u32,
    pub _pad: [u32; 2],
}

/// The NAT generation after `generation`: never 0, which marks empty entries.
pub const fn next_nat_generation(generation: u32) -> u32 {
    if generation == u32::MAX {
        1
    } else {
        generation + 1
    }
}

/// What the data plane knows of a virtual service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipValue {
    /// The service's id: its counters, and its part of every flow key.
    pub id: u32,
    pub flags: u32,
    /// Where the service's Maglev table starts in the ring map (table slot x table size).
    /// Services with the same real servers and weights share a table.
    pub ring: u32,
    /// Where the service's member block starts in the member map: a table entry `p` names the
    /// backend `members[p]`, this service's own entry for that real server.
    pub members: u32,
    /// Index of the [`Claim`] that says whether this director serves the VIP now.
    pub claim: u32,
    /// keepalived's `persistence_timeout` in jiffies, 0 for none: a client's new connections
    /// go to the real server of its last one for this long ([`PersistenceKey`]).
    pub persistence: u32,
    /// A [`VipSlot`] is a whole number of 8-byte words: the kernel stores array values 8-byte
    /// aligned, and the control plane maps the VIP table as an array of slots.
    pub _pad: u32,
}

/// Maglev table entries per value of the ring map. Array map values take a multiple of 8
/// bytes, so 16-bit entries go four to a value rather than each padded to eight.
pub const RING_CHUNK: u32 = 4;
/// Four consecutive Maglev table entries: each the position of a member in its table (a
/// service's member block says which backend that is), or [`NO_MEMBER`].
pub type RingChunk = [u16; RING_CHUNK as usize];

/// Ring map values for tables of `maglev_size` entries: [`table_slots`] tables, rounded up to
/// whole values.
pub const fn ring_chunks(maglev_size: u32) -> u32 {
    (table_slots(maglev_size) * maglev_size).div_ceil(RING_CHUNK)
}

/// One entry of the member map: the backend a table position names for one service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberSlot {
    pub backend: u32,
    /// Array map values take a multiple of 8 bytes; this says so.
    pub _pad: u32,
}

/// Value of the backend map, indexed by backend id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Backend {
    /// The backend's MAC: the new Ethernet destination.
    pub mac: [u8; 6],
    /// The director's MAC on the interface the frame leaves by: the new Ethernet source.
    pub src_mac: [u8; 6],
    /// Interface to the backend; 0 or the receiving interface means XDP_TX, another one a
    /// redirect through the devmap.
    pub ifindex: u32,
    pub flags: u32,
    /// Changes whenever the id is given to another backend, so that a flow remembered for the
    /// id's previous owner is not sent to the new one.
    pub generation: u32,
    // Which real server of which VIP the id stands for, so that a restarted control plane can
    // adopt ids and generations as they are; NAT rewrites the destination to `real_server` and
    // `real_server_port`, DR never reads past this point.
    pub vip: VipKey,
    pub real_server: Addr,
    /// Host byte order.
    pub real_server_port: u16,
    pub _pad: u16,
}

/// The backend is alive: table entries and remembered flows may use it. An id without it is a
/// hole or a backend that is down (table lookups drop, counted as `NoBackend`; remembered
/// flows are placed again).
pub const BACKEND_F_VALID: u32 = 1 << 0;

/// The single entry of the control map, written by the reconciler. Times are in the kernel's
/// jiffies (`bpf_jiffies64`), the one clock an XDP program reads for free.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Control {
    /// Seed of the flow hash; directors that share VIPs must use the same one.
    pub hash_seed: u32,
    /// Which half of the VIP table is live: the low bit ([`Self::live_vip_half`]). The
    /// control plane rewrites the other half whole and then adds one, so the word also counts
    /// flips: what a CPU noted from one VIP table is not used under the next.
    pub vip_flips: u32,
    /// Entries of every Maglev table (M, one of [`MAGLEV_TABLE_SIZES`]).
    pub maglev_size: u32,
    /// Changes (never to 0) whenever the NAT source map does, after the change: each CPU's
    /// copies of its entries ([`RecentNatSource`]) from before are not used again.
    pub nat_generation: u32,
    /// How long after its SYN a connection's first packet without SYN still follows it
    /// (jiffies): SYN retransmissions span about this long.
    pub syn_window: u64,
    /// A remembered TCP flow idle this long (jiffies) is placed again, like an expired IPVS
    /// connection entry.
    pub tcp_idle: u64,
    pub udp_idle: u64,
}

impl Control {
    /// The live half of the VIP table (0 or 1).
    #[inline(always)]
    pub const fn live_vip_half(&self) -> u32 {
        self.vip_flips & 1
    }
}

/// Whether this director serves a group of VIPs now: written by the VRRP instance that holds
/// them (its own map entry, so it never races the reconciler), or by the control plane for VIPs
/// no instance holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Claim {
    /// Non-zero while MASTER: only then is VIP traffic forwarded.
    pub active: u32,
    pub _pad: u32,
    /// Jiffies after which this director stops answering for the VIP addresses unless the
    /// claim is renewed (the control plane died): ARP requests and neighbour solicitations for
    /// them are dropped, never passed to a stack that would answer. Master_Down_Interval: when
    /// a backup may take over. 0: no lease.
    pub until: u64,
    /// Jiffies after which VIP traffic is dropped too: the latest moment any backup can have
    /// taken over. Clients that still send here until they hear the new master's gratuitous
    /// ARP are served meanwhile (both directors build the same tables). 0: no lease.
    pub forward_until: u64,
}

impl Claim {
    /// Active, but its lease for answering ARP and neighbour solicitations ran out.
    #[inline(always)]
    pub const fn lapsed(&self, now: u64) -> bool {
        self.active != 0 && self.until != 0 && now > self.until
    }

    /// Active, but its lease for forwarding ran out.
    #[inline(always)]
    pub const fn forwarding_lapsed(&self, now: u64) -> bool {
        self.active != 0 && self.forward_until != 0 && now > self.forward_until
    }
}

/// Value of the VIP address map: the claim of the address (low 16 bits) and flags.
pub type VipAddrValue = u32;
/// The address has virtual servers (fragments to it are dropped, as they carry no ports).
pub const VIP_ADDR_F_SERVICES: u32 = 1 << 16;
pub const VIP_ADDR_CLAIM_MASK: u32 = 0xffff;

/// Key of the flow table: one client connection to one VIP (the VIP's id stands for its
/// address, port and protocol).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub client: Addr,
    /// Network byte order.
    pub client_port: u16,
    pub vip_id: u16,
}

impl FlowKey {
    /// This flow's slot in the flow-touch array ([`FLOW_TOUCH_SLOTS`]): another multiplier
    /// than [`RecentFlow::slot`]'s, so that flows sharing one slot need not share the other.
    #[inline(always)]
    pub const fn touch_slot(&self) -> u32 {
        let h = self.client[0] ^ self.client[1].rotate_left(11) ^ self.client[2] ^ self.client[3];
        let h =
            (h ^ (self.client_port as u32) << 16 ^ self.vip_id as u32).wrapping_mul(0x85eb_ca6b);
        h >> (32 - FLOW_TOUCH_SLOTS.trailing_zeros())
    }
}

/// Slots of the flow-touch array: when (jiffies, low 32 bits, never 0) a flow of each slot was
/// last written or refreshed in the flow table. A SYN looks the flow table up for an entry a
/// closed connection left for its ports only when its slot was touched within the idle
/// timeout (an older entry has expired anyway): a flood of SYNs from new sources, whose slots
/// mostly lie untouched, costs no flow table lookup. With more live flows than slots, most
/// slots are touched and SYNs look up as they would without it. Two slots to a map value
/// ([`FlowTouchPair`]): an array map pads each value to 8 bytes, so 4 MiB in all.
pub const FLOW_TOUCH_SLOTS: u32 = 1 << 20;

/// Two flow-touch slots: slot `s` is word `s % 2` of value `s / 2`.
pub type FlowTouchPair = [u32; 2];

/// A flow-touch array entry for `now` (jiffies): its low 32 bits, with 0 kept for "never".
#[inline(always)]
pub const fn flow_touch(now: u64) -> u32 {
    now as u32 | 1
}

/// Whether a flow of a slot touched at `touch` (a [`flow_touch`]) may still be live at `now`
/// (jiffies) with an idle timeout of `idle`. Errs on "may": the low 32 bits wrap (after 49
/// days at 1000 Hz), which at worst costs a lookup, and a touch a jiffy ahead of `now` (another
/// CPU's, made since `now` was read) counts as live.
#[inline(always)]
pub const fn touched_within(touch: u32, now: u64, idle: u64) -> bool {
    if touch == 0 {
        return false;
    }
    let since = flow_touch(now).wrapping_sub(touch) as i32;
    idle >= 1 << 30 || since <= 0 || since as u64 <= idle + 1
}

/// One entry of a CPU's recent replies: how NAT replies from `source` (a real server) to `dst`
/// (a client) arriving on `ingress` were translated and routed during the jiffy `seen`, under
/// the NAT generation `generation`, and the largest packet (IP length) the route allowed.
/// Within that jiffy, the next replies between the two no larger take one inlined array read
/// for both the translation and the route: no NAT source lookup and no `bpf_fib_lookup` (which
/// costs several times the rest of a reply's work); a route or neighbour change is seen within
/// a jiffy, a NAT source change at once.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RecentReply {
    pub dst: Addr,
    pub source: NatSource,
    pub ingress: u32,
    /// Jiffies.
    pub seen: u64,
    /// 0 for an empty entry: the generation is never 0.
    pub generation: u32,
    /// Where the route sends it: out of `ifindex`, to `dmac`, from `smac`.
    pub ifindex: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    /// The largest IP length the route lookup allowed (its MTU check).
    pub max_len: u16,
    pub _pad: u16,
    pub reply: NatReply,
}

impl RecentReply {
    /// The slot of replies from `source` to `dst` in a CPU's recent replies.
    #[inline(always)]
    pub const fn slot(source: &Addr, port: u16, dst: &Addr) -> u32 {
        let h = dst[0] ^ dst[1] ^ dst[2].rotate_left(7) ^ dst[3];
        let h = h ^ (source[0] ^ source[1] ^ source[3]).rotate_left(13) ^ source[2];
        let h = (h ^ (port as u32) << 16).wrapping_mul(0x9e37_79b9);
        h >> (32 - RECENT_REPLY_SLOTS.trailing_zeros())
    }
}

/// Entries of each CPU's recent replies (direct-mapped, by client and real server).
pub const RECENT_REPLY_SLOTS: u32 = 1024;

/// Entries of each CPU's recent-flow cache: a direct-mapped cache of the flow table.
pub const RECENT_FLOW_SLOTS: u32 = 4096;

/// One entry of a CPU's recent-flow cache: a flow this CPU found in the flow table (or placed)
/// during the jiffy `seen`, by the packet's own addresses, ports and protocol. Within that
/// jiffy, and while the VIP table is the one it was (`vip_flips`), its packets skip the VIP
/// table's and the flow table's lookups: the entry keeps what they gave (the service's id,
/// claim and flags, and the backend). The first packet of a later jiffy looks the flow table up
/// again, which keeps the table's idle times and LRU order true to a jiffy.
///
/// Or, with `opened` set, a connection whose SYN this CPU placed at `seen` and that the flow
/// table does not know yet: its first packet without SYN (within `Control::syn_window`) goes
/// where the SYN went and is remembered there, replacing whatever entry a closed connection
/// left for the same ports. A SYN costs no flow table operation at all.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecentFlow {
    pub client: Addr,
    pub vip: Addr,
    /// Network byte order, as in the packet.
    pub client_port: u16,
    pub vip_port: u16,
    pub proto: u8,
    /// Non-zero: placed by a SYN, not remembered yet.
    pub opened: u8,
    /// The service's id, claim and flags ([`VipValue`]) when noted.
    pub vip_id: u16,
    pub backend_id: u32,
    pub generation: u32,
    pub claim: u16,
    pub vip_flags: u16,
    /// [`Control::vip_flips`] when noted: a later VIP table may hold other values.
    pub vip_flips: u32,
    /// Jiffies.
    pub seen: u64,
}

impl RecentFlow {
    /// The slot in a CPU's recent-flow cache of the flow from `client`:`client_port` to
    /// `vip`:`vip_port`: a multiply-shift of every field, cheap next to the flow table's jhash.
    #[inline(always)]
    pub const fn slot(client: &Addr, client_port: u16, vip: &Addr, vip_port: u16) -> u32 {
        let h = client[0] ^ client[1] ^ client[2].rotate_left(7) ^ client[3];
        let h = h ^ vip[1].rotate_left(13) ^ vip[2] ^ vip[3].rotate_left(3);
        let h = (h ^ (client_port as u32) << 16 ^ vip_port as u32).wrapping_mul(0x9e37_79b9);
        h >> (32 - RECENT_FLOW_SLOTS.trailing_zeros())
    }
}

/// Key of the persistence table (IPVS's persistence templates): one client of one persistent
/// service, whatever its ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PersistenceKey {
    pub client: Addr,
    pub vip_id: u32,
}

/// Persistent clients remembered at once. Past this, the least recently seen are forgotten:
/// their next connection is placed by hashing on the client address (which persistence
/// implies), so it stays with its real server unless the service's real servers changed.
pub const PERSISTENCE_ENTRIES: u32 = 1 << 16;

/// Value of the flow table: where the connection went, and when it was last seen.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowValue {
    pub backend_id: u32,
    /// The backend's generation when the flow was placed.
    pub generation: u32,
    /// Jiffies.
    pub last_seen: u64,
}

/// Why a packet's flow was (re)placed by Maglev rather than taken from the flow table: one
/// per-CPU counter each. A hit is not counted: it is every forwarded packet not counted here.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowEvent {
    /// No entry: a new flow, or one the LRU evicted (or that predates this director's claim).
    New = 0,
    /// The entry was idle longer than the protocol's timeout.
    Expired = 1,
    /// The entry's backend is down, removed, or its id belongs to another backend now.
    BackendGone = 2,
    /// The flow table refused the entry; the packet was still forwarded.
    InsertFailed = 3,
    /// A TCP SYN: placed by Maglev and forwarded, but not remembered in the flow table: the
    /// connection is remembered at its first packet without SYN, where the SYN went (see
    /// [`RecentFlow`]); a SYN flood from spoofed sources therefore cannot push established
    /// connections out of the table.
    Syn = 4,
}

impl FlowEvent {
    pub const COUNT: u32 = 5;
    pub const ALL: [FlowEvent; Self::COUNT as usize] = [
        FlowEvent::New,
        FlowEvent::Expired,
        FlowEvent::BackendGone,
        FlowEvent::InsertFailed,
        FlowEvent::Syn,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            FlowEvent::New => "flow_new",
            FlowEvent::Expired => "flow_expired",
            FlowEvent::BackendGone => "flow_backend_gone",
            FlowEvent::InsertFailed => "flow_insert_failed",
            FlowEvent::Syn => "flow_syn",
        }
    }
}

/// Packets, bytes and connections placed, per CPU, per VIP and per backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    /// Connections placed by Maglev (IPVS's Conns): a SYN, or the first packet of a flow the
    /// flow table did not know.
    pub conns: u64,
    /// Replies translated back to the client (NAT; a DR director never sees them).
    pub out_packets: u64,
    pub out_bytes: u64,
}

impl Counters {
    /// Both counts added up (per-CPU values summed, a retiring backend's folded into its VIP's).
    pub const fn plus(&self, other: &Counters) -> Counters {
        Counters {
            packets: self.packets + other.packets,
            bytes: self.bytes + other.bytes,
            conns: self.conns + other.conns,
            out_packets: self.out_packets + other.out_packets,
            out_bytes: self.out_bytes + other.out_bytes,
        }
    }
}

/// What the program did with a packet and why: one per-CPU counter each.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not IPv4 or IPv6.
    PassNotIp = 0,
    /// IP, but no configured VIP (address, port, protocol).
    PassNotVip = 1,
    /// A VIP packet while this director is not MASTER.
    PassInactive = 2,
    /// Truncated or inconsistent headers (or an ICMP error that does not fit in its IP packet):
    /// left to the kernel, which drops them.
    PassMalformed = 3,
    /// Forwarded back out of the receiving interface.
    Tx = 4,
    /// Forwarded through the devmap to another interface.
    Redirect = 5,
    /// An IPv4 fragment or IPv6 fragment header to a VIP address, or from a NAT real server.
    DropFragment = 6,
    /// The VIP has no live backend.
    DropNoBackend = 7,
    /// The devmap has no entry for the backend's interface.
    DropRedirect = 8,
    /// An IPv6 packet to a VIP address with extension headers the program does not walk.
    DropIpv6Ext = 9,
    /// The control entry or a table is missing (the control plane has not filled the maps).
    DropNoTable = 10,
    /// The VIP's claim lapsed: the control plane stopped renewing it, so another director may
    /// own the VIP now. Neither forwarded nor passed to a stack that would answer (this covers
    /// ARP requests and neighbour solicitations for the VIP addresses too).
    DropLeaseExpired = 11,
    /// An ICMP error (destination unreachable, time exceeded; ICMPv6 packet too big too)
    /// quoting a packet but not addressed to that packet's source (to the director itself
    /// about a VIP flow, or forged): the kernel's, not a backend's.
    PassIcmpNotToVip = 12,
    /// A NAT reply translated, then handed to the kernel: no neighbour entry for where it goes
    /// yet (the kernel forwards it and resolves one), or the kernel's routes say otherwise.
    PassNatUnresolved = 13,
    /// A NAT packet whose TTL (hop limit) would reach 0 on the way through: a router's to
    /// drop.
    DropTtlExceeded = 14,
}

impl Outcome {
    pub const COUNT: u32 = 15;
    pub const ALL: [Outcome; Self::COUNT as usize] = [
        Outcome::PassNotIp,
        Outcome::PassNotVip,
        Outcome::PassInactive,
        Outcome::PassMalformed,
        Outcome::Tx,
        Outcome::Redirect,
        Outcome::DropFragment,
        Outcome::DropNoBackend,
        Outcome::DropRedirect,
        Outcome::DropIpv6Ext,
        Outcome::DropNoTable,
        Outcome::DropLeaseExpired,
        Outcome::PassIcmpNotToVip,
        Outcome::PassNatUnresolved,
        Outcome::DropTtlExceeded,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Outcome::PassNotIp => "pass_not_ip",
            Outcome::PassNotVip => "pass_not_vip",
            Outcome::PassInactive => "pass_inactive",
            Outcome::PassMalformed => "pass_malformed",
            Outcome::Tx => "tx",
            Outcome::Redirect => "redirect",
            Outcome::DropFragment => "drop_fragment",
            Outcome::DropNoBackend => "drop_no_backend",
            Outcome::DropRedirect => "drop_redirect",
            Outcome::DropIpv6Ext => "drop_ipv6_ext",
            Outcome::DropNoTable => "drop_no_table",
            Outcome::DropLeaseExpired => "drop_lease_expired",
            Outcome::PassIcmpNotToVip => "pass_icmp_not_to_vip",
            Outcome::PassNatUnresolved => "pass_nat_unresolved",
            Outcome::DropTtlExceeded => "drop_ttl_exceeded",
        }
    }
}

// The kernel program and userspace read these structs from the same bytes: their layouts are
// part of the map ABI (a pin left by another layout is replaced at load).
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<VipKey>() == 20);
    assert!(size_of::<VipValue>() == 28);
    assert!(offset_of!(VipValue, persistence) == 20);
    assert!(size_of::<VipSlot>() == 48);
    assert!(size_of::<VipSlot>().is_multiple_of(8));
    assert!(offset_of!(VipSlot, value) == 20);
    assert!(size_of::<Backend>() == 64);
    // The MAC rewrite copies the first 12 bytes of a backend entry over the frame's first 12.
    assert!(offset_of!(Backend, mac) == 0);
    assert!(offset_of!(Backend, src_mac) == 6);
    assert!(offset_of!(Backend, ifindex) == 12);
    assert!(size_of::<Control>() == 40);
    assert!(offset_of!(Control, tcp_idle) == 24);
    assert!(size_of::<Claim>() == 24);
    assert!(size_of::<FlowKey>() == 20);
    assert!(size_of::<FlowValue>() == 16);
    assert!(size_of::<PersistenceKey>() == 20);
    assert!(size_of::<RecentFlow>() == 64);
    assert!(offset_of!(RecentFlow, seen) == 56);
    // A recent flow keeps a service's claim and flags in 16 bits each.
    assert!(MAX_CLAIMS <= 1 << 16);
    assert!((VIP_F_SOURCE_HASH | VIP_F_NAT) >> 16 == 0);
    assert!(RECENT_FLOW_SLOTS.is_power_of_two());
    assert!(FLOW_TOUCH_SLOTS.is_power_of_two());
    assert!(RECENT_REPLY_SLOTS.is_power_of_two());
    assert!(size_of::<RecentReply>() == 104);
    assert!(offset_of!(RecentReply, seen) == 40);
    assert!(offset_of!(RecentReply, reply) == 72);
    // The program copies `dmac` and `smac` as one 12-byte destination-then-source pair.
    assert!(offset_of!(RecentReply, smac) == offset_of!(RecentReply, dmac) + 6);
    assert!(offset_of!(RecentReply, dmac) % 2 == 0);
    assert!(size_of::<Counters>() == 40);
    assert!(size_of::<NatSource>() == 20);
    assert!(offset_of!(NatSource, port) == 16);
    assert!(size_of::<NatReply>() == 32);
    assert!(size_of::<RecentNatSource>() == 64);
    assert!(offset_of!(RecentNatSource, reply) == 20);
    assert!(RECENT_NAT_SOURCE_SLOTS.is_power_of_two());
    assert!(offset_of!(Control, nat_generation) == 12);
    assert!(offset_of!(NatReply, backend_id) == 20);
    assert!(size_of::<RingChunk>() == 8);
    assert!(size_of::<MemberSlot>() == 8);
    assert!(VIP_SLOTS.is_power_of_two());
    assert!(VIP_FILTER_WORDS * 64 == 1 << 16);
    assert!(max_services(MAX_MAGLEV_TABLE_SIZE) > 0);
    assert!(table_slots(DEFAULT_MAGLEV_TABLE_SIZE) == MAX_SERVICES + SPARE_TABLES);
    assert!(
        MAX_SERVICES <= u16::MAX as u32 + 1,
        "flow keys hold a service id in 16 bits"
    );
    assert!(
        MAX_MEMBERS < NO_MEMBER as u32,
        "table entries hold a position in 16 bits"
    );
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], Copy, and every bit pattern is a valid value;
    // explicit `_pad` fields leave no uninitialised padding.
    unsafe impl aya::Pod for super::VipKey {}
    unsafe impl aya::Pod for super::VipValue {}
    unsafe impl aya::Pod for super::VipSlot {}
    unsafe impl aya::Pod for super::MemberSlot {}
    unsafe impl aya::Pod for super::Backend {}
    unsafe impl aya::Pod for super::Control {}
    unsafe impl aya::Pod for super::Claim {}
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowValue {}
    unsafe impl aya::Pod for super::RecentFlow {}
    unsafe impl aya::Pod for super::RecentReply {}
    unsafe impl aya::Pod for super::RecentNatSource {}
    unsafe impl aya::Pod for super::NatSource {}
    unsafe impl aya::Pod for super::PersistenceKey {}
    unsafe impl aya::Pod for super::NatReply {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_slots_spread_and_stay_in_range() {
        // 1,024 sequential VIPs on four ports each: the edge config xlb is sized for.
        let mut used = [0u32; VIP_SLOTS as usize];
        for i in 0..1024u32 {
            for (port, proto) in [
                (80u16, PROTO_TCP),
                (443, PROTO_TCP),
                (8080, PROTO_TCP),
                (53, PROTO_UDP),
            ] {
                let key = VipKey {
                    addr: v4_mapped(u32::from_be_bytes([10, 1, (i >> 8) as u8, i as u8])),
                    port: port.to_be(),
                    proto,
                    _pad: 0,
                };
                used[key.home_slot() as usize] += 1;
            }
        }
        // As random: about 16384 x (1 - e^-0.25) = 3624 slots taken, none by many.
        let taken = used.iter().filter(|n| **n > 0).count();
        assert!(taken > 3450, "{taken} home slots for 4096 services");
        assert!(used.iter().all(|n| *n <= 5), "{:?}", used.iter().max());
    }

    #[test]
    fn outcome_table_is_complete() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{}", o.name());
        }
        for (i, e) in FlowEvent::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i, "{}", e.name());
        }
    }

    #[test]
    fn a_touch_is_live_for_its_idle_timeout_and_errs_on_live() {
        let idle = 900 * 250;
        for then in [1u64, 2, 0xffff_fff0, 0x1_0000_0000, (1 << 40) + 7] {
            let touch = flow_touch(then);
            assert_ne!(touch, 0, "a touch is never 'never'");
            for later in [0, 1, 2, idle - 1, idle] {
                assert!(
                    touched_within(touch, then + later, idle),
                    "{then} + {later}"
                );
            }
            // A touch made a jiffy after `now` was read, by another CPU.
            assert!(touched_within(flow_touch(then + 1), then, idle));
            assert!(!touched_within(touch, then + idle + 3, idle), "{then}");
            assert!(!touched_within(0, then, idle));
            // Idle timeouts too long for 32 bits of jiffies: every touch may be live.
            assert!(touched_within(touch, then + (1 << 35), 1 << 40));
        }
    }

    #[test]
    fn touch_slots_spread_and_differ_from_recent_slots() {
        let mut used = [false; FLOW_TOUCH_SLOTS as usize];
        let mut distinct = 0;
        let mut same = 0;
        for port in 0..4096u16 {
            let key = FlowKey {
                client: v4_mapped(u32::from_be_bytes([192, 0, 2, 7])),
                client_port: port.to_be(),
                vip_id: 3,
            };
            assert!(key.touch_slot() < FLOW_TOUCH_SLOTS);
            let slot = &mut used[key.touch_slot() as usize];
            distinct += usize::from(!*slot);
            *slot = true;
            let recent = RecentFlow::slot(
                &key.client,
                key.client_port,
                &v4_mapped(u32::from_be_bytes([10, 0, 0, 100])),
                80u16.to_be(),
            );
            same += usize::from(key.touch_slot() % RECENT_FLOW_SLOTS == recent);
        }
        assert!(distinct > 4000, "{distinct}");
        assert!(same < 16, "{same}");
    }

    /// Replies from a few real servers to many clients (IPv4 and IPv6, the clients in one
    /// network) spread over a CPU's recent replies about as randomly placed entries would.
    #[test]
    fn recent_reply_slots_spread() {
        let servers = [
            (
                v4_mapped(u32::from_be_bytes([10, 0, 2, 1])),
                8080u16.to_be(),
            ),
            (
                v4_mapped(u32::from_be_bytes([10, 0, 2, 2])),
                8080u16.to_be(),
            ),
            (v4_mapped(u32::from_be_bytes([10, 0, 2, 2])), 443u16.to_be()),
            ([0x2001_0db8, 0, 0, 0x21], 80u16.to_be()),
        ];
        for (i, (server, port)) in servers.iter().enumerate() {
            let mut used = [false; RECENT_REPLY_SLOTS as usize];
            let mut distinct = 0;
            for c in 0..RECENT_REPLY_SLOTS {
                let client = if i == 3 {
                    [0x2001_0db8, 0xff, 0, c]
                } else {
                    v4_mapped(u32::from_be_bytes([198, 51, (c >> 8) as u8, c as u8]))
                };
                let slot = RecentReply::slot(server, *port, &client);
                assert!(slot < RECENT_REPLY_SLOTS);
                distinct += usize::from(!used[slot as usize]);
                used[slot as usize] = true;
            }
            // Random placement fills 1 - 1/e of the slots: about 647 of 1,024.
            assert!(distinct > 560, "server {i}: {distinct} distinct slots");
        }
    }
}

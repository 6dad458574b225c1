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

/// Entries in one Maglev table. A prime, as Maglev requires for its permutations to cover it.
///
/// The size the XDP program's table map is declared with today; [`MAGLEV_TABLE_SIZES`] lists the
/// sizes a configuration may choose from.
pub const MAGLEV_TABLE_SIZE: usize = 65537;

/// The Maglev table sizes (M) a configuration may choose: the largest prime below each power of
/// two from 2^8 to 2^17, the list Cilium's `--bpf-lb-maglev-table-size` accepts.
///
/// Maglev balances to within about 1 % when M > 100 N for N backends (Eisenbud et al., section
/// 3.4), and a larger M moves fewer flows when backends come and go. Each entry is a `u32`, so a
/// table takes 4 M bytes, and a director holds two per VIP (the live one and the one being
/// rewritten):
///
/// | M       | N for M > 100 N | one table | 4,096 tables |
/// |---------|-----------------|-----------|--------------|
/// | 251     | 2               | 1004 B    | 3.9 MiB      |
/// | 509     | 5               | 2.0 KiB   | 8.0 MiB      |
/// | 1021    | 10              | 4.0 KiB   | 16 MiB       |
/// | 2039    | 20              | 8.0 KiB   | 32 MiB       |
/// | 4093    | 40              | 16 KiB    | 64 MiB       |
/// | 8191    | 81              | 32 KiB    | 128 MiB      |
/// | 16381   | 163             | 64 KiB    | 256 MiB      |
/// | 32749   | 327             | 128 KiB   | 512 MiB      |
/// | 65521   | 655             | 256 KiB   | 1.0 GiB      |
/// | 131071  | 1310            | 512 KiB   | 2.0 GiB      |
///
/// Changing M moves almost every flow to another backend (only flows the flow table remembers
/// stay), so M is a deployment choice made once, the same on every director, not something to
/// adjust as backends come and go.
pub const MAGLEV_TABLE_SIZES: [u32; 10] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
];
/// The Maglev table size unless configured otherwise, as in Cilium: the smallest listed size with
/// M > 100 N for a service of 100 real servers (it balances up to 163 to within 1 %), at 64 KiB
/// per table, a quarter of today's [`MAGLEV_TABLE_SIZE`].
///
/// The table map is preallocated, 4 M bytes per table: the 128 tables of [`MAX_VIPS`] VIPs take
/// 8 MiB (32 MiB at 65537), 1,024 tables 64 MiB, and 4,096 tables 256 MiB, the whole of a
/// 256 MiB budget. A director with thousands of tables should share one table among services
/// with the same real servers and weights, or choose 8191 (128 MiB for 4,096 tables, balanced to
/// 1 % up to 81 real servers).
pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = 16381;
/// The largest table [`crate::maglev::build`] fills (and [`MAGLEV_TABLE_SIZES`]'s largest).
pub const MAX_MAGLEV_TABLE_SIZE: u32 = 131071;

/// The smallest supported table size that balances `real_servers` backends to within 1 %
/// (M > 100 N), or the largest size when none does. A hint for validating a configuration: a
/// service above it is balanced less evenly, not wrongly.
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
/// VIPs (address, port, protocol) the data plane can serve at once.
pub const MAX_VIPS: u32 = 64;
/// Slots of one half of the VIP table: an open-addressed hash table the program probes with
/// plain array reads (inlined by the verifier), where a BPF hash map costs a helper call.
pub const VIP_SLOTS: u32 = 256;
/// A VIP sits at most this many slots past its home slot; the control plane places it so.
pub const VIP_PROBES: u32 = 4;
/// Distinct backends over all VIPs.
pub const MAX_BACKENDS: u32 = 4096;
/// A table entry that names no backend (every backend of the VIP is drained or down).
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
    pub const TABLES: &str = "XLB_TABLES";
    pub const BACKENDS: &str = "XLB_BACKENDS";
    pub const TX_PORTS: &str = "XLB_TX_PORTS";
    pub const CONTROL: &str = "XLB_CONTROL";
    pub const CLAIMS: &str = "XLB_CLAIMS";
    pub const VIP_STATS: &str = "XLB_VIP_STATS";
    pub const BACKEND_STATS: &str = "XLB_BACKEND_STATS";
    pub const OUTCOMES: &str = "XLB_OUTCOMES";
    pub const FLOWS: &str = "XLB_FLOWS";
    pub const FLOW_EVENTS: &str = "XLB_FLOW_EVENTS";
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
    /// Where probing for this VIP starts in a half of the VIP table.
    #[inline(always)]
    pub const fn home_slot(&self) -> u32 {
        let words = self.addr[0]
            ^ self.addr[1]
            ^ self.addr[2]
            ^ self.addr[3]
            ^ ((self.port as u32) << 8)
            ^ self.proto as u32;
        // Fibonacci hashing: the top bits of a multiply by 2^32 / golden ratio.
        words.wrapping_mul(0x9e37_79b9) >> (32 - VIP_SLOTS.trailing_zeros())
    }
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

/// What the data plane knows of a VIP.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipValue {
    /// Index of this VIP's counters and of its two tables (`2 * id` and `2 * id + 1`).
    pub id: u32,
    pub flags: u32,
    /// Which of the two tables is live (0 or 1). The control plane writes the other one whole,
    /// then replaces this value: a packet sees the old table or the new one, never a mix.
    pub live_table: u32,
    /// Index of the [`Claim`] that says whether this director serves the VIP now.
    pub claim: u32,
}

impl VipValue {
    #[inline(always)]
    pub const fn table_index(&self) -> u32 {
        self.id * 2 + (self.live_table & 1)
    }
}

/// One Maglev lookup table: entry `hash % MAGLEV_TABLE_SIZE` holds a backend id.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MaglevTable {
    pub entries: [u32; MAGLEV_TABLE_SIZE],
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
    // adopt ids and generations as they are. The program never reads past this point.
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
    /// Which half of the VIP table is live (0 or 1). Like the Maglev tables, the control plane
    /// rewrites the other half whole and then flips this word.
    pub vip_half: u32,
    /// A remembered TCP flow idle this long (jiffies) is placed again, like an expired IPVS
    /// connection entry.
    pub tcp_idle: u64,
    pub udp_idle: u64,
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
}

impl FlowEvent {
    pub const COUNT: u32 = 4;
    pub const ALL: [FlowEvent; Self::COUNT as usize] = [
        FlowEvent::New,
        FlowEvent::Expired,
        FlowEvent::BackendGone,
        FlowEvent::InsertFailed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            FlowEvent::New => "flow_new",
            FlowEvent::Expired => "flow_expired",
            FlowEvent::BackendGone => "flow_backend_gone",
            FlowEvent::InsertFailed => "flow_insert_failed",
        }
    }
}

/// Packets and bytes, per CPU, per VIP and per backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
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
    /// An IPv4 fragment or IPv6 fragment header to a VIP address.
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
    /// An ICMP "fragmentation needed" / ICMPv6 "packet too big" quoting a VIP flow but not
    /// addressed to that VIP (to the director itself, or forged): the kernel's, not a backend's.
    PassIcmpNotToVip = 12,
}

impl Outcome {
    pub const COUNT: u32 = 13;
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
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], Copy, and every bit pattern is a valid value;
    // explicit `_pad` fields leave no uninitialised padding.
    unsafe impl aya::Pod for super::VipKey {}
    unsafe impl aya::Pod for super::VipValue {}
    unsafe impl aya::Pod for super::VipSlot {}
    unsafe impl aya::Pod for super::MaglevTable {}
    unsafe impl aya::Pod for super::Backend {}
    unsafe impl aya::Pod for super::Control {}
    unsafe impl aya::Pod for super::Claim {}
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowValue {}
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<VipKey>(), 20);
        assert_eq!(size_of::<VipValue>(), 16);
        assert_eq!(size_of::<Backend>(), 64);
        assert_eq!(size_of::<Control>(), 24);
        assert_eq!(size_of::<Claim>(), 24);
        assert_eq!(size_of::<VipSlot>(), 36);
        assert_eq!(size_of::<FlowKey>(), 20);
        assert_eq!(size_of::<FlowValue>(), 16);
        assert_eq!(size_of::<Counters>(), 16);
        assert_eq!(size_of::<MaglevTable>(), 4 * MAGLEV_TABLE_SIZE);
    }

    #[test]
    fn maglev_table_sizes_are_the_largest_primes_below_powers_of_two() {
        use crate::maglev::is_prime;
        for (i, &size) in MAGLEV_TABLE_SIZES.iter().enumerate() {
            let power = 1usize << (8 + i);
            assert!(is_prime(size as usize), "{size}");
            assert!((size as usize) < power, "{size}");
            assert!(!(size as usize + 1..power).any(is_prime), "{size}");
        }
        assert!(MAGLEV_TABLE_SIZES.contains(&DEFAULT_MAGLEV_TABLE_SIZE));
        assert_eq!(
            Some(&MAX_MAGLEV_TABLE_SIZE),
            MAGLEV_TABLE_SIZES.iter().max()
        );
        assert!(is_prime(MAGLEV_TABLE_SIZE));
        assert!(MAGLEV_TABLE_SIZE <= MAX_MAGLEV_TABLE_SIZE as usize);
    }

    #[test]
    fn table_size_for_gives_100_entries_per_real_server() {
        for (real_servers, size) in [
            (0, 251),
            (1, 251),
            (2, 251),
            (3, 509),
            (10, 1021),
            (11, 2039),
            (81, 8191),
            (82, 16381),
            (100, 16381),
            (163, 16381),
            (164, 32749),
            (1310, 131071),
            (1311, 131071),
            (usize::MAX, 131071),
        ] {
            assert_eq!(
                table_size_for(real_servers),
                size,
                "{real_servers} real servers"
            );
        }
    }

    #[test]
    fn home_slots_spread_and_stay_in_range() {
        let mut used = [0u32; VIP_SLOTS as usize];
        for i in 0..64u32 {
            let key = VipKey {
                addr: v4_mapped(u32::from_be_bytes([10, 0, 0, 100 + i as u8])),
                port: 80u16.to_be(),
                proto: PROTO_TCP,
                _pad: 0,
            };
            used[key.home_slot() as usize] += 1;
        }
        assert!(used.iter().all(|n| *n <= 3), "{used:?}");
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
}

//! VRRP advertisements on the wire, and the other frames a VRRP router sends.
//!
//! * [`decode`] and [`Advert::encode`]: the VRRP message (the IP payload) of RFC 3768 (version 2)
//!   and RFC 5798 (version 3), laid out exactly as keepalived 2.2 sends it.
//! * [`parse_ipv4`] and [`build_ipv4`]: the IPv4 header around it, for raw sockets that see or
//!   write the IP header (keepalived uses `IP_HDRINCL`).
//! * [`gratuitous_arp`], [`unsolicited_neighbour_advert`] and
//!   [`unsolicited_neighbour_advert_icmpv6`]: the address announcements a new master sends.

mod announce;
mod checksum;
mod ipv4;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

pub use announce::{
    ARP_FRAME_LEN, NA_FRAME_LEN, NA_ICMPV6_LEN, gratuitous_arp, unsolicited_neighbour_advert,
    unsolicited_neighbour_advert_icmpv6,
};
pub use checksum::{Checksum, internet_checksum};
pub use ipv4::{IPV4_HEADER_LEN, IPV4_TOS, build_ipv4, parse_ipv4};

/// IP protocol number of VRRP (both versions).
pub const IPPROTO_VRRP: u8 = 112;
/// IPv4 multicast group adverts are sent to (RFC 3768 section 5.2.2, RFC 5798 section 5.1.1.2).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group adverts are sent to (RFC 5798 section 5.1.2.2).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / hop limit of every advert; receivers of multicast adverts insist on it.
pub const VRRP_TTL: u8 = 255;
/// Length of the fixed VRRP header, before the addresses.
pub const HEADER_LEN: usize = 8;
/// Length of the authentication data that trails a version 2 advert.
pub const AUTH_DATA_LEN: usize = 8;
/// The only packet type VRRP defines.
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Largest VRRPv3 Max Advert Interval, in centiseconds (12 bits).
pub const MAX_V3_INTERVAL_CS: u16 = 0x0fff;

const AUTH_TYPE_NONE: u8 = 0;
const AUTH_TYPE_SIMPLE: u8 = 1;
const AUTH_TYPE_AH: u8 = 2;

/// The multicast group of an address family.
pub fn multicast_group(ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(MULTICAST_V6)
    } else {
        IpAddr::V4(MULTICAST_V4)
    }
}

/// Protocol version of an advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768: IPv4 only, interval in whole seconds, 8 bytes of authentication data.
    V2,
    /// RFC 5798: IPv4 or IPv6, interval in centiseconds, checksum over a pseudo-header.
    V3,
}

impl Version {
    /// The number in the version nibble.
    pub const fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VRRPv{}", self.number())
    }
}

/// Authentication carried by a version 2 advert.
///
/// Version 3 has no authentication field; its adverts always decode to [`Auth::None`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Auth type 0; the 8 trailing bytes are sent as zeros and ignored on receipt.
    None,
    /// Auth type 1, keepalived's `auth_type PASS`: the password, NUL padded to 8 bytes.
    SimplePassword([u8; AUTH_DATA_LEN]),
}

impl Auth {
    /// keepalived's `auth_pass`: the first 8 bytes of `password`, NUL padded (keepalived truncates
    /// longer passwords, with a warning).
    pub fn simple_password(password: &[u8]) -> Self {
        let mut data = [0u8; AUTH_DATA_LEN];
        let n = password.len().min(AUTH_DATA_LEN);
        data[..n].copy_from_slice(&password[..n]);
        Auth::SimplePassword(data)
    }

    fn type_number(&self) -> u8 {
        match self {
            Auth::None => AUTH_TYPE_NONE,
            Auth::SimplePassword(_) => AUTH_TYPE_SIMPLE,
        }
    }
}

/// A decoded VRRP advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Advert {
    /// Protocol version.
    pub version: Version,
    /// Virtual router ID (1..=255 on the wire; 0 is decoded but matches no instance).
    pub vrid: u8,
    /// Sender's priority: 255 address owner, 1..=254 backup, 0 master stepping down.
    pub priority: u8,
    /// Advertisement interval in wire units: whole seconds for version 2, centiseconds
    /// (12 bits) for version 3. [`Advert::interval`] converts it.
    pub advert_int: u16,
    /// Version 2 authentication; [`Auth::None`] for version 3.
    pub auth: Auth,
    /// Virtual addresses; all of the family of the IP packet that carries the advert.
    pub addresses: Vec<IpAddr>,
}

impl Advert {
    /// The advertisement interval as a duration.
    pub fn interval(&self) -> Duration {
        match self.version {
            Version::V2 => Duration::from_secs(u64::from(self.advert_int)),
            Version::V3 => Duration::from_millis(u64::from(self.advert_int) * 10),
        }
    }

    /// Length of the encoded VRRP message for addresses of the given family.
    pub fn encoded_len(&self, ipv6: bool) -> usize {
        let addr_len = if ipv6 { 16 } else { 4 };
        let auth_len = if self.version == Version::V2 {
            AUTH_DATA_LEN
        } else {
            0
        };
        HEADER_LEN + self.addresses.len() * addr_len + auth_len
    }

    /// Encodes the VRRP message (the IP payload) sent from `src` to `dst`.
    ///
    /// The addresses are needed for the version 3 checksum, which covers a pseudo-header; for
    /// unicast peers that makes the checksum differ per peer, as it does in keepalived.
    pub fn encode(&self, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.encoded_len(src.is_ipv6()));
        self.encode_into(src, dst, &mut out)?;
        Ok(out)
    }

    /// Appends the encoded VRRP message to `out`; see [`Advert::encode`].
    ///
    /// On error nothing is appended.
    pub fn encode_into(
        &self,
        src: IpAddr,
        dst: IpAddr,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let ipv6 = src.is_ipv6();
        if dst.is_ipv6() != ipv6 {
            return Err(EncodeError::FamilyMismatch);
        }
        if self.addresses.iter().any(|a| a.is_ipv6() != ipv6) {
            return Err(EncodeError::FamilyMismatch);
        }
        let count =
            u8::try_from(self.addresses.len()).map_err(|_| EncodeError::TooManyAddresses)?;
        let (interval_bytes, auth_type) = match self.version {
            Version::V2 => {
                if ipv6 {
                    return Err(EncodeError::V2OverIpv6);
                }
                let secs =
                    u8::try_from(self.advert_int).map_err(|_| EncodeError::IntervalOutOfRange)?;
                ([self.auth.type_number(), secs], Some(self.auth))
            }
            Version::V3 => {
                if self.advert_int > MAX_V3_INTERVAL_CS {
                    return Err(EncodeError::IntervalOutOfRange);
                }
                if self.auth != Auth::None {
                    return Err(EncodeError::AuthOnV3);
                }
                (self.advert_int.to_be_bytes(), None)
            }
        };

        let start = out.len();
        out.push((self.version.number() << 4) | TYPE_ADVERTISEMENT);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(count);
        out.extend_from_slice(&interval_bytes);
        out.extend_from_slice(&[0, 0]);
        for addr in &self.addresses {
            match addr {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        match auth_type {
            Some(Auth::SimplePassword(data)) => out.extend_from_slice(&data),
            Some(Auth::None) => out.extend_from_slice(&[0; AUTH_DATA_LEN]),
            None => {}
        }

        let msg = &out[start..];
        let checksum = vrrp_checksum(self.version, src, dst, msg);
        out[start + 6..start + 8].copy_from_slice(&checksum.to_be_bytes());
        Ok(())
    }
}

/// The checksum over `msg` (whose checksum field may hold anything: it is summed as zero).
fn vrrp_checksum(version: Version, src: IpAddr, dst: IpAddr, msg: &[u8]) -> u16 {
    let mut sum = Checksum::new();
    if version == Version::V3 {
        // `msg` is at most 8 + 255 * 16 bytes, far below u32::MAX.
        sum.add_pseudo_header(src, dst, IPPROTO_VRRP, msg.len() as u32);
    }
    sum.add_bytes(&msg[..6]).add_bytes(&msg[8..]);
    sum.finish()
}

/// Why an advert could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Source, destination and virtual addresses are not all of one family.
    #[error("source, destination and virtual addresses must all be IPv4 or all IPv6")]
    FamilyMismatch,
    /// More than 255 virtual addresses.
    #[error("more than 255 virtual addresses")]
    TooManyAddresses,
    /// VRRPv2 is defined for IPv4 only.
    #[error("VRRPv2 cannot carry IPv6")]
    V2OverIpv6,
    /// Interval does not fit the field (255 s for version 2, 4095 cs for version 3).
    #[error("advertisement interval does not fit the field")]
    IntervalOutOfRange,
    /// VRRPv3 has no authentication field.
    #[error("VRRPv3 has no authentication")]
    AuthOnV3,
    /// The IP packet would exceed 65535 bytes.
    #[error("packet exceeds the IPv4 maximum length")]
    PacketTooLong,
}

/// What the receiving socket knows about an advert besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RxMeta {
    /// IP source address.
    pub src: IpAddr,
    /// IP destination address (the multicast group, or our address for unicast).
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit, if the socket reported it (`IP_RECVTTL` /
    /// `IPV6_RECVHOPLIMIT`); `None` skips the check, as keepalived does when the control
    /// message is missing.
    pub ttl: Option<u8>,
}

impl RxMeta {
    /// Metadata for an advert received with TTL 255, the value every sender uses.
    pub fn new(src: IpAddr, dst: IpAddr) -> Self {
        Self {
            src,
            dst,
            ttl: Some(VRRP_TTL),
        }
    }

    /// The same metadata with another TTL / hop limit.
    pub fn with_ttl(self, ttl: Option<u8>) -> Self {
        Self { ttl, ..self }
    }
}

macro_rules! drop_reasons {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, $message:literal; )*) => {
        /// Why a received packet was not acted on.
        ///
        /// Fieldless so that counting is an array index: see [`DropReason::ALL`],
        /// [`DropReason::index`] and [`DropReason::name`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
        pub enum DropReason {
            $( $(#[$doc])* #[error($message)] $variant, )*
        }

        impl DropReason {
            /// Every reason, in [`DropReason::index`] order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Number of reasons, the size of a counter array.
            pub const COUNT: usize = DropReason::ALL.len();

            /// Stable snake_case name, for metric labels.
            pub const fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }

            /// Position in [`DropReason::ALL`].
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

drop_reasons! {
    /// The IPv4 header around the advert is malformed, is not VRRP, or its total length
    /// disagrees with what was received.
    BadIpHeader => "bad_ip_header", "malformed IPv4 header";
    /// Source and destination addresses are of different families.
    FamilyMismatch => "family_mismatch", "address family mismatch";
    /// A multicast advert arrived with a TTL / hop limit other than 255, so it was forwarded
    /// by a router (RFC 5798 section 7.1). keepalived skips this check for unicast.
    TtlNot255 => "ttl_not_255", "TTL/hop limit is not 255";
    /// Shorter than the header, or the length disagrees with the address count.
    BadLength => "bad_length", "length does not match the address count";
    /// Version is neither 2 nor 3, or version 2 arrived over IPv6.
    UnknownVersion => "unknown_version", "unknown VRRP version";
    /// Type is not 1 (ADVERTISEMENT).
    UnknownType => "unknown_type", "unknown VRRP packet type";
    /// Checksum does not verify.
    BadChecksum => "bad_checksum", "bad checksum";
    /// Version 2 auth type is not 0, 1 or 2.
    InvalidAuthType => "invalid_auth_type", "invalid authentication type";
    /// Version 2 auth type 2 (IPsec AH), which this implementation does not speak.
    AuthAhUnsupported => "auth_ah_unsupported", "IPsec AH authentication is not supported";
    /// Valid advert of the other version than the instance runs.
    VersionMismatch => "version_mismatch", "VRRP version differs from ours";
    /// The advert carries our own source address: multicast loopback left on, or another
    /// host configured with our address.
    OwnAddress => "own_address", "advert from our own address";
    /// The advert is for another virtual router.
    WrongVrid => "wrong_vrid", "virtual router ID differs from ours";
    /// Auth type differs from ours.
    AuthTypeMismatch => "auth_type_mismatch", "authentication type differs from ours";
    /// Password differs from ours.
    AuthMismatch => "auth_mismatch", "wrong password";
    /// Version 2 interval differs from ours (keepalived drops these to keep two differently
    /// configured routers from both being master).
    AdvertIntervalMismatch => "advert_interval_mismatch", "advertisement interval differs from ours";
    /// Address count or list differs from our virtual addresses.
    AddressListMismatch => "address_list_mismatch", "virtual address list differs from ours";
    /// Multicast advert on a unicast instance or the other way round.
    MulticastUnicastMismatch => "multicast_unicast_mismatch", "multicast/unicast mode differs from ours";
    /// Unicast advert from an address that is not a configured peer.
    NotAPeer => "not_a_peer", "unicast source is not a configured peer";
}

/// Decodes a VRRP message (the IP payload) received as described by `meta`.
///
/// Checks what needs no configuration: length, TTL (multicast only), version, type, auth type
/// and checksum. [`crate::Instance::check`] does the rest. Never panics, whatever the bytes.
pub fn decode(msg: &[u8], meta: &RxMeta) -> Result<Advert, DropReason> {
    let ipv6 = meta.src.is_ipv6();
    if meta.dst.is_ipv6() != ipv6 {
        return Err(DropReason::FamilyMismatch);
    }
    let [vers_type, vrid, priority, count, b4, b5, _, _] = match msg.get(..HEADER_LEN) {
        Some(&[a, b, c, d, e, f, g, h]) => [a, b, c, d, e, f, g, h],
        _ => return Err(DropReason::BadLength),
    };
    let version = match vers_type >> 4 {
        2 if !ipv6 => Version::V2,
        3 => Version::V3,
        _ => return Err(DropReason::UnknownVersion),
    };
    let addr_len = if ipv6 { 16 } else { 4 };
    let auth_len = if version == Version::V2 {
        AUTH_DATA_LEN
    } else {
        0
    };
    let expected = HEADER_LEN + usize::from(count) * addr_len + auth_len;
    // keepalived rejects trailing bytes too ("vrrp packet too long").
    if msg.len() != expected {
        return Err(DropReason::BadLength);
    }
    if meta.dst.is_multicast() && meta.ttl.is_some_and(|ttl| ttl != VRRP_TTL) {
        return Err(DropReason::TtlNot255);
    }
    if vers_type & 0x0f != TYPE_ADVERTISEMENT {
        return Err(DropReason::UnknownType);
    }

    let addr_end = HEADER_LEN + usize::from(count) * addr_len;
    let (advert_int, auth) = match version {
        Version::V2 => {
            let auth = match b4 {
                AUTH_TYPE_NONE => Auth::None,
                AUTH_TYPE_SIMPLE => {
                    let mut data = [0u8; AUTH_DATA_LEN];
                    data.copy_from_slice(&msg[addr_end..]);
                    Auth::SimplePassword(data)
                }
                AUTH_TYPE_AH => return Err(DropReason::AuthAhUnsupported),
                _ => return Err(DropReason::InvalidAuthType),
            };
            (u16::from(b5), auth)
        }
        // The top 4 bits are reserved: ignored on receipt (RFC 5798 section 5.2.7).
        Version::V3 => (
            u16::from_be_bytes([b4, b5]) & MAX_V3_INTERVAL_CS,
            Auth::None,
        ),
    };

    if vrrp_checksum_verify(version, meta.src, meta.dst, msg) != 0 {
        return Err(DropReason::BadChecksum);
    }

    let addresses = msg[HEADER_LEN..addr_end]
        .chunks_exact(addr_len)
        .map(|chunk| match *chunk {
            [a, b, c, d] => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            _ => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(chunk);
                IpAddr::V6(Ipv6Addr::from(octets))
            }
        })
        .collect();

    Ok(Advert {
        version,
        vrid,
        priority,
        advert_int,
        auth,
        addresses,
    })
}

/// Sums a received message including its checksum field: 0 when the checksum is right.
fn vrrp_checksum_verify(version: Version, src: IpAddr, dst: IpAddr, msg: &[u8]) -> u16 {
    let mut sum = Checksum::new();
    if version == Version::V3 {
        sum.add_pseudo_header(src, dst, IPPROTO_VRRP, msg.len() as u32);
    }
    sum.add_bytes(msg).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn drop_reason_table_is_consistent() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
            assert!(!reason.name().is_empty());
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn v2_round_trip() {
        let advert = Advert {
            version: Version::V2,
            vrid: 51,
            priority: 150,
            advert_int: 1,
            auth: Auth::simple_password(b"kpa12345"),
            addresses: vec![v4(10, 77, 0, 100)],
        };
        let src = v4(10, 77, 0, 11);
        let dst = IpAddr::V4(MULTICAST_V4);
        let bytes = advert.encode(src, dst).expect("encodes");
        // Frame 1 of v2-pass-mcast.pcap.
        assert_eq!(
            bytes,
            [
                0x21, 0x33, 0x96, 0x01, 0x01, 0x01, 0x0a, 0x0f, 0x0a, 0x4d, 0x00, 0x64, b'k', b'p',
                b'a', b'1', b'2', b'3', b'4', b'5'
            ]
        );
        assert_eq!(decode(&bytes, &RxMeta::new(src, dst)), Ok(advert));
    }

    #[test]
    fn v2_rejects_ipv6_context() {
        let advert = Advert {
            version: Version::V2,
            vrid: 1,
            priority: 100,
            advert_int: 1,
            auth: Auth::None,
            addresses: vec![],
        };
        let bytes = advert
            .encode(v4(1, 1, 1, 1), v4(224, 0, 0, 18))
            .expect("encodes");
        let meta = RxMeta::new("fe80::1".parse().expect("addr"), IpAddr::V6(MULTICAST_V6));
        assert_eq!(decode(&bytes, &meta), Err(DropReason::UnknownVersion));
    }

    #[test]
    fn ttl_checked_for_multicast_only() {
        let advert = Advert {
            version: Version::V3,
            vrid: 7,
            priority: 100,
            advert_int: 100,
            auth: Auth::None,
            addresses: vec![v4(192, 0, 2, 1)],
        };
        let src = v4(192, 0, 2, 10);
        let mcast = IpAddr::V4(MULTICAST_V4);
        let bytes = advert.encode(src, mcast).expect("encodes");
        let meta = RxMeta::new(src, mcast).with_ttl(Some(254));
        assert_eq!(decode(&bytes, &meta), Err(DropReason::TtlNot255));
        assert!(decode(&bytes, &meta.with_ttl(None)).is_ok());

        let peer = v4(192, 0, 2, 11);
        let bytes = advert.encode(src, peer).expect("encodes");
        assert_eq!(
            decode(&bytes, &RxMeta::new(src, peer).with_ttl(Some(64))),
            Ok(advert)
        );
    }

    #[test]
    fn encode_errors() {
        let mut advert = Advert {
            version: Version::V3,
            vrid: 7,
            priority: 100,
            advert_int: 4096,
            auth: Auth::None,
            addresses: vec![],
        };
        let (s, d) = (v4(1, 1, 1, 1), v4(224, 0, 0, 18));
        assert_eq!(advert.encode(s, d), Err(EncodeError::IntervalOutOfRange));
        advert.advert_int = 100;
        advert.addresses = vec!["2001:db8::1".parse().expect("addr")];
        assert_eq!(advert.encode(s, d), Err(EncodeError::FamilyMismatch));
        advert.addresses = vec![v4(1, 2, 3, 4); 256];
        assert_eq!(advert.encode(s, d), Err(EncodeError::TooManyAddresses));
        advert.addresses.clear();
        advert.auth = Auth::simple_password(b"x");
        assert_eq!(advert.encode(s, d), Err(EncodeError::AuthOnV3));
        advert.version = Version::V2;
        advert.advert_int = 256;
        assert_eq!(advert.encode(s, d), Err(EncodeError::IntervalOutOfRange));
    }

    #[test]
    fn password_is_truncated_and_padded() {
        assert_eq!(
            Auth::simple_password(b"ab"),
            Auth::SimplePassword(*b"ab\0\0\0\0\0\0")
        );
        assert_eq!(
            Auth::simple_password(b"0123456789"),
            Auth::SimplePassword(*b"01234567")
        );
    }
}

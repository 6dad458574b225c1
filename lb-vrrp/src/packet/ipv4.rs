//! The IPv4 header around an advert, for raw sockets that read or write it.

use std::net::{IpAddr, Ipv4Addr};

use super::{DropReason, EncodeError, IPPROTO_VRRP, RxMeta, VRRP_TTL, internet_checksum};

/// Length of the IPv4 header keepalived writes (no options: it adds no Router Alert).
pub const IPV4_HEADER_LEN: usize = 20;
/// Type of service of every advert: DSCP CS6, "internet network control".
pub const IPV4_TOS: u8 = 0xc0;

const IPPROTO_AH: u8 = 51;

/// Splits an IPv4 packet as read from a raw socket into what [`super::decode`] needs.
///
/// Like keepalived, insists that the header's total length equals the bytes received; a
/// packet wrapped in IPsec AH is reported as [`DropReason::AuthAhUnsupported`].
pub fn parse_ipv4(packet: &[u8]) -> Result<(RxMeta, &[u8]), DropReason> {
    let header = packet
        .get(..IPV4_HEADER_LEN)
        .ok_or(DropReason::BadIpHeader)?;
    if header[0] >> 4 != 4 {
        return Err(DropReason::BadIpHeader);
    }
    let header_len = usize::from(header[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if header_len < IPV4_HEADER_LEN || total_len != packet.len() || total_len < header_len {
        return Err(DropReason::BadIpHeader);
    }
    match header[9] {
        IPPROTO_VRRP => {}
        IPPROTO_AH => return Err(DropReason::AuthAhUnsupported),
        _ => return Err(DropReason::BadIpHeader),
    }
    let src = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let dst = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    let meta = RxMeta {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        ttl: Some(header[8]),
    };
    Ok((meta, &packet[header_len..]))
}

/// Builds the IPv4 packet keepalived sends: TOS 0xc0, DF clear, TTL 255 (unicast too),
/// protocol 112, no options, then `payload`.
///
/// keepalived numbers the identification field itself, starting at 1 for the first advert of an
/// instance and adding 1 per advert (skipping 0, which would let the kernel choose).
///
/// Fails only if `payload` does not fit in an IPv4 packet; adverts are at most 1048 bytes.
pub fn build_ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    identification: u16,
    payload: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let total_len =
        u16::try_from(IPV4_HEADER_LEN + payload.len()).map_err(|_| EncodeError::PacketTooLong)?;
    let mut packet = Vec::with_capacity(usize::from(total_len));
    packet.extend_from_slice(&[0x45, IPV4_TOS]);
    packet.extend_from_slice(&total_len.to_be_bytes());
    packet.extend_from_slice(&identification.to_be_bytes());
    packet.extend_from_slice(&[0, 0, VRRP_TTL, IPPROTO_VRRP, 0, 0]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    let checksum = internet_checksum(&packet);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet.extend_from_slice(payload);
    Ok(packet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let src = Ipv4Addr::new(10, 77, 0, 11);
        let dst = Ipv4Addr::new(224, 0, 0, 18);
        let packet = build_ipv4(src, dst, 1, &[1, 2, 3]).expect("fits");
        assert_eq!(internet_checksum(&packet[..IPV4_HEADER_LEN]), 0);
        let (meta, payload) = parse_ipv4(&packet).expect("parses");
        assert_eq!(meta.src, IpAddr::V4(src));
        assert_eq!(meta.dst, IpAddr::V4(dst));
        assert_eq!(meta.ttl, Some(255));
        assert_eq!(payload, &[1, 2, 3]);
    }

    #[test]
    fn rejects_wrong_total_length_and_protocol() {
        let mut packet =
            build_ipv4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 1, &[0; 8]).expect("fits");
        packet.push(0);
        assert_eq!(parse_ipv4(&packet), Err(DropReason::BadIpHeader));
        packet.pop();
        packet[9] = 51;
        assert_eq!(parse_ipv4(&packet), Err(DropReason::AuthAhUnsupported));
        packet[9] = 17;
        assert_eq!(parse_ipv4(&packet), Err(DropReason::BadIpHeader));
        assert_eq!(parse_ipv4(&packet[..10]), Err(DropReason::BadIpHeader));
    }

    #[test]
    fn refuses_oversized_payload() {
        let payload = vec![0; 65536 - IPV4_HEADER_LEN];
        assert_eq!(
            build_ipv4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 1, &payload),
            Err(EncodeError::PacketTooLong)
        );
    }
}

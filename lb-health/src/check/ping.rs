//! PING_CHECK: the real server is up if it answers an ICMP (IPv4) or ICMPv6 (IPv6) echo
//! request within connect_timeout (keepalived's check_ping.c).
//!
//! keepalived opens an unprivileged ICMP datagram socket and, to be allowed to, widens
//! /proc/sys/net/ipv4/ping_group_range. xlb does not change a system setting behind the
//! operator's back: it uses a datagram socket when the range allows it and otherwise a raw
//! socket, which it may open as root. With a raw socket it picks the echo identifier itself
//! and skips the replies meant for others; the kernel does both for a datagram socket.
//!
//! Packets are built and read by [`echo_request`] and [`read_reply`], which do no I/O.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use lb_config::Connection;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::CheckFailure;

/// What keepalived puts after the ICMP header (`ICMP_BUFSIZE`).
const PAYLOAD_LEN: usize = 128;
const ICMP_ECHO: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP6_ECHO: u8 = 128;
const ICMP6_ECHO_REPLY: u8 = 129;

/// Sequence numbers of this process's echo requests, so that a reply to an earlier,
/// timed-out request is not taken for the answer to this one.
static SEQUENCE: AtomicU16 = AtomicU16::new(0);

/// keepalived's `set_buf`: the bytes a checker sends when it has nothing to say.
pub fn filler(len: usize) -> Vec<u8> {
    b"keepalived check - "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// An echo request: type, code 0, checksum, identifier, sequence, then keepalived's filler.
/// The checksum is filled in for ICMP; for ICMPv6 the kernel computes it (it covers a
/// pseudo-header only the kernel knows).
pub fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut packet = vec![if v6 { ICMP6_ECHO } else { ICMP_ECHO }, 0, 0, 0];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend(filler(PAYLOAD_LEN));
    if !v6 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The Internet checksum (RFC 1071).
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What a received packet is to the request `(id, seq)`.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Its echo reply.
    Answer,
    /// Not for this request (another process's, or an older one): keep waiting.
    Other,
}

/// Reads one received packet. `ip_header`: a raw IPv4 socket hands over the IP header too.
/// `id` is `None` on a datagram socket, where the kernel has already matched it.
pub fn read_reply(packet: &[u8], v6: bool, ip_header: bool, id: Option<u16>, seq: u16) -> Reply {
    let icmp = if ip_header {
        let Some(first) = packet.first() else {
            return Reply::Other;
        };
        let header_len = usize::from(first & 0x0f) * 4;
        packet.get(header_len..).unwrap_or(&[])
    } else {
        packet
    };
    if icmp.len() < 8 {
        return Reply::Other;
    }
    let reply_type = if v6 {
        ICMP6_ECHO_REPLY
    } else {
        ICMP_ECHO_REPLY
    };
    let got_id = u16::from_be_bytes([icmp[4], icmp[5]]);
    let got_seq = u16::from_be_bytes([icmp[6], icmp[7]]);
    if icmp[0] == reply_type && got_seq == seq && id.is_none_or(|id| id == got_id) {
        Reply::Answer
    } else {
        Reply::Other
    }
}

/// An ICMP socket to `dst`'s family: a datagram one if ping_group_range lets us, else raw.
/// Returns it and whether it is raw.
fn open(dst: IpAddr) -> io::Result<(Socket, bool)> {
    let (domain, protocol) = match dst {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    match Socket::new(domain, Type::DGRAM, Some(protocol)) {
        Ok(s) => Ok((s, false)),
        // EACCES: our group is outside ping_group_range; root may still open a raw socket.
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            Socket::new(domain, Type::RAW, Some(protocol)).map(|s| (s, true))
        }
        Err(e) => Err(e),
    }
}

/// One PING_CHECK attempt.
pub async fn check_ping(conn: &Connection) -> Result<(), CheckFailure> {
    let failed = |what: &str, e: io::Error| CheckFailure::PingFailed(format!("{what}: {e}"));
    let dst = conn.connect_ip;
    let (socket, raw) = open(dst).map_err(|e| failed("socket", e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| failed("socket", e))?;
    if let Some(src) = conn.bindto {
        socket
            .bind(&SocketAddr::new(src, 0).into())
            .map_err(|e| failed("bind failed", e))?;
    }
    let socket =
        UdpSocket::from_std(std::net::UdpSocket::from(socket)).map_err(|e| failed("socket", e))?;
    let v6 = dst.is_ipv6();
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    // A datagram socket's identifier is its port, set by the kernel; a raw one's is ours.
    let id = raw.then(rand::random::<u16>);
    let request = echo_request(v6, id.unwrap_or(0), seq);
    socket
        .send_to(&request, SocketAddr::new(dst, 0))
        .await
        .map_err(|e| failed("send ICMP packet fail", e))?;
    let wait = async {
        let mut buf = [0u8; 1500];
        loop {
            let (len, from) = socket.recv_from(&mut buf).await?;
            if from.ip() == dst && read_reply(&buf[..len], v6, raw && !v6, id, seq) == Reply::Answer
            {
                return Ok::<(), io::Error>(());
            }
        }
    };
    let timeout: Duration = conn.connect_timeout.as_duration();
    match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(failed("recv ICMP packet error", e)),
        Err(_) => Err(CheckFailure::PingTimeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_keepalived_filler_and_a_valid_checksum() {
        let p = echo_request(false, 0x1234, 7);
        assert_eq!(p.len(), 8 + PAYLOAD_LEN);
        assert_eq!(&p[..2], &[ICMP_ECHO, 0]);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
        assert!(p[8..].starts_with(b"keepalived check - keepalived"));
        // A packet with its checksum in sums to zero.
        assert_eq!(checksum(&p), 0);
        let p6 = echo_request(true, 1, 2);
        assert_eq!((p6[0], &p6[2..4]), (ICMP6_ECHO, &[0u8, 0][..]));
    }

    #[test]
    fn replies_are_matched_by_type_identifier_and_sequence() {
        let reply = |t: u8, id: u16, seq: u16| {
            let mut p = vec![t, 0, 0, 0];
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&seq.to_be_bytes());
            p
        };
        let with_ip = |icmp: Vec<u8>| {
            let mut p = vec![0x45u8];
            p.extend([0u8; 19]);
            p.extend(icmp);
            p
        };
        let cases = [
            (reply(0, 9, 3), false, false, None, 3, Reply::Answer),
            (reply(0, 9, 4), false, false, None, 3, Reply::Other),
            (reply(8, 9, 3), false, false, None, 3, Reply::Other),
            (
                with_ip(reply(0, 9, 3)),
                false,
                true,
                Some(9),
                3,
                Reply::Answer,
            ),
            (
                with_ip(reply(0, 8, 3)),
                false,
                true,
                Some(9),
                3,
                Reply::Other,
            ),
            (reply(129, 1, 2), true, false, Some(1), 2, Reply::Answer),
            (reply(128, 1, 2), true, false, Some(1), 2, Reply::Other),
            (vec![0, 0, 0], false, false, None, 0, Reply::Other),
        ];
        for (packet, v6, ip, id, seq, expected) in cases {
            assert_eq!(read_reply(&packet, v6, ip, id, seq), expected, "{packet:?}");
        }
    }
}

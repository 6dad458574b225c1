//! DNS_CHECK: a query (`type`, `name`, recursion desired) sent over UDP; the real server is
//! up if an answer with the query's identifier and no error code (RCODE 0) comes back
//! within connect_timeout. Datagrams that are too short, carry another identifier or are
//! not answers are skipped, as keepalived's check_dns.c does. The answer's records are not
//! looked at: NOERROR with no record passes, NXDOMAIN fails.
//!
//! [`query`] and [`read_answer`] build and read the packets without I/O.

use lb_config::DnsCheck;

use super::CheckFailure;
use super::udp::connected;

/// keepalived's receive buffer (`DNS_BUFFER_SIZE`).
const BUFFER: usize = 768;
const HEADER: usize = 12;

/// A query for `name` (`.` is the root) of type `qtype`, class IN, with recursion desired.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(HEADER + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    // Flags: RD (recursion desired), as keepalived sets.
    q.extend_from_slice(&0x0100u16.to_be_bytes());
    // One question, no answer, authority or additional records.
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        // lb-config refuses labels longer than 63, so the length fits.
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// What a received datagram is to the query `id`.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// An answer without error.
    Ok,
    /// An answer with this RCODE.
    Error(u8),
    /// Not an answer to this query: keep waiting.
    Other,
}

pub fn read_answer(packet: &[u8], id: u16) -> Answer {
    if packet.len() < HEADER || u16::from_be_bytes([packet[0], packet[1]]) != id {
        return Answer::Other;
    }
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    if flags & 0x8000 == 0 {
        // A query, not a response.
        return Answer::Other;
    }
    match (flags & 0x000f) as u8 {
        0 => Answer::Ok,
        rcode => Answer::Error(rcode),
    }
}

/// One DNS_CHECK attempt.
pub async fn check_dns(check: &DnsCheck) -> Result<(), CheckFailure> {
    let conn = &check.connection;
    let socket = connected(conn).await.map_err(|e| {
        CheckFailure::Dns(format!(
            "network unreachable for [{}]:{} ({e})",
            conn.connect_ip, conn.connect_port
        ))
    })?;
    let id = rand::random::<u16>();
    let packet = query(id, &check.name, check.query_type.code());
    let exchange = async {
        socket
            .send(&packet)
            .await
            .map_err(|_| CheckFailure::Dns("failed to write socket.".into()))?;
        let mut buf = [0u8; BUFFER];
        loop {
            let len = socket.recv(&mut buf).await.map_err(|e| {
                CheckFailure::Dns(format!(
                    "failed to read socket; errno {} ({})",
                    e.raw_os_error().unwrap_or(0),
                    e.kind()
                ))
            })?;
            match read_answer(&buf[..len], id) {
                Answer::Ok => return Ok(()),
                Answer::Error(rcode) => {
                    return Err(CheckFailure::Dns(format!(
                        "read error occurred. (rcode = {rcode})"
                    )));
                }
                Answer::Other => {}
            }
        }
    };
    tokio::time::timeout(conn.connect_timeout.as_duration(), exchange)
        .await
        .unwrap_or_else(|_| Err(CheckFailure::Dns("read timeout from socket".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded_as_keepalived_encodes_them() {
        let q = query(0xabcd, "www.example.com", 1);
        assert_eq!(&q[..4], &[0xab, 0xcd, 0x01, 0x00]);
        assert_eq!(&q[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..], b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        // The root (keepalived's default name) is a single empty label; so is `.`.
        assert_eq!(&query(1, ".", 6)[12..], b"\x00\x00\x06\x00\x01");
        assert_eq!(
            &query(1, "example.com.", 6)[12..],
            b"\x07example\x03com\x00\x00\x06\x00\x01"
        );
    }

    #[test]
    fn answers_are_read_by_identifier_and_code() {
        let header = |id: u16, flags: u16| {
            let mut p = id.to_be_bytes().to_vec();
            p.extend_from_slice(&flags.to_be_bytes());
            p.extend_from_slice(&[0; 8]);
            p
        };
        let cases = [
            (header(7, 0x8180), 7, Answer::Ok),
            (header(7, 0x8183), 7, Answer::Error(3)),
            (header(8, 0x8180), 7, Answer::Other),
            (header(7, 0x0100), 7, Answer::Other),
            (vec![0, 7, 0x81], 7, Answer::Other),
        ];
        for (packet, id, expected) in cases {
            assert_eq!(read_answer(&packet, id), expected, "{packet:?}");
        }
    }
}

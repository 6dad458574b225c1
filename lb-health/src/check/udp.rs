//! UDP_CHECK: a datagram (`payload`, or keepalived's 32 filler bytes) is sent to the real
//! server; it is down if an ICMP destination unreachable comes back (the socket is
//! connected, so the kernel reports it as an error on receive). Without `require_reply`,
//! silence until connect_timeout means up; with it, a reply must come, and when a reply
//! pattern is written the reply's length must be within min/max_reply_length and its bytes
//! match the pattern (keepalived's check_udp.c and layer4.c).

use std::io;
use std::net::SocketAddr;

use lb_config::{Connection, HexBytes, UdpCheck};
use tokio::net::UdpSocket;

use super::CheckFailure;
use super::ping::filler;
use super::tcp::source;

/// keepalived's `UDP_BUFSIZE`: the filler length when no payload is written.
const DEFAULT_PAYLOAD_LEN: usize = 32;

/// Whether a reply passes: keepalived compares the reply against the written pattern up to
/// the shorter of the two, ignoring the bits written `X`, and only then its length.
pub fn reply_matches(reply: &[u8], check: &UdpCheck) -> bool {
    let Some(pattern) = &check.reply else {
        // keepalived checks lengths only with a pattern: any reply will do without one.
        return true;
    };
    let len = reply.len();
    if len < usize::from(check.min_reply_length) || len > usize::from(check.max_reply_length) {
        return false;
    }
    pattern_matches(reply, pattern)
}

fn pattern_matches(reply: &[u8], pattern: &HexBytes) -> bool {
    reply
        .iter()
        .zip(&pattern.data)
        .enumerate()
        .all(|(i, (got, want))| {
            let ignored = pattern.mask.get(i).copied().unwrap_or(0);
            (got ^ want) & !ignored == 0
        })
}

/// A UDP socket connected to the checked address, from `bindto`/`bind_port` when set.
pub(crate) async fn connected(conn: &Connection) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(source(conn)).await?;
    socket
        .connect(SocketAddr::new(conn.connect_ip, conn.connect_port))
        .await?;
    Ok(socket)
}

/// One UDP_CHECK attempt.
pub async fn check_udp(check: &UdpCheck) -> Result<(), CheckFailure> {
    let conn = &check.connection;
    let socket = connected(conn)
        .await
        .map_err(|e| CheckFailure::UdpFailed(e.to_string()))?;
    let payload = match &check.payload {
        Some(p) => p.data.clone(),
        None => filler(DEFAULT_PAYLOAD_LEN),
    };
    socket
        .send(&payload)
        .await
        .map_err(|e| CheckFailure::UdpFailed(format!("send: {e}")))?;
    // One byte more than the longest reply allowed, to tell a longer one apart.
    let mut buf = vec![0u8; usize::from(check.max_reply_length) + 1];
    match tokio::time::timeout(conn.connect_timeout.as_duration(), socket.recv(&mut buf)).await {
        // Silence: keepalived counts it a success unless a reply is required.
        Err(_) if check.require_reply => Err(CheckFailure::UdpNoReply),
        Err(_) => Ok(()),
        Ok(Err(e)) => Err(CheckFailure::UdpFailed(e.to_string())),
        Ok(Ok(len)) if check.require_reply && !reply_matches(&buf[..len], check) => {
            Err(CheckFailure::UdpMismatch)
        }
        Ok(Ok(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_config::{CheckTiming, Timer};
    use std::net::{IpAddr, Ipv4Addr};

    fn check(reply: Option<(&[u8], &[u8])>, min: u16, max: u16) -> UdpCheck {
        UdpCheck {
            connection: Connection {
                connect_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                connect_port: 9,
                bindto: None,
                bind_port: None,
                connect_timeout: Timer::from_secs(1),
            },
            timing: CheckTiming {
                delay_loop: Timer::from_secs(1),
                retry: 0,
                delay_before_retry: Timer::from_secs(1),
                warmup: Timer::default(),
            },
            payload: None,
            require_reply: true,
            reply: reply.map(|(d, m)| HexBytes {
                data: d.to_vec(),
                mask: m.to_vec(),
            }),
            min_reply_length: min,
            max_reply_length: max,
        }
    }

    #[test]
    fn replies_are_judged_as_keepalived_judges_them() {
        /// (pattern and mask, min length, max length, reply, passes)
        type Case<'a> = (Option<(&'a [u8], &'a [u8])>, u16, u16, &'a [u8], bool);
        let cases: &[Case] = &[
            // No pattern: any reply, of any length.
            (None, 5, 6, b"", true),
            (None, 0, 1, b"long reply", true),
            // Compared up to the shorter of reply and pattern.
            (Some((b"ok", &[])), 0, 255, b"ok then more", true),
            (Some((b"ok", &[])), 0, 255, b"o", true),
            (Some((b"ok", &[])), 0, 255, b"no", false),
            // X digits are not compared.
            (
                Some((&[0x10, 0xff], &[0x0f, 0])),
                0,
                255,
                &[0x1a, 0xff],
                true,
            ),
            (
                Some((&[0x10, 0xff], &[0x0f, 0])),
                0,
                255,
                &[0x2a, 0xff],
                false,
            ),
            // Lengths, with a pattern.
            (Some((b"o", &[])), 2, 3, b"o", false),
            (Some((b"o", &[])), 2, 3, b"oooo", false),
            (Some((b"o", &[])), 2, 3, b"ooo", true),
        ];
        for (pattern, min, max, reply, ok) in cases {
            let c = check(*pattern, *min, *max);
            assert_eq!(
                reply_matches(reply, &c),
                *ok,
                "{pattern:?} {min} {max} {reply:?}"
            );
        }
    }

    /// Against real sockets on the loopback: an echo server, a closed port, a silent one.
    #[tokio::test]
    async fn echo_closed_and_silent_servers() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            for _ in 0..4 {
                let Ok((len, from)) = echo.recv_from(&mut buf).await else {
                    return;
                };
                let _ = echo.send_to(&buf[..len], from).await;
            }
        });
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let closed_port = {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.local_addr().unwrap().port()
        };
        let at = |port: u16, reply: Option<(&[u8], &[u8])>, require: bool| {
            let mut c = check(reply, 0, 255);
            c.connection.connect_port = port;
            c.connection.connect_timeout = Timer::from_micros(300_000);
            c.require_reply = require;
            c.payload = Some(HexBytes {
                data: b"ping".to_vec(),
                mask: Vec::new(),
            });
            c
        };
        assert_eq!(
            check_udp(&at(echo_port, Some((b"pi", &[])), true)).await,
            Ok(())
        );
        assert_eq!(
            check_udp(&at(echo_port, Some((b"pa", &[])), true)).await,
            Err(CheckFailure::UdpMismatch)
        );
        assert!(matches!(
            check_udp(&at(closed_port, None, false)).await,
            Err(CheckFailure::UdpFailed(_))
        ));
        assert_eq!(check_udp(&at(silent_port, None, false)).await, Ok(()));
        assert_eq!(
            check_udp(&at(silent_port, None, true)).await,
            Err(CheckFailure::UdpNoReply)
        );
        drop(silent);
        server.abort();
    }
}

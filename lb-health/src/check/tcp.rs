//! TCP_CHECK: the real server is up if a TCP connection opens within
//! connect_timeout (keepalived's check_tcp.c; the connection is closed at once).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use lb_config::Connection;
use tokio::net::{TcpSocket, TcpStream};

use super::CheckFailure;

/// Why a connection did not open.
#[derive(Debug)]
pub(crate) enum ConnectError {
    Timeout,
    Bind(io::Error),
    Failed(io::Error),
}

/// Where a checker's packets come from: `bindto`/`bind_port`, or any address and port of
/// the checked address's family.
pub(crate) fn source(conn: &Connection) -> SocketAddr {
    let unspecified = match conn.connect_ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(
        conn.bindto.unwrap_or(unspecified),
        conn.bind_port.unwrap_or(0),
    )
}

/// Opens a TCP connection as a checker does: from `bindto`/`bind_port` when
/// set, within connect_timeout.
pub(crate) async fn connect(conn: &Connection) -> Result<TcpStream, ConnectError> {
    let dst = SocketAddr::new(conn.connect_ip, conn.connect_port);
    let socket = match dst {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(ConnectError::Failed)?;
    if conn.bindto.is_some() || conn.bind_port.is_some() {
        let src = source(conn);
        if conn.bind_port.is_some() {
            // A fixed source port is reused every delay_loop; TIME_WAIT of the
            // previous check must not make the bind fail.
            socket.set_reuseaddr(true).map_err(ConnectError::Bind)?;
        }
        socket.bind(src).map_err(ConnectError::Bind)?;
    }
    match tokio::time::timeout(conn.connect_timeout.as_duration(), socket.connect(dst)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(ConnectError::Failed(e)),
        Err(_) => Err(ConnectError::Timeout),
    }
}

/// One TCP_CHECK attempt.
pub async fn check_tcp(conn: &Connection) -> Result<(), CheckFailure> {
    match connect(conn).await {
        Ok(stream) => {
            drop(stream);
            Ok(())
        }
        Err(ConnectError::Timeout) => Err(CheckFailure::TcpTimeout),
        Err(ConnectError::Bind(e)) => Err(CheckFailure::TcpFailed(format!("bind failed: {e}"))),
        Err(ConnectError::Failed(e)) => Err(CheckFailure::TcpFailed(e.to_string())),
    }
}

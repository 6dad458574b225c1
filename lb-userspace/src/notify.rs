//! Tells the service manager how the daemon is doing: systemd's `sd_notify` protocol, one
//! datagram of `KEY=VALUE` lines to the Unix socket named by `$NOTIFY_SOCKET` (an abstract
//! address when it starts with `@`).
//!
//! Without `NOTIFY_SOCKET` (not started by systemd, or `Type=` other than notify) every function
//! does nothing; a send that fails is logged at debug level and never stops the daemon.

use std::{
    ffi::OsStr,
    io,
    os::unix::{ffi::OsStrExt as _, net::UnixDatagram},
};

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Start-up is done: the program is attached and the config applied.
pub fn ready() {
    notify("READY=1");
}

/// A reload began. `MONOTONIC_USEC` is what `Type=notify-reload` (systemd 253) needs to match
/// the notification to the signal it sent; older versions ignore it.
pub fn reloading() {
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

/// A reload ended, the new config applied or refused: the daemon serves again.
pub fn ready_after_reload() {
    notify("READY=1");
}

/// Shutting down (SIGTERM or SIGINT); VRRP hands over before the process exits.
pub fn stopping() {
    notify("STOPPING=1");
}

/// A one-line status for `systemctl status` (line breaks become spaces).
pub fn status(text: &str) {
    notify(&format!("STATUS={}", text.replace('\n', " ")));
}

fn notify(state: &str) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    if let Err(e) = send_to(&socket, state) {
        log::debug!(
            "notifying the service manager ({}) of {state:?}: {e}",
            socket.to_string_lossy()
        );
    }
}

/// Sends `state` as one datagram to the socket `socket` names: an absolute path, or `@name`
/// for an address in the abstract namespace.
pub fn send_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    let sent = match bytes.first() {
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&bytes[1..])?;
            sock.send_to_addr(state.as_bytes(), &addr)?
        }
        Some(b'/') => sock.send_to(state.as_bytes(), socket)?,
        _ => {
            // systemd 254 also passes `vsock:CID:PORT`, for virtual machines; not a daemon's.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an absolute path nor an abstract address",
            ));
        }
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the datagram was cut short",
        ));
    }
    Ok(())
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares reload notifications with.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the valid struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use std::{ffi::OsString, time::Duration};

    use super::*;

    fn receive(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_socket_path() {
        let dir = std::env::temp_dir().join(format!("xlb-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(receive(&sock), "READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sends_to_an_abstract_address() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("xlb-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(&OsString::from(format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(receive(&sock), "STOPPING=1");
    }

    #[test]
    fn refuses_relative_and_empty_addresses() {
        assert!(send_to(OsStr::new("relative.sock"), "READY=1").is_err());
        assert!(send_to(OsStr::new(""), "READY=1").is_err());
    }

    #[test]
    fn the_monotonic_clock_moves_forward() {
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_usec() >= a + 1_000);
    }
}

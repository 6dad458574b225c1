//! SMTP_CHECK: connect, read a `220` greeting, send `HELO helo_name`, read a `250`, send
//! `QUIT` and read any line (keepalived's check_smtp.c). Each connect and each read or write
//! must finish within connect_timeout. A status line is three digits then a space or the end
//! of the line, as keepalived reads it: a multi-line `220-` greeting fails as it does there.

use std::io::ErrorKind;

use lb_config::SmtpCheck;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::CheckFailure;
use super::tcp::{ConnectError, connect};

/// keepalived's line buffer (`SMTP_BUFF_MAX`); a longer line is read in pieces.
const LINE_MAX: usize = 512;

/// The status code of a reply line, if it has one keepalived accepts.
pub fn status(line: &[u8]) -> Option<u16> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !matches!(line.get(3), None | Some(b' ')) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The server's `[ip]:port`, as keepalived names it in SMTP_CHECK lines.
fn server(check: &SmtpCheck) -> String {
    format!(
        "[{}]:{}",
        check.connection.connect_ip, check.connection.connect_port
    )
}

struct Session<'a> {
    stream: TcpStream,
    check: &'a SmtpCheck,
}

impl Session<'_> {
    fn fail(&self, what: &str) -> CheckFailure {
        CheckFailure::Smtp(format!("{what} {}", server(self.check)))
    }

    /// Reads up to the first newline, within connect_timeout per read. What follows the
    /// newline is dropped: keepalived clears its buffer before each line it waits for.
    async fn line(&mut self) -> Result<Vec<u8>, CheckFailure> {
        let timeout = self.check.connection.connect_timeout.as_duration();
        let mut line = Vec::new();
        let mut buf = [0u8; LINE_MAX];
        loop {
            let n = match tokio::time::timeout(timeout, self.stream.read(&mut buf)).await {
                Err(_) => return Err(self.fail("Read timeout from server")),
                Ok(Err(_)) | Ok(Ok(0)) => return Err(self.fail("Read failure from server")),
                Ok(Ok(n)) => n,
            };
            if let Some(nl) = buf[..n].iter().position(|b| *b == b'\n') {
                line.extend_from_slice(&buf[..nl]);
                return Ok(line);
            }
            line.extend_from_slice(&buf[..n]);
            if line.len() >= LINE_MAX - 1 {
                // keepalived wraps its full buffer around and reads on.
                line.clear();
            }
        }
    }

    async fn send(&mut self, text: &str) -> Result<(), CheckFailure> {
        let timeout = self.check.connection.connect_timeout.as_duration();
        match tokio::time::timeout(timeout, self.stream.write_all(text.as_bytes())).await {
            Err(_) => Err(self.fail("Write timeout to server")),
            Ok(Err(_)) => Err(self.fail("Write failure to server")),
            Ok(Ok(())) => Ok(()),
        }
    }
}

/// One SMTP_CHECK attempt.
pub async fn check_smtp(check: &SmtpCheck) -> Result<(), CheckFailure> {
    let stream = match connect(&check.connection).await {
        Ok(s) => s,
        Err(ConnectError::Timeout) => {
            return Err(CheckFailure::Smtp(format!(
                "Connection timeout to server {}",
                server(check)
            )));
        }
        Err(ConnectError::Failed(e)) if e.kind() == ErrorKind::ConnectionRefused => {
            return Err(CheckFailure::Smtp(format!(
                "Error connecting to server {}",
                server(check)
            )));
        }
        Err(ConnectError::Failed(_) | ConnectError::Bind(_)) => {
            return Err(CheckFailure::Smtp(format!(
                "Could not connect to server {}",
                server(check)
            )));
        }
    };
    let mut s = Session { stream, check };
    let banner = s.line().await?;
    if status(&banner) != Some(220) {
        return Err(s.fail("Bad greeting banner from server"));
    }
    s.send(&format!("HELO {}\r\n", check.helo_name)).await?;
    let helo = s.line().await?;
    if status(&helo) != Some(250) {
        return Err(s.fail("Bad HELO response from server"));
    }
    s.send("QUIT\r\n").await?;
    // Whatever the server says to QUIT, the check has passed once a line comes.
    s.line().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_as_keepalived_reads_them() {
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"220 mail.example.com ESMTP\r", Some(220)),
            (b"250", Some(250)),
            // keepalived's strtoul stops at the CR, which is neither a space nor the end.
            (b"250\r", None),
            (b"220-first line of many\r", None),
            (b"22 short", None),
            (b"2200 long", None),
            (b"abc def", None),
            (b"", None),
        ];
        for (line, expected) in cases {
            assert_eq!(
                status(line),
                *expected,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}

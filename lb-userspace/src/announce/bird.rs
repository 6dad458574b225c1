//! What BIRD says of its protocols, asked on its control socket as `birdc show protocols` asks.
//!
//! BIRD's CLI protocol: a greeting, then for each command reply lines of a four-digit code
//! followed by `-` (more follow) or a space (the last), and continuation lines starting with a
//! space. Asked with a deadline, off the daemon's main loop: a BIRD that hangs leaves the status
//! without sessions, never the daemon waiting.

use std::{
    io::{BufReader, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

/// How long a status request waits for BIRD.
pub const BIRD_DEADLINE: Duration = Duration::from_secs(1);
/// A reply longer than this is not `show protocols` of a director.
const MAX_REPLY_LINES: usize = 10_000;

/// One line of `show protocols`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BirdProtocol {
    pub name: String,
    /// `BGP`, `Kernel`, `Device`, ...
    pub protocol: String,
    /// `up`, `start`, `down`, ...
    pub state: String,
    pub since: String,
    /// For BGP: `Established`, `Active`, `Connect`, ... with the last error if any.
    pub info: String,
}

impl BirdProtocol {
    /// A BGP session that exchanges routes.
    pub fn established(&self) -> bool {
        self.state == "up" && self.info.starts_with("Established")
    }
}

/// `show protocols` on BIRD's control socket at `path`.
pub fn show_protocols(path: &Path, deadline: Duration) -> Result<Vec<BirdProtocol>> {
    let stream = UnixStream::connect(path)
        .with_context(|| format!("connecting to BIRD's control socket {}", path.display()))?;
    stream.set_read_timeout(Some(deadline))?;
    stream.set_write_timeout(Some(deadline))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let greeting = read_reply(&mut reader).context("reading BIRD's greeting")?;
    if !greeting.iter().any(|(code, _)| *code == 1) {
        bail!("{} does not greet as BIRD does", path.display());
    }
    (&stream)
        .write_all(b"show protocols\n")
        .context("asking BIRD")?;
    let reply = read_reply(&mut reader).context("reading BIRD's answer")?;
    if let Some((code, text)) = reply.iter().find(|(code, _)| *code >= 8000) {
        bail!("BIRD answered {code} {text}");
    }
    Ok(parse_protocols(&reply))
}

/// One reply: (code, text) of each line, continuation lines carrying the code before them.
fn read_reply(reader: &mut impl std::io::BufRead) -> Result<Vec<(u16, String)>> {
    let mut lines = Vec::new();
    let mut code = 0u16;
    for _ in 0..MAX_REPLY_LINES {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("BIRD closed the socket");
        }
        let line = line.trim_end_matches('\n');
        if let Some(rest) = line.strip_prefix(' ') {
            lines.push((code, rest.to_string()));
            continue;
        }
        let (head, rest) = line.split_at_checked(5).unwrap_or((line, ""));
        let (digits, more) = head.split_at_checked(4).unwrap_or((head, ""));
        code = digits
            .parse()
            .with_context(|| format!("not a BIRD reply line: {line:?}"))?;
        lines.push((code, rest.to_string()));
        if more != "-" {
            return Ok(lines);
        }
    }
    bail!("BIRD's reply runs past {MAX_REPLY_LINES} lines")
}

/// The protocol lines (code 1002 and their continuations) of `show protocols`.
fn parse_protocols(reply: &[(u16, String)]) -> Vec<BirdProtocol> {
    reply
        .iter()
        .filter(|(code, _)| *code == 1002)
        .filter_map(|(_, text)| {
            let mut words = text.split_whitespace();
            let name = words.next()?.to_string();
            let protocol = words.next()?.to_string();
            let _table = words.next()?;
            let state = words.next()?.to_string();
            let mut rest: Vec<&str> = words.collect();
            // `since` is a time, or a date and a time (BIRD's `timeformat protocol`).
            let mut since = Vec::new();
            while let Some(word) = rest.first()
                && since.len() < 2
                && word.starts_with(|c: char| c.is_ascii_digit())
            {
                since.push(*word);
                rest.remove(0);
            }
            Some(BirdProtocol {
                name,
                protocol,
                state,
                since: since.join(" "),
                info: rest.join(" "),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_protocols_as_bird_2_0_answers_it() {
        let text = "0001 BIRD 2.0.12 ready.\n\
            2002-Name       Proto      Table      State  Since         Info\n\
            1002-device1    Device     ---        up     06:10:01.123  \n \
            kernel1    Kernel     master4    up     06:10:01.123  \n \
            r1         BGP        ---        up     06:10:02.456  Established   \n \
            r2         BGP        ---        start  2026-11-28    Active        Socket: Connection refused\n\
            0000 \n";
        let mut reader = std::io::Cursor::new(text.as_bytes());
        let greeting = read_reply(&mut reader).expect("greeting");
        assert_eq!(greeting, vec![(1, "BIRD 2.0.12 ready.".to_string())]);
        let reply = read_reply(&mut reader).expect("reply");
        let protocols = parse_protocols(&reply);
        assert_eq!(protocols.len(), 4);
        assert_eq!(protocols[2].name, "r1");
        assert!(protocols[2].established());
        assert_eq!(protocols[2].since, "06:10:02.456");
        assert_eq!(protocols[3].state, "start");
        assert_eq!(protocols[3].info, "Active Socket: Connection refused");
        assert!(!protocols[3].established());
    }
}

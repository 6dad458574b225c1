//! Frames the driver drops after XDP chose them: XDP cannot see it, the driver counts it. On
//! veth, native XDP's XDP_TX fails unless the peer has an XDP program of its own, and every
//! forwarded frame is lost without a word; this says so, with the fix.

use std::time::{Duration, Instant};

use log::warn;

/// How often the counters are read.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// A warning repeats at most this often while the errors keep rising.
const WARN_EVERY: Duration = Duration::from_secs(60);

pub(super) struct TxErrorWatch {
    interface: String,
    last: Option<u64>,
    checked: Option<Instant>,
    warned: Option<Instant>,
}

impl TxErrorWatch {
    pub fn new(interface: &str) -> Self {
        Self {
            interface: interface.to_string(),
            last: None,
            checked: None,
            warned: None,
        }
    }

    /// Reads the counters if they are due; warns if they rose.
    pub fn check(&mut self) {
        let now = Instant::now();
        if self.checked.is_some_and(|at| now - at < CHECK_EVERY) {
            return;
        }
        self.checked = Some(now);
        let Ok(Some(errors)) = crate::ethtool::xdp_transmit_errors(&self.interface) else {
            return;
        };
        let rose = self.last.map(|last| errors.saturating_sub(last));
        self.last = Some(errors);
        let Some(rose) = rose.filter(|n| *n > 0) else {
            return;
        };
        if self.warned.is_some_and(|at| now - at < WARN_EVERY) {
            return;
        }
        self.warned = Some(now);
        warn!(
            "{}: the driver dropped {rose} frame(s) XDP sent out in the last {} s \
             (xdp_tx_errors): forwarded traffic is being lost. On veth, XDP_TX and redirects \
             fail unless the peer interface has an XDP program too: attach one to the peer (a \
             program that returns XDP_PASS will do), or run xlb with --xdp-mode generic",
            self.interface,
            CHECK_EVERY.as_secs()
        );
    }
}

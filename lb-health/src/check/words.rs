//! What keepalived logs when a checker passes or is given up on, checker by checker
//! (check_tcp.c `tcp_epilog`, check_http.c, check_ping.c `icmp_epilog`, check_udp.c
//! `udp_epilog`, check_smtp.c `smtp_final`, check_dns.c `dns_final`). `rs` and `vs` are
//! keepalived's `[ip]:proto:port`.

use lb_config::Checker;

/// The checker's kind as the configuration names it, for status and metrics (HTTP_GET and
/// SSL_GET keep the names keepalived logs them with).
pub fn checker_label(checker: &Checker) -> &'static str {
    match checker {
        Checker::Tcp(_) => "TCP_CHECK",
        Checker::Http(c) if c.tls => "SSL_CHECK",
        Checker::Http(_) => "HTTP_CHECK",
        Checker::Misc(_) => "MISC_CHECK",
        Checker::Ping(_) => "PING_CHECK",
        Checker::Udp(_) => "UDP_CHECK",
        Checker::Dns(_) => "DNS_CHECK",
        Checker::Smtp(_) => "SMTP_CHECK",
        Checker::File(_) => "FILE_CHECK",
    }
}

/// The line logged when a checker that was down, or had not run, passes; `None` where
/// keepalived logs only the real server's change.
pub fn success_line(checker: &Checker, rs: &str, vs: &str) -> Option<String> {
    Some(match checker {
        Checker::Tcp(_) => format!("TCP connection to {rs} success."),
        Checker::Http(_) => format!("Remote Web server {rs} succeed on service."),
        Checker::Misc(m) => format!(
            "Misc check for [{rs} VS {vs}] by [{}] succeeded.",
            super::misc::script_name(&m.misc_path)
        ),
        Checker::Ping(_) => format!("ICMP connection to {rs} success."),
        Checker::Udp(_) => format!("UDP connection to {rs} success."),
        Checker::Smtp(_) => format!("Remote SMTP server {rs} succeed on service."),
        Checker::Dns(_) | Checker::File(_) => return None,
    })
}

/// The line logged when a checker is declared down: `retries` is `Some(n)` after n retries
/// of a checker that had run, `None` for a first check or one without retries. `None` where
/// keepalived says it all in the attempt's own line (MISC_CHECK, DNS_CHECK, SMTP_CHECK).
pub fn failed_line(checker: &Checker, rs: &str, vs: &str, retries: Option<u32>) -> Option<String> {
    let label = match checker {
        Checker::Tcp(_) => "TCP_CHECK",
        Checker::Http(c) if c.tls => "SSL_CHECK",
        Checker::Http(_) => "HTTP_CHECK",
        Checker::Udp(_) => "UDP_CHECK",
        // keepalived names the ping checker `ICMP CHECK` and, after retries, the VS too.
        Checker::Ping(_) => {
            return Some(match retries {
                Some(n) => format!("ICMP CHECK on service {rs} of {vs} failed after {n} retries."),
                None => format!("ICMP CHECK on service {rs} failed."),
            });
        }
        Checker::Misc(_) | Checker::Dns(_) | Checker::Smtp(_) | Checker::File(_) => return None,
    };
    Some(match retries {
        // keepalived says "retries" even for one.
        Some(n) => format!("{label} on service {rs} failed after {n} retries."),
        None => format!("{label} on service {rs} failed."),
    })
}

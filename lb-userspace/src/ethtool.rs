//! An interface's driver statistics (`ethtool -S`), through the SIOCETHTOOL ioctl: what the
//! kernel counts but XDP cannot see, such as frames a driver refused to send back (veth's
//! `xdp_tx_errors` when its peer has no XDP program).

use std::{ffi::CString, io, os::fd::AsRawFd as _};

use anyhow::{Context as _, Result, bail};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;
/// More statistics than any driver has: a count above this is not believed.
const MAX_STATS: usize = 1 << 14;

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ioctl(interface: &str, data: *mut libc::c_void) -> io::Result<()> {
    // SAFETY: a plain socket, closed by OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor we own.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let name = CString::new(interface).map_err(|_| io::ErrorKind::InvalidInput)?;
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data,
        _pad: [0; 16],
    };
    for (dst, src) in req.name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCETHTOOL reads the ifreq and the command buffer `data` points at, whose size
    // matches its command (checked by the callers).
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), SIOCETHTOOL, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Every statistic of `interface`'s driver, by name; empty if the driver has none.
pub fn statistics(interface: &str) -> Result<Vec<(String, u64)>> {
    // struct ethtool_sset_info with room for one u32 of data.
    let mut info = [0u32; 5];
    info[0] = ETHTOOL_GSSET_INFO;
    info[2] = 1 << ETH_SS_STATS; // sset_mask (low word of a u64): one bit per string set
    match ioctl(interface, info.as_mut_ptr().cast()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("ethtool statistics of {interface}")),
    }
    let count = if info[2] & (1 << ETH_SS_STATS) != 0 {
        info[4] as usize
    } else {
        0
    };
    if count == 0 {
        return Ok(Vec::new());
    }
    if count > MAX_STATS {
        bail!("{interface}: the driver claims {count} statistics");
    }
    // struct ethtool_gstrings: cmd, string_set, len, then the names.
    let mut strings = vec![0u8; 12 + count * ETH_GSTRING_LEN];
    strings[0..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
    strings[4..8].copy_from_slice(&ETH_SS_STATS.to_ne_bytes());
    strings[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
    ioctl(interface, strings.as_mut_ptr().cast())
        .with_context(|| format!("ethtool statistic names of {interface}"))?;
    // struct ethtool_stats: cmd, n_stats, then the u64 values (8-aligned).
    let mut stats = vec![0u64; 1 + count];
    stats[0] = u64::from(ETHTOOL_GSTATS) | (count as u64) << 32;
    ioctl(interface, stats.as_mut_ptr().cast())
        .with_context(|| format!("ethtool statistics of {interface}"))?;
    Ok((0..count)
        .map(|i| {
            let raw = &strings[12 + i * ETH_GSTRING_LEN..12 + (i + 1) * ETH_GSTRING_LEN];
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            (
                String::from_utf8_lossy(&raw[..end]).into_owned(),
                stats[1 + i],
            )
        })
        .collect())
}

/// Frames the driver failed to transmit for XDP (`XDP_TX` sent back, or redirected to it):
/// the sum of its `*xdp_tx_errors` and `*xdp_xmit_errors` counters, if it has any.
pub fn xdp_transmit_errors(interface: &str) -> Result<Option<u64>> {
    let stats = statistics(interface)?;
    let errors: Vec<u64> = stats
        .iter()
        .filter(|(name, _)| name.ends_with("xdp_tx_errors") || name.ends_with("xdp_xmit_errors"))
        .map(|(_, n)| *n)
        .collect();
    Ok((!errors.is_empty()).then(|| errors.iter().sum()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_has_no_driver_statistics() {
        // lo answers EOPNOTSUPP (or an empty set): not an error.
        assert!(super::statistics("lo").is_ok_and(|s| s.is_empty()));
    }
}

//! The interface VIP routes hang on: a TUN device that exists only while xlb holds it open.
//!
//! A route in a kernel table outlives whoever added it: after a `kill -9` of xlb, a VIP route
//! on a dummy interface would keep BIRD announcing a director that no longer renews anything.
//! A non-persistent TUN device is deleted by the kernel when its last file descriptor closes,
//! which a dying process does whatever killed it; the kernel flushes the routes through it,
//! BIRD's kernel protocol hears the deletion over netlink and withdraws the VIPs from BGP at
//! once. Nothing is ever read from or written to the device: it carries routes, not packets.

use std::{
    ffi::CStr,
    fs::File,
    os::fd::{AsRawFd as _, FromRawFd as _},
};

use anyhow::{Result, bail};

/// `TUNSETIFF`: `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// The name template: the kernel picks the first free number.
const NAME_TEMPLATE: &CStr = c"xlbvip%d";

/// `struct ifreq` as TUNSETIFF reads and writes it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// The open TUN device; dropping it deletes the device and every route through it.
pub struct RouteDevice {
    _file: File,
    pub name: String,
    pub index: u32,
}

impl RouteDevice {
    /// Creates the device (not yet up: [`crate::netlink::Netlink::set_link_up`]).
    pub fn create() -> Result<Self> {
        // SAFETY: a valid NUL-terminated path; the descriptor is owned by the File below.
        let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            bail!(
                "opening /dev/net/tun for the VIP route device: {} (modprobe tun)",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: fd was just opened and is owned by nothing else.
        let file = unsafe { File::from_raw_fd(fd) };
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        let template = NAME_TEMPLATE.to_bytes();
        req.name[..template.len()].copy_from_slice(template);
        // SAFETY: TUNSETIFF reads and writes a struct ifreq, which IfReq lays out.
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
            bail!(
                "creating the VIP route device (TUNSETIFF): {}",
                std::io::Error::last_os_error()
            );
        }
        let end = req
            .name
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(req.name.len());
        let name = String::from_utf8_lossy(&req.name[..end]).into_owned();
        let c_name = std::ffi::CString::new(name.clone())?;
        // SAFETY: a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if index == 0 {
            bail!("the VIP route device {name} has no index");
        }
        Ok(Self {
            _file: file,
            name,
            index,
        })
    }

    /// Whether the device still exists (`ip link del` removes it under the open descriptor).
    pub fn exists(&self) -> bool {
        let Ok(c_name) = std::ffi::CString::new(self.name.clone()) else {
            return false;
        };
        // SAFETY: a valid NUL-terminated string.
        unsafe { libc::if_nametoindex(c_name.as_ptr()) == self.index }
    }
}

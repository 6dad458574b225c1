//! Raw IP protocol 112 sockets on one interface, and the packet socket that sends gratuitous
//! ARPs and unsolicited neighbour advertisements.

use std::{
    io,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
};

use lb_vrrp::{RxMeta, packet::IPPROTO_VRRP};
use tokio::io::unix::AsyncFd;

const VRRP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const VRRP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points at a live T of the size passed.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn raw_socket(family: libc::c_int, protocol: libc::c_int, interface: &str) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned from here on.
    let fd = check(unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            protocol,
        )
    })?;
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the name buffer outlives the call; its length is passed.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            interface.as_ptr() as *const libc::c_void,
            interface.len() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

/// A received VRRP message and what the IP layer said of it, or why its IP header was refused.
pub type Message<'a> = Result<(RxMeta, &'a [u8]), lb_vrrp::DropReason>;

/// VRRP over IPv4 or IPv6 on one interface: multicast group joined, loopback off, TTL / hop
/// limit 255 on everything sent.
pub struct VrrpSocket {
    fd: AsyncFd<OwnedFd>,
    v6: bool,
    ifindex: u32,
    ip_id: std::sync::atomic::AtomicU16,
}

impl VrrpSocket {
    pub fn open(interface: &str, ifindex: u32, v6: bool) -> io::Result<Self> {
        let fd = if v6 {
            let fd = raw_socket(libc::AF_INET6, IPPROTO_VRRP.into(), interface)?;
            let raw = fd.as_raw_fd();
            let mreq = libc::ipv6_mreq {
                ipv6mr_multiaddr: libc::in6_addr {
                    s6_addr: VRRP_GROUP_V6.octets(),
                },
                ipv6mr_interface: ifindex,
            };
            setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &mreq)?;
            setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, &0i32)?;
            setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &255i32)?;
            setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &255i32)?;
            setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &ifindex)?;
            setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, &1i32)?;
            setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, &1i32)?;
            fd
        } else {
            let fd = raw_socket(libc::AF_INET, IPPROTO_VRRP.into(), interface)?;
            let raw = fd.as_raw_fd();
            // We write the IP header: TTL 255, TOS 0xc0, our chosen source address.
            setsockopt(raw, libc::IPPROTO_IP, libc::IP_HDRINCL, &1i32)?;
            let mreq = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(VRRP_GROUP_V4.octets()),
                },
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: ifindex as i32,
            };
            setsockopt(raw, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &mreq)?;
            setsockopt(raw, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, &0i32)?;
            setsockopt(raw, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreq)?;
            fd
        };
        Ok(Self {
            // SAFETY: the AsyncFd owns the descriptor and outlives its registration.
            fd: unsafe { AsyncFd::register(fd)? },
            v6,
            ifindex,
            ip_id: std::sync::atomic::AtomicU16::new(0),
        })
    }

    /// Sends one VRRP message from `src` to `dst` (the group or a unicast peer).
    pub fn send(&self, src: IpAddr, dst: IpAddr, payload: &[u8]) -> io::Result<()> {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                // keepalived numbers its adverts' IP identification from 1.
                let id = self
                    .ip_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .wrapping_add(1);
                let packet = lb_vrrp::packet::build_ipv4(src, dst, id, payload)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
                let to = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 0,
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(dst.octets()),
                    },
                    sin_zero: [0; 8],
                };
                self.send_to(&packet, &to)
            }
            // The kernel writes the IPv6 header, from the address the socket is bound to.
            (IpAddr::V6(_), IpAddr::V6(dst)) => {
                let to = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: 0,
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr {
                        s6_addr: dst.octets(),
                    },
                    sin6_scope_id: self.ifindex,
                };
                self.send_to(payload, &to)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "source and destination of different families",
            )),
        }
    }

    fn send_to<A>(&self, bytes: &[u8], to: &A) -> io::Result<()> {
        // SAFETY: the buffer and the socket address live across the call; lengths are theirs.
        let rc = unsafe {
            libc::sendto(
                self.fd.get_ref().as_raw_fd(),
                bytes.as_ptr() as *const libc::c_void,
                bytes.len(),
                0,
                to as *const A as *const libc::sockaddr,
                size_of::<A>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Binds the IPv6 socket to its source address, so the kernel sends from the address the
    /// checksum was computed with.
    pub fn bind_v6(&self, src: Ipv6Addr) -> io::Result<()> {
        let addr = libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as libc::sa_family_t,
            sin6_port: 0,
            sin6_flowinfo: 0,
            sin6_addr: libc::in6_addr {
                s6_addr: src.octets(),
            },
            sin6_scope_id: self.ifindex,
        };
        // SAFETY: a valid sockaddr_in6 and its length.
        check(unsafe {
            libc::bind(
                self.fd.get_ref().as_raw_fd(),
                &addr as *const _ as *const libc::sockaddr,
                size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// Waits until a packet can be read.
    pub async fn readable(&self) -> io::Result<()> {
        let mut guard = self.fd.readable().await?;
        guard.clear_ready();
        Ok(())
    }

    /// One received VRRP message (copied into `buf`) and what the IP layer said of it, or None
    /// when nothing is waiting. An IPv4 header that does not parse is an `Err` of the reason.
    pub fn try_recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<Option<Message<'a>>> {
        if self.v6 {
            return self.try_recv_v6(buf);
        }
        // SAFETY: buf is writable for its length.
        let n = unsafe {
            libc::recv(
                self.fd.get_ref().as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(e)
            };
        }
        Ok(Some(lb_vrrp::packet::parse_ipv4(&buf[..n as usize])))
    }

    fn try_recv_v6<'a>(&self, buf: &'a mut [u8]) -> io::Result<Option<Message<'a>>> {
        // SAFETY: zeroed plain C structs.
        let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: zeroed msghdr, filled in below with pointers that outlive recvmsg.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = &mut from as *mut _ as *mut libc::c_void;
        msg.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = size_of::<[u64; 16]>();
        // SAFETY: msg describes valid buffers.
        let n = unsafe { libc::recvmsg(self.fd.get_ref().as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(e)
            };
        }
        let src = Ipv6Addr::from(from.sin6_addr.s6_addr);
        let mut dst = None;
        let mut hop_limit = None;
        // SAFETY: walking the control messages the kernel wrote, with the libc macros.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let data = libc::CMSG_DATA(cmsg);
                match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                    (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                        hop_limit = Some((data as *const libc::c_int).read_unaligned() as u8);
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                        let info = (data as *const libc::in6_pktinfo).read_unaligned();
                        dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                    }
                    _ => {}
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        let Some(dst) = dst else {
            return Ok(Some(Err(lb_vrrp::DropReason::BadIpHeader)));
        };
        let mut meta = RxMeta::new(src.into(), dst.into());
        meta.ttl = hop_limit;
        Ok(Some(Ok((meta, &buf[..n as usize]))))
    }
}

/// Sends whole Ethernet frames out of one interface (gratuitous ARP, unsolicited NA).
pub struct FrameSocket {
    fd: OwnedFd,
    ifindex: u32,
}

impl FrameSocket {
    pub fn open(ifindex: u32) -> io::Result<Self> {
        // SAFETY: plain socket(2).
        let fd = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                0, // send only: receive nothing
            )
        })?;
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, ifindex })
    }

    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: zeroed sockaddr_ll, then filled in.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = self.ifindex as i32;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: frame and address outlive the call.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
                &to as *const _ as *const libc::sockaddr,
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

//! What xlb asks the kernel over rtnetlink: interfaces, routes and neighbours.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};

use anyhow::{Context as _, Result, anyhow, bail};
use futures::TryStreamExt as _;
use rtnetlink::{
    Handle, RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        link::LinkAttribute,
        neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
        route::{RouteAddress, RouteAttribute},
    },
};

/// A network interface as the data plane needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
}

/// Where frames for a backend go: out of `ifindex`, to `mac`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// A connection to the kernel's routing socket.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens the socket; its I/O runs as a task on the current tokio runtime.
    pub fn connect() -> Result<Self> {
        let (connection, handle, _) =
            rtnetlink::new_connection().context("opening an rtnetlink socket")?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// The rtnetlink handle, for requests this module has no helper for (routes, rules).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    async fn link_named(&self, name: &str) -> Result<rtnetlink::packet_route::link::LinkMessage> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        links
            .try_next()
            .await
            .with_context(|| format!("no interface {name}"))?
            .ok_or_else(|| anyhow!("no interface {name}"))
    }

    pub async fn interface(&self, name: &str) -> Result<Interface> {
        let link = self.link_named(name).await?;
        self.interface_from(link.header.index, &link.attributes)
    }

    /// Whether the interface is up with a carrier (IFF_UP and IFF_LOWER_UP).
    pub async fn link_up(&self, name: &str) -> Result<bool> {
        use rtnetlink::packet_route::link::LinkFlags;
        let flags = self.link_named(name).await?.header.flags;
        Ok(flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp))
    }

    /// Every address of every interface: (ifindex, address, prefix length).
    pub async fn addresses(&self) -> Result<Vec<(u32, IpAddr, u8)>> {
        use rtnetlink::packet_route::address::AddressAttribute;
        let mut out = Vec::new();
        let mut addrs = self.handle.address().get().execute();
        while let Some(msg) = addrs.try_next().await.context("listing addresses")? {
            for attr in &msg.attributes {
                if let AddressAttribute::Address(ip) = attr {
                    out.push((msg.header.index, *ip, msg.header.prefix_len));
                }
            }
        }
        Ok(out)
    }

    /// The first address of a family on an interface: a VRRP instance's source address when
    /// the config names none.
    pub async fn first_address(&self, ifindex: u32, v6: bool) -> Result<Option<IpAddr>> {
        use rtnetlink::packet_route::address::AddressAttribute;
        let mut addrs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute();
        while let Some(msg) = addrs.try_next().await.context("listing addresses")? {
            for attr in &msg.attributes {
                if let AddressAttribute::Address(ip) = attr {
                    let link_local = match ip {
                        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
                        IpAddr::V4(_) => false,
                    };
                    // IPv6 VRRP speaks from the link-local address (RFC 5798 5.1.2.1).
                    if ip.is_ipv6() == v6 && (!v6 || link_local) {
                        return Ok(Some(*ip));
                    }
                }
            }
        }
        Ok(None)
    }

    /// `ip addr add ADDR/PREFIX dev IFINDEX [label LABEL]`; already there is fine.
    pub async fn add_address(
        &self,
        ifindex: u32,
        ip: IpAddr,
        prefix_len: u8,
        label: Option<&str>,
    ) -> Result<()> {
        use rtnetlink::packet_route::address::AddressAttribute;
        let mut req = self.handle.address().add(ifindex, ip, prefix_len).replace();
        if ip.is_ipv6() {
            // No duplicate address detection, as keepalived: a VIP is tentative (ignored in
            // neighbour discovery) for a second otherwise, and during a handover the old master
            // still holds it, answers the probe, and leaves it "dadfailed" for good.
            use rtnetlink::packet_route::address::{
                AddressAttribute, AddressFlags, AddressHeaderFlags,
            };
            let msg = req.message_mut();
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        if let Some(label) = label {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Label(label.to_string()));
        }
        req.execute()
            .await
            .with_context(|| format!("adding {ip}/{prefix_len} to ifindex {ifindex}"))
    }

    /// `ip addr del ADDR/PREFIX dev IFINDEX`; already gone is fine.
    pub async fn remove_address(&self, ifindex: u32, ip: IpAddr, prefix_len: u8) -> Result<()> {
        let msg = match ip {
            IpAddr::V4(a) => rtnetlink::AddressMessageBuilder::<Ipv4Addr>::new()
                .index(ifindex)
                .address(a, prefix_len)
                .build(),
            IpAddr::V6(a) => rtnetlink::AddressMessageBuilder::<Ipv6Addr>::new()
                .index(ifindex)
                .address(a, prefix_len)
                .build(),
        };
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            // EADDRNOTAVAIL: it was not there.
            Err(rtnetlink::Error::NetlinkError(e))
                if e.code.map(|c| c.get()) == Some(-libc::EADDRNOTAVAIL) =>
            {
                Ok(())
            }
            Err(e) => {
                Err(e).with_context(|| format!("removing {ip}/{prefix_len} from ifindex {ifindex}"))
            }
        }
    }

    pub async fn interface_by_index(&self, index: u32) -> Result<Interface> {
        let mut links = self.handle.link().get().match_index(index).execute();
        let link = links
            .try_next()
            .await
            .with_context(|| format!("no interface with index {index}"))?
            .ok_or_else(|| anyhow!("no interface with index {index}"))?;
        self.interface_from(index, &link.attributes)
    }

    fn interface_from(&self, index: u32, attributes: &[LinkAttribute]) -> Result<Interface> {
        let mut name = String::new();
        let mut mac = None;
        for attr in attributes {
            match attr {
                LinkAttribute::IfName(n) => name = n.clone(),
                LinkAttribute::Address(a) if a.len() == 6 => {
                    mac = Some([a[0], a[1], a[2], a[3], a[4], a[5]])
                }
                _ => {}
            }
        }
        let mac = mac.ok_or_else(|| anyhow!("interface {name} has no Ethernet address"))?;
        Ok(Interface { name, index, mac })
    }

    /// `ip link set dev INDEX up`.
    pub async fn set_link_up(&self, index: u32) -> Result<()> {
        let message = rtnetlink::LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .with_context(|| format!("setting ifindex {index} up"))
    }

    /// `ip route replace ADDR/32 (or /128) dev IFINDEX table TABLE proto PROTOCOL scope link`:
    /// a host route whose only next hop is the interface.
    pub async fn replace_host_route(
        &self,
        dst: IpAddr,
        ifindex: u32,
        table: u32,
        protocol: u8,
    ) -> Result<()> {
        let message = host_route(dst, ifindex, table, protocol)?;
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .with_context(|| format!("adding the route to {dst} in table {table}"))
    }

    /// Removes what [`Self::replace_host_route`] added; already gone is fine.
    pub async fn remove_host_route(
        &self,
        dst: IpAddr,
        ifindex: u32,
        table: u32,
        protocol: u8,
    ) -> Result<()> {
        let message = host_route(dst, ifindex, table, protocol)?;
        match self.handle.route().del(message).execute().await {
            Ok(()) => Ok(()),
            // ESRCH: no such route (the device went, or someone removed it).
            Err(rtnetlink::Error::NetlinkError(e))
                if matches!(e.code.map(|c| -c.get()), Some(libc::ESRCH | libc::ENODEV)) =>
            {
                Ok(())
            }
            Err(e) => {
                Err(e).with_context(|| format!("removing the route to {dst} from table {table}"))
            }
        }
    }

    /// The destinations of the routes through `ifindex` in `table`, both families.
    pub async fn routes_via(&self, ifindex: u32, table: u32) -> Result<Vec<IpAddr>> {
        let dumps = [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ];
        let mut found = Vec::new();
        for message in dumps {
            let mut routes = self.handle.route().get(message).execute();
            while let Some(route) = routes
                .try_next()
                .await
                .with_context(|| format!("listing the routes of table {table}"))?
            {
                let mut in_table = u32::from(route.header.table) == table;
                let (mut oif, mut dst) = (None, None);
                for attr in &route.attributes {
                    match attr {
                        RouteAttribute::Table(t) => in_table = *t == table,
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        RouteAttribute::Destination(RouteAddress::Inet(a)) => {
                            dst = Some(IpAddr::V4(*a))
                        }
                        RouteAttribute::Destination(RouteAddress::Inet6(a)) => {
                            dst = Some(IpAddr::V6(*a))
                        }
                        _ => {}
                    }
                }
                if in_table
                    && oif == Some(ifindex)
                    && let Some(dst) = dst
                {
                    found.push(dst);
                }
            }
        }
        Ok(found)
    }

    /// The interface the kernel routes `dst` out of. A backend in Direct Routing must be on a
    /// directly connected network: a route through a gateway is an error.
    pub async fn route_interface(&self, dst: IpAddr) -> Result<u32> {
        let prefix = if dst.is_ipv4() { 32 } else { 128 };
        let message = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst, prefix)
            .map_err(|e| anyhow!("route query for {dst}: {e:?}"))?
            .build();
        let mut routes = self.handle.route().get(message).execute();
        let route = routes
            .try_next()
            .await
            .with_context(|| format!("no route to backend {dst}"))?
            .ok_or_else(|| anyhow!("no route to backend {dst}"))?;
        let mut oif = None;
        for attr in &route.attributes {
            match attr {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(RouteAddress::Inet(_) | RouteAddress::Inet6(_)) => {
                    bail!(
                        "backend {dst} is reached through a gateway; Direct Routing needs it on a connected network"
                    )
                }
                _ => {}
            }
        }
        oif.ok_or_else(|| anyhow!("the route to backend {dst} names no interface"))
    }

    /// The backend's MAC from the neighbour table, if the kernel knows it.
    /// The kernel's neighbour entry for `ip` on `ifindex`: its MAC, and whether the kernel
    /// still trusts it (a STALE entry may name a MAC the host no longer has).
    pub async fn neighbour(&self, ifindex: u32, ip: IpAddr) -> Result<Option<([u8; 6], bool)>> {
        let family = if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let mut entries = self
            .handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute();
        while let Some(entry) = entries.try_next().await.context("dumping neighbours")? {
            if entry.header.ifindex != ifindex
                || matches!(
                    entry.header.state,
                    NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
                )
            {
                continue;
            }
            let mut dst = None;
            let mut lladdr = None;
            for attr in &entry.attributes {
                match attr {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                        dst = Some(IpAddr::V4(*a))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                        dst = Some(IpAddr::V6(*a))
                    }
                    NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                        lladdr = Some([l[0], l[1], l[2], l[3], l[4], l[5]])
                    }
                    _ => {}
                }
            }
            if dst == Some(ip) {
                let fresh = !matches!(
                    entry.header.state,
                    NeighbourState::Stale | NeighbourState::Delay | NeighbourState::Probe
                );
                return Ok(lladdr.map(|mac| (mac, fresh)));
            }
        }
        Ok(None)
    }

    /// Resolves a backend: its route, then its neighbour entry. When the kernel has no entry yet
    /// a datagram to the discard port makes it send an ARP request (or neighbour solicitation);
    /// the caller asks again later. A director in DR mode never talks to its backends itself, so
    /// an entry goes STALE and would keep an old MAC forever: the same datagram makes the kernel
    /// confirm it (and relearn it, if the backend's MAC changed).
    pub async fn resolve(&self, ip: IpAddr) -> Result<Option<Neighbour>> {
        let ifindex = self.route_interface(ip).await?;
        match self.neighbour(ifindex, ip).await? {
            Some((mac, fresh)) => {
                if !fresh {
                    probe(ip);
                }
                Ok(Some(Neighbour { ifindex, mac }))
            }
            None => {
                probe(ip);
                Ok(None)
            }
        }
    }
}

fn probe(ip: IpAddr) {
    let bind: IpAddr = match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    if let Ok(socket) = UdpSocket::bind((bind, 0)) {
        // Errors (no route yet, ICMP unreachable) change nothing: the next resolve asks again.
        let _ = socket.send_to(&[], (ip, 9));
    }
}

fn host_route(
    dst: IpAddr,
    ifindex: u32,
    table: u32,
    protocol: u8,
) -> Result<rtnetlink::packet_route::route::RouteMessage> {
    use rtnetlink::packet_route::route::{RouteProtocol, RouteScope};
    let prefix = if dst.is_ipv4() { 32 } else { 128 };
    Ok(RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst, prefix)
        .map_err(|e| anyhow!("route to {dst}: {e:?}"))?
        .output_interface(ifindex)
        .table_id(table)
        .protocol(RouteProtocol::from(protocol))
        .scope(RouteScope::Link)
        .build())
}

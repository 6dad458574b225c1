//! Where the data plane places a new connection, computed in userspace with the same code: the
//! weighted Maglev table of lb-common and the flow hash with xlb's default seed. A SYN is always
//! placed this way; the flow table then keeps the connection where its SYN went.

use std::net::Ipv4Addr;

use lb_common::{DEFAULT_MAGLEV_TABLE_SIZE, PROTO_TCP, hash::Flow};
use lb_userspace::{cli::run::DEFAULT_HASH_SEED, service::addr_words, tables::ServiceTable};

/// One VIP's Maglev table over a set of real servers.
pub struct Placement {
    vip: Ipv4Addr,
    vip_port: u16,
    members: Vec<Ipv4Addr>,
    table: ServiceTable,
}

impl Placement {
    /// `members`: (real server address, port, weight), as the config lists them.
    pub fn new(vip: Ipv4Addr, vip_port: u16, members: &[(Ipv4Addr, u16, u32)]) -> Self {
        let live: Vec<_> = members
            .iter()
            .map(|(ip, port, weight)| ((*ip).into(), *port, *weight))
            .collect();
        Self {
            vip,
            vip_port,
            members: members.iter().map(|m| m.0).collect(),
            table: ServiceTable::new(&live, DEFAULT_MAGLEV_TABLE_SIZE).expect("a valid table"),
        }
    }

    /// The real server a SYN from `client`:`client_port` to the VIP goes to (`None`: no backend).
    pub fn backend(&self, client: Ipv4Addr, client_port: u16) -> Option<Ipv4Addr> {
        let flow = Flow {
            src: addr_words(client.into()),
            dst: addr_words(self.vip.into()),
            src_port: client_port.to_be(),
            dst_port: self.vip_port.to_be(),
            proto: PROTO_TCP,
        };
        let member = self.table.place(flow.hash(DEFAULT_HASH_SEED, false))?;
        self.members.get(member).copied()
    }
}

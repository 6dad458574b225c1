//! Test support for xlb: packets built byte by byte, labs of network namespaces, and where the
//! data plane places a connection.

pub mod bgp_lab;
pub mod edge;
pub mod ha_lab;
pub mod harness;
pub mod lab;
pub mod packet;
pub mod placement;

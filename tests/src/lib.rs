//! Test support for xlb: packets built byte by byte, and labs of network namespaces.

pub mod lab;
pub mod packet;

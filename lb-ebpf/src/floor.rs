//! Helper programs. `xdp_floor` is the benchmark floor: the least an XDP forwarder can do
//! (bounds-check Ethernet, swap the MACs, XDP_TX); `cargo xtask bench` reports xlb's cost per
//! packet as a ratio to it. `xdp_pass` goes on the far end of a veth in test labs: a veth drops
//! frames sent to it by XDP_TX unless its peer runs an XDP program.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action::{XDP_PASS, XDP_TX},
    macros::xdp,
    programs::XdpContext,
};

#[xdp]
pub fn xdp_floor(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 14 > ctx.data_end() {
        return XDP_PASS;
    }
    let eth = start as *mut [u8; 6];
    unsafe {
        let dst = *eth;
        *eth = *eth.add(1);
        *eth.add(1) = dst;
    }
    XDP_TX
}

#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

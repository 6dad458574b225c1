//! Helper programs. `xdp_floor` is the benchmark floor: the least an XDP forwarder can do
//! (bounds-check Ethernet, swap the MACs, XDP_TX); `cargo xtask bench` reports xlb's cost per
//! packet as a ratio to it. `xdp_floor_redirect` is the least a forwarder that sends frames out
//! of another interface can do: the same, but XDP_REDIRECT through a devmap, whose helper call
//! the TX floor does not pay. `xdp_pass` goes on the far end of a veth in test labs: a veth
//! drops frames sent to it by XDP_TX unless its peer runs an XDP program.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action::{XDP_ABORTED, XDP_PASS, XDP_TX},
    macros::{map, xdp},
    maps::DevMap,
    programs::XdpContext,
};

/// The redirect floor's one way out (entry 0: the bench puts an interface there).
#[map]
static FLOOR_PORT: DevMap = DevMap::with_max_entries(1, 0);

/// Swaps the frame's MACs; false when it is shorter than an Ethernet header.
#[inline(always)]
fn swap_macs(ctx: &XdpContext) -> bool {
    let start = ctx.data();
    if start + 14 > ctx.data_end() {
        return false;
    }
    let eth = start as *mut [u8; 6];
    unsafe {
        let dst = *eth;
        *eth = *eth.add(1);
        *eth.add(1) = dst;
    }
    true
}

#[xdp]
pub fn xdp_floor(ctx: XdpContext) -> u32 {
    if !swap_macs(&ctx) {
        return XDP_PASS;
    }
    XDP_TX
}

#[xdp]
pub fn xdp_floor_redirect(ctx: XdpContext) -> u32 {
    if !swap_macs(&ctx) {
        return XDP_PASS;
    }
    FLOOR_PORT.redirect(0, 0).unwrap_or(XDP_ABORTED)
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

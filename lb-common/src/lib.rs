//! Types and algorithms shared by the XDP program, the control plane and the tests.
//!
//! Everything here is `no_std` and allocation-free so that the kernel side, userspace and the
//! tests compute byte-identical answers: the map layouts ([`maps`]), the flow hash ([`hash`]) and
//! the weighted Maglev table builder ([`maglev`]).
#![no_std]

pub mod hash;
// Only userspace builds tables. The builder's 128-bit products and signed division have no eBPF
// instructions; bpf-linker drops unused code before generating eBPF, but keeping the builder out
// of the eBPF build does not depend on that.
#[cfg(not(target_arch = "bpf"))]
pub mod maglev;
pub mod maps;

pub use maps::*;

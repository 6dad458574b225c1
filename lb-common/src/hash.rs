//! The seeded flow hash. The XDP program and userspace call the same functions on the same
//! words, so `cargo test` can predict the kernel's choice of backend for any flow.
//!
//! Words are the packet's bytes read as native-endian `u32`s (what a load from the packet gives
//! the program); a port pair is one word, source port in the low half. Each word is folded in
//! with an xor and a multiply by an odd constant, then MurmurHash3's finaliser spreads every bit
//! over all the others: full avalanche, which Maglev needs because it takes the hash's high bits
//! as the table entry. A fold is two BPF instructions and one multiply's latency; a MurmurHash3
//! block step (the Maglev builder's backend hash keeps it) is about a dozen, with two
//! rotates BPF has no instruction for: it made a tenth of a SYN's cost in the data plane.
//!
//! Every director of a VIP must hash alike (the README says so): this hash replaced
//! MurmurHash3 for flows, so directors of one VIP run xlb versions on the same side of that
//! change.

use crate::maps::Addr;

/// 2^32 divided by the golden ratio, made odd: the multiply of Fibonacci hashing.
const GOLDEN: u32 = 0x9e37_79b1;

/// MurmurHash3's `fmix32`: every input bit flips each output bit with probability about 1/2.
#[inline(always)]
pub(crate) const fn avalanche(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Folds one word into the flow hash. For a given word it is a bijection of the state, so
/// flows that differ in one word never collide before the finaliser (nor after it).
#[inline(always)]
const fn fold(h: u32, w: u32) -> u32 {
    (h ^ w).wrapping_mul(GOLDEN)
}

/// Source and destination port (each in network order, as read from the packet) as one word.
#[inline(always)]
pub const fn ports_word(src_port: u16, dst_port: u16) -> u32 {
    src_port as u32 | ((dst_port as u32) << 16)
}

/// Hash of an IPv4 5-tuple. The protocol shares the ports' word (xored into the source port's
/// bits): a TCP flow can only collide with a UDP flow, of another service, that shares its
/// table.
#[inline(always)]
pub const fn flow_hash_v4(seed: u32, src: u32, dst: u32, ports: u32, proto: u8) -> u32 {
    let h = fold(seed, src);
    let h = fold(h, dst);
    avalanche(fold(h, ports ^ proto as u32))
}

/// Hash of an IPv6 5-tuple. Each address is first folded to two words (xor of its halves):
/// fewer steps for the data plane, and the seeded hash after the fold still spreads flows
/// evenly.
#[inline(always)]
pub const fn flow_hash_v6(seed: u32, src: &Addr, dst: &Addr, ports: u32, proto: u8) -> u32 {
    let mut h = fold(seed, src[0] ^ src[2]);
    h = fold(h, src[1] ^ src[3]);
    h = fold(h, dst[0] ^ dst[2]);
    h = fold(h, dst[1] ^ dst[3]);
    avalanche(fold(h, ports ^ proto as u32))
}

/// Hash of the client's IPv4 address only: every connection of a client goes to one backend.
#[inline(always)]
pub const fn source_hash_v4(seed: u32, src: u32) -> u32 {
    avalanche(fold(seed, src))
}

/// Hash of the client's IPv6 address only, folded as in [`flow_hash_v6`].
#[inline(always)]
pub const fn source_hash_v6(seed: u32, src: &Addr) -> u32 {
    avalanche(fold(fold(seed, src[0] ^ src[2]), src[1] ^ src[3]))
}

/// A flow as the director sees it (client to VIP), for callers that hold both families alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: Addr,
    pub dst: Addr,
    /// Network byte order.
    pub src_port: u16,
    /// Network byte order.
    pub dst_port: u16,
    pub proto: u8,
}

impl Flow {
    /// The hash the XDP program computes for this flow.
    pub fn hash(&self, seed: u32, source_only: bool) -> u32 {
        let v4 = crate::maps::is_v4_mapped(&self.src) && crate::maps::is_v4_mapped(&self.dst);
        match (v4, source_only) {
            (true, true) => source_hash_v4(seed, self.src[3]),
            (false, true) => source_hash_v6(seed, &self.src),
            (true, false) => flow_hash_v4(
                seed,
                self.src[3],
                self.dst[3],
                ports_word(self.src_port, self.dst_port),
                self.proto,
            ),
            (false, false) => flow_hash_v6(
                seed,
                &self.src,
                &self.dst,
                ports_word(self.src_port, self.dst_port),
                self.proto,
            ),
        }
    }
}

/// The hash as an index into a Maglev table of `size` entries: the high word of `hash * size`
/// (Lemire's multiply-shift range reduction), which maps `2^32 / size` or one more hashes to each
/// entry, as `hash % size` does, from the hash's high bits rather than its low ones. It needs no
/// division, and the result is below `size` by construction: the eBPF verifier follows the bound
/// through the multiply and the shift, where it cannot follow the multiply-and-shift LLVM turns
/// `% size` into. The XDP program and userspace both index tables through this function.
#[inline(always)]
pub const fn slot_in(hash: u32, size: u32) -> u32 {
    ((hash as u64 * size as u64) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::MAGLEV_TABLE_SIZES;

    /// The table size the spread tests were written for, beside the supported ones.
    const MAGLEV_TABLE_SIZE: usize = 65537;

    #[test]
    fn seed_and_every_field_change_the_hash() {
        let base = flow_hash_v4(1, 0x0a00_0001, 0x0a00_0002, ports_word(1000, 80), 6);
        assert_ne!(
            base,
            flow_hash_v4(2, 0x0a00_0001, 0x0a00_0002, ports_word(1000, 80), 6)
        );
        assert_ne!(
            base,
            flow_hash_v4(1, 0x0a00_0003, 0x0a00_0002, ports_word(1000, 80), 6)
        );
        assert_ne!(
            base,
            flow_hash_v4(1, 0x0a00_0001, 0x0a00_0003, ports_word(1000, 80), 6)
        );
        assert_ne!(
            base,
            flow_hash_v4(1, 0x0a00_0001, 0x0a00_0002, ports_word(1001, 80), 6)
        );
        assert_ne!(
            base,
            flow_hash_v4(1, 0x0a00_0001, 0x0a00_0002, ports_word(1000, 81), 6)
        );
        assert_ne!(
            base,
            flow_hash_v4(1, 0x0a00_0001, 0x0a00_0002, ports_word(1000, 80), 17)
        );
    }

    /// 200k hashes over tables of every supported size, in 16 bands of entries and in 16
    /// classes of entry mod 16: none starved or flooded.
    fn assert_spread(hashes: impl Iterator<Item = u32> + Clone) {
        let sizes = MAGLEV_TABLE_SIZES.map(|s| s as usize);
        for size in sizes.into_iter().chain([MAGLEV_TABLE_SIZE]) {
            let (mut bands, mut classes) = ([0u32; 16], [0u32; 16]);
            for h in hashes.clone() {
                let slot = slot_in(h, size as u32) as usize;
                assert!(slot < size);
                bands[slot * 16 / size] += 1;
                classes[slot % 16] += 1;
            }
            for b in bands.iter().chain(&classes) {
                assert!(
                    (11_500..13_500).contains(b),
                    "size {size}: {bands:?} {classes:?}"
                );
            }
        }
    }

    #[test]
    fn slots_stay_in_range() {
        let sizes = MAGLEV_TABLE_SIZES.map(|s| s as usize);
        for size in sizes.into_iter().chain([1, 2, MAGLEV_TABLE_SIZE]) {
            let size = size as u32;
            for h in [0, 1, 0x7fff_ffff, 0x8000_0000, u32::MAX - 1, u32::MAX] {
                assert!(slot_in(h, size) < size, "{h} in {size}");
            }
            assert_eq!(slot_in(0, size), 0);
            assert_eq!(slot_in(u32::MAX, size), size - 1);
        }
    }

    #[test]
    fn every_slot_gets_its_share_of_hashes() {
        // Each entry of a small table covers 2^32 / size hashes, give or take one.
        for size in [251u32, 509, 1021] {
            let mut firsts = (0..size).map(|slot| {
                // The smallest hash that lands in `slot`.
                (u64::from(slot) << 32).div_ceil(u64::from(size))
            });
            let mut prev = firsts.next().unwrap();
            assert_eq!(prev, 0);
            for first in firsts.chain([1 << 32]) {
                let span = first - prev;
                assert!(span.abs_diff((1 << 32) / u64::from(size)) <= 1, "{size}");
                assert_eq!(
                    slot_in((first - 1) as u32, size),
                    slot_in(prev as u32, size)
                );
                prev = first;
            }
        }
    }

    #[test]
    fn ipv6_flows_spread_evenly() {
        // Clients in one /64 differing only in the interface id, and in many /48s.
        let vip = [0x0db8_0120, 0, 0, 0x0001_0000];
        assert_spread((0..200_000u32).map(|i| {
            let client = [
                0x0db8_0120,
                i >> 8,
                0x0000_0001,
                i.wrapping_mul(0x9e37_79b9),
            ];
            flow_hash_v6(7, &client, &vip, ports_word(40000, 80), 6)
        }));
    }

    #[test]
    fn clients_spread_evenly() {
        // Sequential client addresses (the varying bytes are a native word's high bits), one
        // port; and the same clients hashed on their address alone.
        let client = |i: u32| u32::from_ne_bytes([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        assert_spread(
            (0..200_000u32)
                .map(|i| flow_hash_v4(7, client(i), 0x6400_000a, ports_word(40000, 80), 6)),
        );
        assert_spread((0..200_000u32).map(|i| source_hash_v4(7, client(i))));
    }

    #[test]
    fn slots_spread_evenly() {
        // Flows from one client differing only in the source port.
        assert_spread(
            (0..200_000u32).map(|port| flow_hash_v4(7, 0x0100_000a, 0x6400_000a, port, 6)),
        );
    }
}

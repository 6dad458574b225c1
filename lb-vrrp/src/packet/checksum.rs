//! The Internet checksum (RFC 1071) and the pseudo-headers VRRPv3 and ICMPv6 put under it.

use std::net::IpAddr;

/// Running one's-complement sum over 16-bit big-endian words.
///
/// Kept unfolded in a `u64` so that summing a few kilobytes can never overflow; it is folded
/// only when the final value is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    sum: u64,
}

impl Checksum {
    /// An empty sum.
    pub const fn new() -> Self {
        Self { sum: 0 }
    }

    /// Adds `data` as a sequence of big-endian words; an odd final byte is padded with zero.
    ///
    /// Callers must only pass odd-length slices last: an odd slice in the middle would shift the
    /// word alignment of everything after it.
    pub fn add_bytes(&mut self, data: &[u8]) -> &mut Self {
        let mut words = data.chunks_exact(2);
        for word in &mut words {
            self.sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
        }
        if let [last] = words.remainder() {
            self.sum += u64::from(u16::from_be_bytes([*last, 0]));
        }
        self
    }

    /// Adds one 16-bit word.
    pub fn add_u16(&mut self, word: u16) -> &mut Self {
        self.sum += u64::from(word);
        self
    }

    /// Adds a 32-bit value as two words.
    pub fn add_u32(&mut self, value: u32) -> &mut Self {
        self.sum += u64::from(value >> 16) + u64::from(value & 0xffff);
        self
    }

    /// Adds the pseudo-header of RFC 768 (IPv4) or RFC 8200 section 8.1 (IPv6) for an upper-layer
    /// message of `length` bytes carried with protocol / next header `protocol`.
    ///
    /// Both families reduce to the same words: addresses, then the length and the protocol
    /// (the zero padding adds nothing to the sum).
    pub fn add_pseudo_header(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        length: u32,
    ) -> &mut Self {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                self.add_bytes(&s.octets()).add_bytes(&d.octets());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                self.add_bytes(&s.octets()).add_bytes(&d.octets());
            }
            // Mixed families have no defined pseudo-header; callers reject them before summing.
            (s, d) => {
                add_any(self, s);
                add_any(self, d);
            }
        }
        self.add_u32(length).add_u16(u16::from(protocol))
    }

    /// The folded, complemented checksum to put in a header.
    ///
    /// Summing a message that already carries a correct checksum yields 0 here.
    pub fn finish(&self) -> u16 {
        let mut sum = self.sum;
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        // `sum` fits in 16 bits after folding.
        !(sum as u16)
    }
}

fn add_any(sum: &mut Checksum, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => sum.add_bytes(&a.octets()),
        IpAddr::V6(a) => sum.add_bytes(&a.octets()),
    };
}

/// The Internet checksum of `data` alone.
pub fn internet_checksum(data: &[u8]) -> u16 {
    Checksum::new().add_bytes(data).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum (folded) to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(internet_checksum(&[0x12]), !0x1200);
    }

    #[test]
    fn verifying_a_checksummed_message_gives_zero() {
        let mut msg = vec![
            0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x00, 0x00, 0x40, 0x11, 0, 0,
        ];
        let c = internet_checksum(&msg);
        msg[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(internet_checksum(&msg), 0);
    }
}

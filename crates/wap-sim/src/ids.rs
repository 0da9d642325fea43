//! Deterministic pseudo-random helpers: a stateless mixer (so that generated record *i* is a pure function of
//! the seed and *i*) and seeded GUIDs.

/// SplitMix64 finaliser: a good 64-bit mixer.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A hash of a seed, a stream tag and an index.
pub(crate) fn hash3(seed: u64, stream: u64, i: u64) -> u64 {
    mix64(seed ^ mix64(stream.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ mix64(i)))
}

/// A uniform number in `[0, 1)` from a hash.
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A GUID (version 4 layout, lower case) from two 64-bit values.
pub(crate) fn guid(a: u64, b: u64) -> String {
    let a = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
    let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFFF,
        b >> 48,
        b & 0xFFFF_FFFF_FFFF
    )
}

/// A GUID from a seeded generator.
pub(crate) fn guid_from(rng: &mut fastrand::Rng) -> String {
    guid(rng.u64(..), rng.u64(..))
}

/// A short alphanumeric suffix like WAP's plan ids (`Silverq7k2d9w`).
pub(crate) fn id_suffix(rng: &mut fastrand::Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8).map(|_| ALPHABET[rng.usize(..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_have_the_v4_layout_and_differ() {
        let g = guid(1, 2);
        assert_eq!(g.len(), 36);
        assert_eq!(&g[14..15], "4");
        assert!(matches!(&g[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(guid(1, 2), guid(1, 3));
        assert_eq!(hash3(7, 1, 99), hash3(7, 1, 99));
        assert_ne!(hash3(7, 1, 99), hash3(8, 1, 99));
        let u = unit(u64::MAX);
        assert!((0.0..1.0).contains(&u));
    }
}

//! Random draws pinned to the ChaCha8 stream: every draw is built from `next_u64` alone
//! (no `rand` distribution whose algorithm may change between releases), so a seed gives
//! the same population on every machine and every version of `rand`. The only floating
//! point functions used are `ln`, `exp`, `sqrt` and `cos` (Box–Muller).

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

/// One independent stream of draws.
#[derive(Debug, Clone)]
pub struct Draw(ChaCha8Rng);

impl Draw {
    /// The `stream`-th independent stream of `seed` (one per generation step, so a
    /// change to one step leaves the others' draws as they were).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Self(rng)
    }

    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n (n ≥ 1; the modulo bias is below 2^-40 for any n used here).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.u64() % n as u64) as usize
    }

    /// Uniform in low..=high.
    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        debug_assert!(low <= high);
        low + (self.u64() % (high - low + 1) as u64) as i64
    }

    pub fn chance(&mut self, probability: f64) -> bool {
        self.unit() < probability
    }

    /// Standard normal (Box–Muller, one value per two uniforms).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: ln is finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `count` random bytes as lowercase hex.
    pub fn hex(&mut self, bytes: usize) -> String {
        let mut text = String::with_capacity(bytes * 2);
        for _ in 0..bytes.div_ceil(8) {
            text.push_str(&format!("{:016x}", self.u64()));
        }
        text.truncate(bytes * 2);
        text
    }

    /// A version-4 UUID from the stream.
    pub fn uuid(&mut self) -> Uuid {
        let high = self.u64().to_be_bytes();
        let low = self.u64().to_be_bytes();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&high);
        bytes[8..].copy_from_slice(&low);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// 1 / (1 + e^-x).
pub fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_independent() {
        let mut a = Draw::new(7, 1);
        let mut b = Draw::new(7, 1);
        let mut c = Draw::new(7, 2);
        let first: Vec<u64> = (0..4).map(|_| a.u64()).collect();
        assert_eq!(first, (0..4).map(|_| b.u64()).collect::<Vec<_>>());
        assert_ne!(first, (0..4).map(|_| c.u64()).collect::<Vec<_>>());
    }

    #[test]
    fn normal_draws_have_unit_variance() {
        let mut draw = Draw::new(1, 0);
        let values: Vec<f64> = (0..20_000).map(|_| draw.normal()).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((variance - 1.0).abs() < 0.05, "{variance}");
        let hash = draw.hex(32);
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(draw.uuid().get_version_num(), 4);
    }
}

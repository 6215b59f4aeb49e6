//! Small exact helpers: money in integer cents, UTC calendar arithmetic, and a
//! sampling layer over the raw generator.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Microseconds in a day.
pub(crate) const DAY_US: i64 = 86_400_000_000;

/// `12345` → `"123.45"`.
pub(crate) fn cents(c: i64) -> String {
    let sign = if c < 0 { "-" } else { "" };
    let a = c.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// Days since 1970-01-01 → (year, month, day); Howard Hinnant's `civil_from_days`.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since the epoch → `YYYY-MM-DD`.
pub(crate) fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Microseconds since the epoch, UTC → `YYYY-MM-DD HH:MM:SS.ffffff`.
pub(crate) fn format_datetime(us: i64) -> String {
    let days = us.div_euclid(DAY_US);
    let rem = us.rem_euclid(DAY_US);
    let secs = rem / 1_000_000;
    format!(
        "{} {:02}:{:02}:{:02}.{:06}",
        format_date(days),
        secs / 3_600,
        secs / 60 % 60,
        secs % 60,
        rem % 1_000_000
    )
}

/// SplitMix64: a stateless hash for values derived from an id (names, countries), so
/// they need not be stored.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seeded generator. Every draw goes through `next_u64` and the arithmetic here,
/// so the workload depends only on ChaCha8's output stream, never on how a `rand`
/// release happens to sample ranges.
pub(crate) struct Rng(ChaCha8Rng);

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rng(ChaCha8)")
    }
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in `0..n` (`n > 0`), unbiased (Lemire's multiply-and-reject).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = u128::from(self.0.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.0.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// Uniform index into a slice of length `n`.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A count around `mean` (±40 %, the fraction rounded up with its probability), so
    /// small means such as 0.3 a day still happen about that often.
    pub fn count(&mut self, mean: f64) -> u64 {
        if mean.is_nan() || mean <= 0.0 {
            return 0;
        }
        let m = mean * (0.6 + 0.8 * self.unit());
        let whole = m.floor();
        whole as u64 + u64::from(self.chance(m - whole))
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.index(xs.len())]
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.index(i + 1);
            xs.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_core::types::{days_from_civil, parse_date, parse_datetime, parse_decimal};

    #[test]
    fn money_text() {
        assert_eq!(cents(12_345), "123.45");
        assert_eq!(cents(5), "0.05");
        assert_eq!(cents(-1_050), "-10.50");
        assert_eq!(parse_decimal(&cents(987_654_321), 2).unwrap(), 987_654_321);
    }

    #[test]
    fn calendar_round_trips() {
        for days in [-800_000, -1, 0, 1, 11_017, 19_782, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(parse_date(&format_date(19_782)).unwrap(), 19_782);
        for us in [0, 1_500_000, 2_147_483_647_999_999, 1_717_171_717_171_717] {
            assert_eq!(parse_datetime(&format_datetime(us)).unwrap(), us);
        }
        assert_eq!(format_datetime(1_500_000), "1970-01-01 00:00:01.500000");
    }

    #[test]
    fn sampling_stays_in_range() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            let v = r.range(-3, 3);
            assert!((-3..=3).contains(&v));
            assert!(r.unit() < 1.0);
        }
        let n: u64 = (0..10_000).map(|_| r.count(0.3)).sum();
        assert!((2_500..3_500).contains(&n), "{n}");
    }
}

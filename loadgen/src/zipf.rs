//! Zipf-distributed ranks by rejection-inversion (Hörmann & Derflinger,
//! "Rejection-inversion to generate variates from monotone discrete
//! distributions", 1996), the method Apache Commons RNG and `rand_distr` use.
//!
//! Rank `k` in `1..=n` is drawn with probability proportional to `k^-s`. The
//! sampler inverts the integral `H` of the continuous hat `h(x) = x^-s` and
//! accepts the rounded point unless it falls in the sliver where the hat
//! overshoots the true mass; the acceptance rate is high for every `s > 0`,
//! so a draw costs a couple of `exp`/`ln` calls and no table of size `n`.
//!
//! ```
//! use loadgen::{rng::Rng, zipf::Zipf};
//! let zipf = Zipf::new(1000, 1.1).unwrap();
//! let rank = zipf.sample(&mut Rng::new(1, 0));
//! assert!((1..=1000).contains(&rank));
//! ```

use crate::rng::Rng;

#[derive(Debug, Clone)]
pub struct Zipf {
    n: u64,
    exponent: f64,
    /// `H(1.5) - 1`: the hat integral's upper end (the draw runs downwards).
    h_integral_x1: f64,
    /// `H(n + 0.5)`: the hat integral's lower end.
    h_integral_n: f64,
    /// Below this distance from the rounded rank, a draw is accepted without
    /// evaluating the hat: the squeeze.
    squeeze: f64,
}

impl Zipf {
    /// A sampler over ranks `1..=n` with exponent `exponent`.
    pub fn new(n: u64, exponent: f64) -> Result<Zipf, String> {
        if n == 0 {
            return Err("zipf needs at least one key".into());
        }
        if !(exponent.is_finite() && exponent > 0.0) {
            return Err(format!(
                "zipf's exponent must be a positive number, not {exponent} (use uniform:K for 0)"
            ));
        }
        let mut zipf = Zipf {
            n,
            exponent,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            squeeze: 0.0,
        };
        zipf.h_integral_x1 = zipf.h_integral(1.5) - 1.0;
        zipf.h_integral_n = zipf.h_integral(n as f64 + 0.5);
        zipf.squeeze = 2.0 - zipf.h_integral_inverse(zipf.h_integral(2.5) - zipf.h(2.0));
        Ok(zipf)
    }

    /// A rank in `1..=n`; rank 1 is the most frequent.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_integral_n + rng.next_f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            // Rounding to the nearest rank, clamped against float error at
            // the ends.
            let k = ((x + 0.5) as u64).clamp(1, self.n);
            let kf = k as f64;
            if kf - x <= self.squeeze || u >= self.h_integral(kf + 0.5) - self.h(kf) {
                return k;
            }
        }
    }

    /// `H(x) = (x^(1-s) - 1) / (1 - s)`, or `ln x` at `s = 1`, written so
    /// that it stays accurate as `s` approaches 1.
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        expm1_over_x((1.0 - self.exponent) * log_x) * log_x
    }

    /// `h(x) = x^-s`.
    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    /// The inverse of `H`.
    fn h_integral_inverse(&self, x: f64) -> f64 {
        // Float error can push the argument just past -1, where ln1p fails.
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (ln1p_over_x(t) * x).exp()
    }
}

/// `ln(1 + x) / x`, continuous at 0.
fn ln1p_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1) / x`, continuous at 0.
fn expm1_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draws `samples` ranks and returns Pearson's chi-square statistic
    /// against the exact Zipf probabilities.
    fn chi_square(n: u64, exponent: f64, samples: u64, seed: u64) -> f64 {
        let zipf = Zipf::new(n, exponent).unwrap();
        let mut rng = Rng::new(seed, 0);
        let mut counts = vec![0u64; n as usize];
        for _ in 0..samples {
            let k = zipf.sample(&mut rng);
            assert!((1..=n).contains(&k));
            counts[(k - 1) as usize] += 1;
        }
        let norm: f64 = (1..=n).map(|k| (k as f64).powf(-exponent)).sum();
        (1..=n)
            .map(|k| {
                let expected = samples as f64 * (k as f64).powf(-exponent) / norm;
                let observed = counts[(k - 1) as usize] as f64;
                (observed - expected).powi(2) / expected
            })
            .sum()
    }

    #[test]
    fn matches_the_exact_distribution() {
        // With 49 degrees of freedom the statistic has mean 49 and standard
        // deviation ~10; a correct sampler stays far below 120, while a
        // wrong exponent or an off-by-one rank lands in the thousands.
        for exponent in [0.5, 0.99, 1.0, 1.01, 1.2, 2.0] {
            let chi2 = chi_square(50, exponent, 200_000, 42);
            assert!(chi2 < 120.0, "exponent {exponent}: chi-square {chi2}");
        }
    }

    #[test]
    fn head_of_a_large_key_space_has_its_share() {
        // For n = 10,000 and s = 1, rank 1 holds 1/H(10,000) ≈ 10.2% of draws.
        let zipf = Zipf::new(10_000, 1.0).unwrap();
        let mut rng = Rng::new(9, 0);
        let draws = 100_000;
        let ones = (0..draws).filter(|_| zipf.sample(&mut rng) == 1).count();
        let share = ones as f64 / f64::from(draws);
        assert!((share - 0.1020).abs() < 0.005, "rank 1 share {share}");
    }

    #[test]
    fn one_key_is_always_rank_one() {
        let zipf = Zipf::new(1, 1.5).unwrap();
        let mut rng = Rng::new(2, 0);
        assert!((0..1000).all(|_| zipf.sample(&mut rng) == 1));
    }

    #[test]
    fn refuses_bad_parameters() {
        assert!(Zipf::new(0, 1.0).is_err());
        assert!(Zipf::new(10, 0.0).is_err());
        assert!(Zipf::new(10, -1.0).is_err());
        assert!(Zipf::new(10, f64::NAN).is_err());
        assert!(Zipf::new(10, f64::INFINITY).is_err());
    }
}

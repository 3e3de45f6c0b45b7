//! One figure over the runs: its median and min–max range ([`Spread`]).

/// Median and range of one figure over the runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// The spread of `xs` (NaN-free input assumed; empty → zeros, n = 0). The
/// median of an even count is the mean of the middle two.
pub fn spread(xs: &[f64]) -> Spread {
    if xs.is_empty() {
        return Spread {
            median: 0.0,
            min: 0.0,
            max: 0.0,
            n: 0,
        };
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Spread {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    }
}

impl Spread {
    /// `median` alone for one run, else `median (min–max)`.
    pub fn show(&self, decimals: usize) -> String {
        if self.n <= 1 {
            format!("{:.*}", decimals, self.median)
        } else {
            format!(
                "{:.*} ({:.*}–{:.*})",
                decimals, self.median, decimals, self.min, decimals, self.max
            )
        }
    }
}

//! A linear SVM with squared hinge loss and an L2 penalty, solved in the dual
//! by coordinate descent with shrinking: liblinear's `solve_l2r_l1l2_svc`
//! (Hsieh et al., ICML 2008), which is what sklearn's `LinearSVC` runs.
//!
//! The intercept is a constant feature of 1 that is regularised with the
//! weights, as liblinear (and so `LinearSVC(fit_intercept=True,
//! intercept_scaling=1)`) does it.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Hyper-parameters (defaults: the reference's `LinearSVC(max_iter=2000)`,
/// sklearn's `tol=1e-4`, class weight 1 for both classes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SvmConfig {
    /// Inverse regularisation strength `C`.
    pub c: f64,
    /// Multiplier of `C` for positive samples (the reference: 2).
    pub positive_weight: f64,
    /// Multiplier of `C` for negative samples (the reference: 1).
    pub negative_weight: f64,
    /// Stopping tolerance on the projected-gradient spread.
    pub tolerance: f64,
    /// Most passes over the data.
    pub max_iterations: usize,
    /// Seed of the coordinate order.
    pub seed: u64,
}

impl Default for SvmConfig {
    fn default() -> Self {
        Self {
            c: 1.0,
            positive_weight: 1.0,
            negative_weight: 1.0,
            tolerance: 1e-4,
            max_iterations: 2000,
            seed: 0,
        }
    }
}

/// A trained linear SVM: `score(x) = w · x + b`.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearSvm {
    /// Weights, one per feature.
    pub weights: Vec<f64>,
    /// Intercept.
    pub bias: f64,
    /// Passes the solver made.
    pub iterations: usize,
}

impl LinearSvm {
    /// Trains on the rows of `features` (`[n, dim]` row-major) with labels
    /// `positive[i]` (true = +1, false = −1).
    ///
    /// # Panics
    /// If `features.len() != positive.len() * dim`.
    pub fn fit(features: &[f32], dim: usize, positive: &[bool], config: &SvmConfig) -> Self {
        let n = positive.len();
        assert_eq!(features.len(), n * dim, "features are [n, dim]");
        let row = |i: usize| &features[i * dim..(i + 1) * dim];
        let sign = |i: usize| if positive[i] { 1.0 } else { -1.0 };
        // L2 loss: no upper bound on alpha, a diagonal term 1 / (2 C_i).
        let diagonal: Vec<f64> = (0..n)
            .map(|i| {
                let weight = if positive[i] {
                    config.positive_weight
                } else {
                    config.negative_weight
                };
                0.5 / (config.c * weight)
            })
            .collect();
        let qd: Vec<f64> = (0..n)
            .map(|i| diagonal[i] + dot(row(i), row(i)) + 1.0)
            .collect();
        let mut w = vec![0.0f64; dim];
        let mut b = 0.0f64;
        let mut alpha = vec![0.0f64; n];
        let mut index: Vec<usize> = (0..n).collect();
        let mut active = n;
        let mut rng = StdRng::seed_from_u64(config.seed);
        // With no upper bound on alpha only the lower side ever shrinks.
        let mut pg_max_old = f64::INFINITY;
        let mut iterations = 0;
        while iterations < config.max_iterations {
            let (mut pg_max, mut pg_min) = (f64::NEG_INFINITY, f64::INFINITY);
            index[..active].shuffle(&mut rng);
            let mut s = 0;
            while s < active {
                let i = index[s];
                let y = sign(i);
                let x = row(i);
                let g = y * (dot_f64(&w, x) + b) - 1.0 + alpha[i] * diagonal[i];
                let mut pg = 0.0;
                if alpha[i] == 0.0 {
                    if g > pg_max_old {
                        active -= 1;
                        index.swap(s, active);
                        continue;
                    } else if g < 0.0 {
                        pg = g;
                    }
                } else {
                    pg = g;
                }
                pg_max = pg_max.max(pg);
                pg_min = pg_min.min(pg);
                if pg.abs() > 1e-12 {
                    let old = alpha[i];
                    alpha[i] = (old - g / qd[i]).max(0.0);
                    let step = (alpha[i] - old) * y;
                    for (wj, &xj) in w.iter_mut().zip(x) {
                        *wj += step * f64::from(xj);
                    }
                    b += step;
                }
                s += 1;
            }
            iterations += 1;
            if pg_max - pg_min <= config.tolerance {
                if active == n {
                    break;
                }
                // Converged on the active set: check everything once more.
                active = n;
                pg_max_old = f64::INFINITY;
                continue;
            }
            pg_max_old = if pg_max <= 0.0 { f64::INFINITY } else { pg_max };
        }
        Self {
            weights: w,
            bias: b,
            iterations,
        }
    }

    /// `w · x + b` for each row of `features` (`[n, dim]`).
    pub fn decision_function(&self, features: &[f32]) -> Vec<f64> {
        features
            .chunks_exact(self.weights.len())
            .map(|x| dot_f64(&self.weights, x) + self.bias)
            .collect()
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

fn dot_f64(w: &[f64], x: &[f32]) -> f64 {
    w.iter().zip(x).map(|(&a, &b)| a * f64::from(b)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_two_clusters_and_converges() {
        // Two Gaussian-ish clusters on a line through the origin.
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for i in 0..40 {
            let t = (i % 10) as f32 * 0.05;
            let positive = i % 2 == 0;
            let centre = if positive { 1.0 } else { -1.0 };
            features.extend([centre + t, 0.5 * centre - t, t]);
            labels.push(positive);
        }
        let config = SvmConfig {
            c: 1.0,
            positive_weight: 2.0,
            ..SvmConfig::default()
        };
        let svm = LinearSvm::fit(&features, 3, &labels, &config);
        let scores = svm.decision_function(&features);
        for (score, positive) in scores.iter().zip(&labels) {
            assert_eq!(*score > 0.0, *positive, "{score}");
        }
        assert!(svm.iterations < config.max_iterations);
    }
}

//! Branch-free f32 `erf` and `exp` built from polynomials, for element-wise
//! loops that should vectorise.
//!
//! libm's `erff` and `expf` branch on the argument's range and are opaque
//! calls, so a loop over them runs one element at a time. GELU and its
//! gradient call both per element of the feed-forward activations; with
//! these the loop is arithmetic, compares and selects that LLVM vectorises.
//! Both keep NaN as NaN (clamps are written as compares, which NaN fails).

/// erf(x), a rational function of x (odd numerator over even denominator;
/// the f32 erf of XLA and Eigen). Inputs are clamped to [-4, 4], beyond
/// which erf is ±1 to within 2e-8. Absolute error ≤ 5e-7 (tested against
/// f64 erf).
#[inline(always)]
pub(crate) fn erf_f32(x: f32) -> f32 {
    const ALPHA: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ];
    const BETA: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329_2e-3,
        -1.426_474e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = ALPHA[1..].iter().fold(ALPHA[0], |p, &a| p * x2 + a) * x;
    let q = BETA[1..].iter().fold(BETA[0], |q, &b| q * x2 + b);
    p / q
}

/// eˣ: x = n·ln 2 + r with |r| ≤ ln 2 / 2, a degree-7 polynomial for eʳ
/// (Cephes' `expf`) and 2ⁿ from the exponent bits. Inputs are clamped to
/// [-87.33, 88.37], the normal range of f32, so underflow gives ~1.2e-38
/// instead of 0 and overflow gives ~2.8e38 instead of infinity. Relative
/// error ≤ 2e-7 (tested against f64 exp).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³: adding it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
    let x = x.clamp(-87.33, 88.37);
    let n = (x * core::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let y = P[1..].iter().fold(P[0], |y, &c| y * r + c) * (r * r) + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) << 23) as u32);
    y * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` evenly spaced points of `[low, high]`.
    fn grid(low: f32, high: f32, count: usize) -> impl Iterator<Item = f32> {
        (0..count).map(move |i| low + (high - low) * i as f32 / (count - 1) as f32)
    }

    #[test]
    fn erf_is_within_5e_7_of_the_f64_function() {
        let worst = grid(-10.0, 10.0, 400_001)
            .map(|x| (f64::from(erf_f32(x)) - libm::erf(f64::from(x))).abs())
            .fold(0.0, f64::max);
        assert!(worst <= 5e-7, "max error {worst}");
        assert_eq!(erf_f32(0.0), 0.0);
        assert!(erf_f32(f32::NAN).is_nan());
        assert_eq!(erf_f32(f32::INFINITY), erf_f32(4.0));
    }

    #[test]
    fn exp_is_within_2e_7_relative_of_the_f64_function() {
        let worst = grid(-87.0, 88.0, 400_001)
            .map(|x| {
                let exact = libm::exp(f64::from(x));
                ((f64::from(exp_f32(x)) - exact) / exact).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst <= 2e-7, "max relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_f32(-1e4) < 1.2e-38 && exp_f32(-1e4) > 0.0);
    }
}

//! Correctness@tau curves.

use crate::InputError;

/// The official threshold grid, `numpy.arange(0, 1, 0.1)` bit for bit: note that
/// its 4th, 7th and 8th entries are 0.30000000000000004, 0.6000000000000001 and
/// 0.7000000000000001, which is what the official `calc_correctness.py` compares with.
pub const OFFICIAL_THRESHOLDS: [f64; 10] = [
    0.0,
    0.1,
    0.2,
    0.30000000000000004,
    0.4,
    0.5,
    0.6000000000000001,
    0.7000000000000001,
    0.8,
    0.9,
];

/// Fraction of all videos (NaN = invalid, counted in the denominator) whose DSR is
/// `>= t`, for each threshold `t`. NaN for an empty `dsr`.
pub fn correctness_curve(dsr: &[f64], thresholds: &[f64]) -> Result<Vec<f64>, InputError> {
    if let Some(i) = thresholds.iter().position(|t| !t.is_finite()) {
        return Err(InputError::BadParameter {
            name: "thresholds",
            detail: format!("threshold {i} is not finite"),
        });
    }
    if let Some(i) = dsr.iter().position(|d| d.is_infinite()) {
        return Err(InputError::BadParameter {
            name: "dsr",
            detail: format!("value {i} is infinite (use NaN for invalid videos)"),
        });
    }
    let n = dsr.len() as f64;
    let mut sorted: Vec<f64> = dsr.iter().copied().filter(|d| !d.is_nan()).collect();
    sorted.sort_unstable_by(|a, b| a.total_cmp(b));
    Ok(thresholds
        .iter()
        .map(|&t| {
            // number of valid scores >= t
            let below = sorted.partition_point(|&d| d < t);
            (sorted.len() - below) as f64 / n
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_grid_is_numpy_arange() {
        for (i, t) in OFFICIAL_THRESHOLDS.iter().enumerate() {
            assert_eq!(*t, i as f64 * 0.1);
        }
    }

    #[test]
    fn invalid_videos_count_in_denominator() {
        let dsr = [0.9, 0.7, f64::NAN, 0.2];
        let c = correctness_curve(&dsr, &[0.0, 0.5, 0.7, 0.7000000000000001, 0.95]).unwrap();
        assert_eq!(c, vec![0.75, 0.5, 0.5, 0.25, 0.0]);
    }

    #[test]
    fn empty_is_nan_and_bad_thresholds_error() {
        assert!(correctness_curve(&[], &[0.5]).unwrap()[0].is_nan());
        assert!(correctness_curve(&[0.5], &[f64::NAN]).is_err());
        assert!(correctness_curve(&[f64::INFINITY], &[0.5]).is_err());
    }
}

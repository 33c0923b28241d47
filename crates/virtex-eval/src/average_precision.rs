//! Average precision as sklearn's `average_precision_score` computes it:
//! the step-wise area under the precision-recall curve, one step per
//! distinct score (tied scores are one threshold), no interpolation.

/// AP of `scores` for binary `targets`; `None` without any positive.
pub fn average_precision(scores: &[f64], targets: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), targets.len());
    let positives = targets.iter().filter(|&&t| t).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut previous_recall = 0.0;
    let mut ap = 0.0;
    let mut k = 0;
    while k < order.len() {
        let threshold = scores[order[k]];
        while k < order.len() && scores[order[k]] == threshold {
            if targets[order[k]] {
                tp += 1;
            } else {
                fp += 1;
            }
            k += 1;
        }
        let recall = tp as f64 / positives as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - previous_recall) * precision;
        previous_recall = recall;
    }
    Some(ap)
}

#[cfg(test)]
mod tests {
    use super::average_precision;

    #[test]
    fn matches_sklearn_examples() {
        // sklearn's docstring example: 0.8333...
        let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((ap - 0.833_333_333_333_333_4).abs() < 1e-12);
        // Ties form one threshold: all tied = positive rate.
        let ap = average_precision(&[0.5, 0.5, 0.5, 0.5], &[true, false, false, false]).unwrap();
        assert!((ap - 0.25).abs() < 1e-12);
        assert_eq!(average_precision(&[0.1], &[false]), None);
    }
}

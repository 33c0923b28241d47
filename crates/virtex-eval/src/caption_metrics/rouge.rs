//! ROUGE-L as pycocoevalcap's `Rouge` computes it: per image, the best
//! LCS precision and the best LCS recall over the references, combined as
//! an F-measure with β = 1.2; the corpus score is the mean.

const BETA: f64 = 1.2;

/// Length of the longest common subsequence of two token lists.
fn lcs(a: &[&str], b: &[&str]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// ROUGE-L of one candidate. Tokens are split on single spaces, as
/// pycocoevalcap does (an empty caption is one empty token).
pub fn rouge_l(candidate: &str, references: &[String]) -> f64 {
    let candidate: Vec<&str> = candidate.split(' ').collect();
    let (mut precision, mut recall) = (0.0f64, 0.0f64);
    for reference in references {
        let reference: Vec<&str> = reference.split(' ').collect();
        let common = lcs(&reference, &candidate) as f64;
        precision = precision.max(common / candidate.len() as f64);
        recall = recall.max(common / reference.len() as f64);
    }
    if precision == 0.0 || recall == 0.0 {
        return 0.0;
    }
    (1.0 + BETA * BETA) * precision * recall / (recall + BETA * BETA * precision)
}

#[cfg(test)]
mod tests {
    use super::lcs;

    #[test]
    fn longest_common_subsequence() {
        let a = ["a", "b", "c", "d", "e"];
        assert_eq!(lcs(&a, &["a", "c", "e"]), 3);
        assert_eq!(lcs(&a, &["e", "d"]), 1);
        assert_eq!(lcs(&a, &[]), 0);
    }
}

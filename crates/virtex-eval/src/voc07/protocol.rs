//! The VOC07 linear-SVM protocol of the reference (`scripts/clf_voc07.py`)
//! on features already extracted: per class, a linear SVM (squared hinge,
//! L2, class weight {+1: 2, −1: 1}) for each C in {0.01, 0.1, 1, 10}, C
//! chosen by 3-fold cross-validated AP on trainval (sklearn's unshuffled
//! `StratifiedKFold`), refit on trainval; test AP ignores difficult images.
//! Difficult trainval images are negatives, as in the reference.

use rayon::prelude::*;
use serde::Serialize;

use super::devkit::VocLabel;
use crate::average_precision::average_precision;
use crate::svm::{LinearSvm, SvmConfig};

/// The protocol's settings (defaults: the reference's).
#[derive(Clone, Debug, PartialEq)]
pub struct Voc07Protocol {
    /// Candidate C values.
    pub costs: Vec<f64>,
    /// Cross-validation folds.
    pub folds: usize,
    /// SVM settings other than C.
    pub svm: SvmConfig,
}

impl Default for Voc07Protocol {
    fn default() -> Self {
        Self {
            costs: vec![0.01, 0.1, 1.0, 10.0],
            folds: 3,
            svm: SvmConfig {
                positive_weight: 2.0,
                negative_weight: 1.0,
                ..SvmConfig::default()
            },
        }
    }
}

/// One class's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassResult {
    /// The class.
    pub class: String,
    /// The chosen C.
    pub cost: f64,
    /// Its mean cross-validated AP.
    pub cross_val_ap: f64,
    /// Test AP (difficult images left out).
    pub test_ap: f64,
}

/// Features and labels of one split.
#[derive(Clone, Copy, Debug)]
pub struct LabelledFeatures<'a> {
    /// `[n, dim]` row-major.
    pub features: &'a [f32],
    /// Feature dimension.
    pub dim: usize,
    /// `labels[image][class]`.
    pub labels: &'a [Vec<VocLabel>],
}

/// Test fold of each sample, as sklearn's `StratifiedKFold(n_splits)` without
/// shuffling assigns them: each class's samples, in order, fill the folds
/// in the proportions of a round-robin over the sorted labels.
pub fn stratified_folds(positive: &[bool], folds: usize) -> Vec<usize> {
    // Encoded labels sorted: negatives (class 0) then positives (class 1).
    let negatives = positive.iter().filter(|&&p| !p).count();
    let mut allocation = vec![[0usize; 2]; folds];
    for position in 0..positive.len() {
        let class = usize::from(position >= negatives);
        allocation[position % folds][class] += 1;
    }
    let mut next = [0usize; 2];
    let mut used = [0usize; 2];
    positive
        .iter()
        .map(|&p| {
            let class = usize::from(p);
            while used[class] == allocation[next[class]][class] {
                next[class] += 1;
                used[class] = 0;
            }
            used[class] += 1;
            next[class]
        })
        .collect()
}

impl Voc07Protocol {
    /// Trains and tests every class (in parallel); per-class results.
    pub fn run(
        &self,
        classes: &[String],
        train: LabelledFeatures,
        test: LabelledFeatures,
    ) -> Vec<ClassResult> {
        assert_eq!(
            train.dim, test.dim,
            "train and test features differ in size"
        );
        (0..classes.len())
            .into_par_iter()
            .map(|c| self.run_class(&classes[c], c, train, test))
            .collect()
    }

    fn run_class(
        &self,
        class: &str,
        c: usize,
        train: LabelledFeatures,
        test: LabelledFeatures,
    ) -> ClassResult {
        let dim = train.dim;
        let positive: Vec<bool> = train
            .labels
            .iter()
            .map(|row| row[c] == VocLabel::Present)
            .collect();
        let fold_of = stratified_folds(&positive, self.folds);
        let mut best: Option<(f64, f64)> = None;
        for &cost in &self.costs {
            let config = SvmConfig {
                c: cost,
                ..self.svm
            };
            let mut fold_aps = Vec::with_capacity(self.folds);
            for fold in 0..self.folds {
                let (mut fit_x, mut fit_y, mut held_x, mut held_y) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for (i, &f) in fold_of.iter().enumerate() {
                    let row = &train.features[i * dim..(i + 1) * dim];
                    if f == fold {
                        held_x.extend_from_slice(row);
                        held_y.push(positive[i]);
                    } else {
                        fit_x.extend_from_slice(row);
                        fit_y.push(positive[i]);
                    }
                }
                let svm = LinearSvm::fit(&fit_x, dim, &fit_y, &config);
                let scores = svm.decision_function(&held_x);
                fold_aps.push(average_precision(&scores, &held_y).unwrap_or(0.0));
            }
            let mean = fold_aps.iter().sum::<f64>() / fold_aps.len() as f64;
            // sklearn's loop keeps the first C on ties (strictly greater).
            if best.is_none_or(|(_, ap)| mean > ap) {
                best = Some((cost, mean));
            }
        }
        let (cost, cross_val_ap) = best.expect("at least one cost");
        let svm = LinearSvm::fit(
            train.features,
            dim,
            &positive,
            &SvmConfig {
                c: cost,
                ..self.svm
            },
        );
        let (mut scores, mut targets) = (Vec::new(), Vec::new());
        for (row, labels) in test.features.chunks_exact(dim).zip(test.labels) {
            match labels[c] {
                VocLabel::Difficult => {}
                label => {
                    scores.push(svm.decision_function(row)[0]);
                    targets.push(label == VocLabel::Present);
                }
            }
        }
        ClassResult {
            class: class.to_string(),
            cost,
            cross_val_ap,
            test_ap: average_precision(&scores, &targets).unwrap_or(0.0),
        }
    }
}

/// Mean of the classes' test APs.
pub fn mean_ap(results: &[ClassResult]) -> f64 {
    results.iter().map(|r| r.test_ap).sum::<f64>() / results.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::stratified_folds;

    #[test]
    fn folds_follow_sklearn_stratified_kfold() {
        // sklearn 1.9: StratifiedKFold(3).split(X, y) puts these y in test
        // folds [0, 0, 0, 0, 1, 1, 1, 2, 2, 2].
        let y = [
            false, false, true, false, false, true, false, true, false, false,
        ];
        assert_eq!(stratified_folds(&y, 3), [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]);
    }
}

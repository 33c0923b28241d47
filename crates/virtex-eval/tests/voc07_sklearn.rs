//! The VOC07 SVM protocol against sklearn's (`LinearSVC`, `cross_val_score`
//! and `average_precision_score`, as `scripts/clf_voc07.py` runs them) on
//! real features of the bundled emoji images
//! (`tools/fixtures/make_voc07_fixture.py`).

use std::path::{Path, PathBuf};

use serde_json::Value;
use virtex_eval::features::Features;
use virtex_eval::voc07::devkit::VocLabel;
use virtex_eval::voc07::protocol::{LabelledFeatures, Voc07Protocol, mean_ap};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fixtures/voc07")
}

fn labels(value: &Value) -> Vec<Vec<VocLabel>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|l| match l.as_i64().unwrap() {
                    1 => VocLabel::Present,
                    0 => VocLabel::Difficult,
                    _ => VocLabel::Absent,
                })
                .collect()
        })
        .collect()
}

#[test]
fn map_agrees_with_sklearn_within_0_3_points() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap())
            .unwrap();
    let train = Features::load_npy(&fixture().join("trainval_features.npy")).unwrap();
    let test = Features::load_npy(&fixture().join("test_features.npy")).unwrap();
    let (train_labels, test_labels) = (
        labels(&expected["trainval_labels"]),
        labels(&expected["test_labels"]),
    );
    let classes: Vec<String> = expected["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let results = Voc07Protocol::default().run(
        &classes,
        LabelledFeatures {
            features: &train.values,
            dim: train.dim,
            labels: &train_labels,
        },
        LabelledFeatures {
            features: &test.values,
            dim: test.dim,
            labels: &test_labels,
        },
    );
    let ours = 100.0 * mean_ap(&results);
    let theirs = 100.0 * expected["mAP"].as_f64().unwrap();
    for (r, e) in results.iter().zip(expected["results"].as_array().unwrap()) {
        println!(
            "{:>20}: C {} vs {}, AP {:.2} vs {:.2}",
            r.class,
            r.cost,
            e["cost"],
            100.0 * r.test_ap,
            100.0 * e["test_ap"].as_f64().unwrap()
        );
    }
    println!("mAP: virtex-eval {ours:.3}, sklearn {theirs:.3}");
    assert!(
        (ours - theirs).abs() < 0.3,
        "mAP {ours:.3} vs sklearn {theirs:.3}"
    );
    // Not a vacuous agreement: every class picked the same C, and the
    // features rank positives far above chance (AP = positive rate).
    for (r, e) in results.iter().zip(expected["results"].as_array().unwrap()) {
        assert_eq!(r.cost, e["cost"].as_f64().unwrap(), "{}", r.class);
    }
    let chance = 100.0
        * (0..classes.len())
            .map(|c| {
                let scored: Vec<&VocLabel> = test_labels
                    .iter()
                    .map(|row| &row[c])
                    .filter(|l| **l != VocLabel::Difficult)
                    .collect();
                let positives = scored.iter().filter(|l| ***l == VocLabel::Present).count();
                positives as f64 / scored.len() as f64
            })
            .sum::<f64>()
        / classes.len() as f64;
    assert!(ours > 2.0 * chance, "mAP {ours:.1}, chance {chance:.1}");
}

//! `cargo xtask evaluate voc07`: the reference's VOC07 linear-SVM protocol
//! on a devkit directory.

use anyhow::Context;
use virtex_eval::voc07::{LabelledFeatures, Voc07Protocol, Voc07Split, mean_ap};

use super::FeatureTask;
use crate::flags::Voc07;

impl Voc07 {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let trainval = Voc07Split::load(&self.voc_root, "trainval")?;
        let test = Voc07Split::load(&self.voc_root, "test")?;
        anyhow::ensure!(
            trainval.classes == test.classes,
            "{}: trainval classes {:?} differ from test classes {:?}",
            self.voc_root.display(),
            trainval.classes,
            test.classes
        );
        let features = |images: &[std::path::PathBuf]| {
            self.device.dispatch(FeatureTask {
                backbone: &self.backbone,
                images,
                size: self.size,
                batch: self.batch,
                l2_normalize: true,
            })
        };
        let train_features = features(&trainval.images)??;
        let test_features = features(&test.images)??;
        let results = Voc07Protocol::default().run(
            &trainval.classes,
            LabelledFeatures {
                features: &train_features.values,
                dim: train_features.dim,
                labels: &trainval.labels,
            },
            LabelledFeatures {
                features: &test_features.values,
                dim: test_features.dim,
                labels: &test.labels,
            },
        );
        println!("| class | C | 3-fold CV AP | test AP |");
        println!("|---|---|---|---|");
        for r in &results {
            println!(
                "| {} | {} | {:.2} | {:.2} |",
                r.class,
                r.cost,
                100.0 * r.cross_val_ap,
                100.0 * r.test_ap
            );
        }
        let map = mean_ap(&results);
        println!(
            "VOC07 mAP: {:.2} ({} trainval, {} test images)",
            100.0 * map,
            trainval.images.len(),
            test.images.len()
        );
        if let Some(output) = &self.output {
            let json = serde_json::json!({ "mAP": map, "classes": results });
            crate::write_atomically(output, &serde_json::to_vec_pretty(&json)?)
                .with_context(|| format!("writing {}", output.display()))?;
        }
        Ok(())
    }
}

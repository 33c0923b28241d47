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
        // One pass over both splits: one backbone load.
        let images: Vec<_> = trainval
            .images
            .iter()
            .chain(&test.images)
            .cloned()
            .collect();
        let features = self.device.dispatch(FeatureTask {
            backbone: &self.backbone,
            images: &images,
            size: self.size,
            batch: self.batch,
            l2_normalize: true,
        })??;
        let (train_values, test_values) = features
            .values
            .split_at(trainval.images.len() * features.dim);
        let results = Voc07Protocol::default().run(
            &trainval.classes,
            LabelledFeatures {
                features: train_values,
                dim: features.dim,
                labels: &trainval.labels,
            },
            LabelledFeatures {
                features: test_values,
                dim: features.dim,
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::flags::{BackboneSource, Voc07, WeightsLayout};

    /// A two-class devkit of emoji images: flags and faces, one difficult.
    fn devkit(root: &Path) {
        let emoji = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/emoji/train2017");
        let mut names: Vec<String> = std::fs::read_dir(&emoji)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        std::fs::create_dir_all(root.join("JPEGImages")).unwrap();
        std::fs::create_dir_all(root.join("ImageSets/Main")).unwrap();
        let mut lists: [[String; 2]; 2] = Default::default();
        let picks = [("1f1e", 0), ("1f60", 1)];
        for (prefix, class) in picks {
            for (i, name) in names
                .iter()
                .filter(|n| n.starts_with(prefix))
                .take(12)
                .enumerate()
            {
                let stem = name.trim_end_matches(".jpg");
                std::fs::copy(emoji.join(name), root.join("JPEGImages").join(name)).unwrap();
                let split = usize::from(i >= 8);
                for (c, list) in lists.iter_mut().enumerate() {
                    let label = if c != class {
                        "-1"
                    } else if split == 1 && i == 11 {
                        "0"
                    } else {
                        "1"
                    };
                    list[split].push_str(&format!("{stem} {label}\n"));
                }
            }
        }
        for (c, class) in ["flag", "face"].iter().enumerate() {
            for (s, split) in ["trainval", "test"].iter().enumerate() {
                std::fs::write(
                    root.join(format!("ImageSets/Main/{class}_{split}.txt")),
                    &lists[c][s],
                )
                .unwrap();
            }
        }
    }

    #[test]
    fn voc07_runs_the_protocol_on_a_devkit() {
        let root = std::env::temp_dir().join(format!("virtex-voc-{}", std::process::id()));
        devkit(&root);
        let output = root.join("voc07.json");
        Voc07 {
            backbone: BackboneSource {
                checkpoint: "random".into(),
                layout: WeightsLayout::Virtex,
                arch: "resnet18".parse().unwrap(),
            },
            voc_root: root.clone(),
            size: 32,
            batch: 8,
            output: Some(output.clone()),
            device: "cpu".parse().unwrap(),
        }
        .run()
        .unwrap();
        let result: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
        let classes = result["classes"].as_array().unwrap();
        assert_eq!(classes.len(), 2);
        assert_eq!(classes[0]["class"], "face");
        // Even random features separate flags from faces on this devkit.
        assert!(result["mAP"].as_f64().unwrap() > 0.5, "{result}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}

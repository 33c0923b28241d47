//! `cargo xtask evaluate captioning`: caption a COCO-format split with the
//! forward decoder (beam search by default), then score the captions
//! against the split's references as pycocoevalcap does
//! (`scripts/eval_captioning.py --calc-metrics`; SPICE and METEOR are not
//! available, see docs/deviations.md).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use virtex_eval::captioning::{CaptionPair, score_captions};

use crate::caption::Captioning;
use crate::flags::{Caption, CaptioningEval};

/// Reference captions of a COCO captions JSON, by image id.
fn references(path: &Path) -> anyhow::Result<BTreeMap<u64, Vec<String>>> {
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let mut by_image: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let annotations = json["annotations"]
        .as_array()
        .with_context(|| format!("{}: no \"annotations\" list", path.display()))?;
    for (i, annotation) in annotations.iter().enumerate() {
        let (Some(image), Some(caption)) = (
            annotation["image_id"].as_u64(),
            annotation["caption"].as_str(),
        ) else {
            bail!(
                "{}: annotations[{i}] needs an integer \"image_id\" and a string \"caption\"",
                path.display()
            );
        };
        by_image.entry(image).or_default().push(caption.to_string());
    }
    Ok(by_image)
}

/// Pairs each predicted caption with its image's references.
pub(crate) fn pair_with_references(
    predictions: &[Value],
    references: &BTreeMap<u64, Vec<String>>,
    source: &Path,
) -> anyhow::Result<Vec<CaptionPair>> {
    predictions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (Some(image), Some(caption)) = (p["image_id"].as_u64(), p["caption"].as_str())
            else {
                bail!(
                    "{}: entry {i} needs an integer \"image_id\" and a string \"caption\"",
                    source.display()
                );
            };
            let refs = references.get(&image).with_context(|| {
                format!(
                    "{}: image_id {image} has no reference captions",
                    source.display()
                )
            })?;
            Ok(CaptionPair {
                candidate: caption.to_string(),
                references: refs.clone(),
            })
        })
        .collect()
}

impl CaptioningEval {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let references = references(&self.annotations)?;
        let (predictions, source) = match (&self.predictions, &self.checkpoint) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let list: Vec<Value> = serde_json::from_str(&text)
                    .with_context(|| format!("{}: expected a JSON list", path.display()))?;
                (list, path.clone())
            }
            (None, Some(checkpoint)) => {
                let captions_path = match &self.output {
                    Some(output) => output.with_extension("captions.json"),
                    None => std::env::temp_dir().join("virtex-captions.json"),
                };
                let cmd = Caption {
                    checkpoint: checkpoint.clone(),
                    config: self.config.clone(),
                    tokenizer: self.tokenizer.clone(),
                    images: self.annotations.clone(),
                    image_dir: self.image_dir.clone(),
                    decoder: self.decoder,
                    batch: self.batch,
                    output: captions_path.clone(),
                    attention_dir: None,
                    device: self.device,
                };
                let captions = self.device.dispatch(Captioning { cmd })??;
                crate::write_atomically(&captions_path, &serde_json::to_vec_pretty(&captions)?)?;
                println!("captions in {}", captions_path.display());
                (captions, captions_path)
            }
            (None, None) => bail!("pass --predictions or --checkpoint"),
        };
        let pairs = pair_with_references(&predictions, &references, &source)?;
        let scores = score_captions(&pairs)?;
        println!("| images | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | ROUGE-L | CIDEr-D |");
        println!("|---|---|---|---|---|---|---|");
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            scores.images,
            100.0 * scores.bleu[0],
            100.0 * scores.bleu[1],
            100.0 * scores.bleu[2],
            100.0 * scores.bleu[3],
            100.0 * scores.rouge_l,
            100.0 * scores.cider
        );
        if let Some(output) = &self.output {
            let json = json!({
                "bleu": scores.bleu,
                "rouge_l": scores.rouge_l,
                "cider": scores.cider,
                "images": scores.images,
                "scale": "pycocoevalcap's (×100 is the reference's reporting scale)",
            });
            crate::write_atomically(output, &serde_json::to_vec_pretty(&json)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::flags::CaptioningEval;

    fn eval(predictions: PathBuf, output: Option<PathBuf>) -> CaptioningEval {
        CaptioningEval {
            annotations: crate::project_root().join("data/emoji/annotations/captions_val2017.json"),
            predictions: Some(predictions),
            checkpoint: None,
            config: PathBuf::new(),
            tokenizer: None,
            image_dir: None,
            decoder: None,
            batch: 1,
            output,
            device: "cpu".parse().unwrap(),
        }
    }

    #[test]
    fn scores_captions_of_the_emoji_val_split() {
        let annotations =
            crate::project_root().join("data/emoji/annotations/captions_val2017.json");
        let refs = references(&annotations).unwrap();
        let dir = std::env::temp_dir().join(format!("virtex-capeval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // One human caption per image as the "prediction": scores far above
        // a constant caption's.
        let human: Vec<Value> = refs
            .iter()
            .take(40)
            .map(|(id, c)| json!({"image_id": id, "caption": c[0]}))
            .collect();
        let constant: Vec<Value> = refs
            .keys()
            .take(40)
            .map(|id| json!({"image_id": id, "caption": "an emoji of a thing"}))
            .collect();
        let mut cider = Vec::new();
        for (name, list) in [("human", human), ("constant", constant)] {
            let predictions = dir.join(format!("{name}.json"));
            std::fs::write(&predictions, serde_json::to_vec(&list).unwrap()).unwrap();
            let output = dir.join(format!("{name}_scores.json"));
            eval(predictions, Some(output.clone())).run().unwrap();
            let scores: Value =
                serde_json::from_str(&std::fs::read_to_string(output).unwrap()).unwrap();
            assert_eq!(scores["images"], 40);
            cider.push(scores["cider"].as_f64().unwrap());
        }
        assert!(cider[0] > 2.0 * cider[1], "{cider:?}");

        let unknown = dir.join("unknown.json");
        std::fs::write(&unknown, r#"[{"image_id": 999999999, "caption": "a"}]"#).unwrap();
        let err = eval(unknown, None).run().unwrap_err();
        assert!(err.to_string().contains("999999999"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

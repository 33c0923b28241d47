//! `cargo xtask evaluate`: each evaluation is a task of [`virtex_eval`];
//! this file fills it from the flags and prints its result.

use std::path::PathBuf;

use anyhow::ensure;
use virtex_data::coco::{read_references, read_results};
use virtex_eval::caption_metrics::{pair_with_references, score_captions};
use virtex_eval::captioning::ImageSet;
use virtex_eval::emoji::{EMOJI_PROBE_CONFIG, EmojiExperiment, EmojiRow};
use virtex_eval::features::{Extraction, FeatureTask, image_list};
use virtex_eval::transfer::{TransferMode, TransferTask};
use virtex_eval::voc07::Voc07Task;
use virtex_train::source::{SourceError, WeightsSource};
use virtex_vision::pytorch::ExportNaming;

use crate::flags::{
    BackboneSource, CaptioningEval, Detectron2Export, EmojiProbe, Evaluate, Evaluation,
    ExtractFeatures, Transfer, Voc07,
};
use crate::{project_file, project_root, write_file, write_json};

impl Evaluate {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        match self.what {
            None => EmojiProbe::default().run(),
            Some(Evaluation::Features(cmd)) => cmd.run(),
            Some(Evaluation::Voc07(cmd)) => cmd.run(),
            Some(Evaluation::Linear(cmd)) => cmd.run(TransferMode::LinearProbe),
            Some(Evaluation::Finetune(cmd)) => cmd.run(TransferMode::FineTune),
            Some(Evaluation::Emoji(cmd)) => cmd.run(),
            Some(Evaluation::Captioning(cmd)) => cmd.run(),
            Some(Evaluation::Detectron2Export(cmd)) => cmd.run(),
        }
    }
}

impl BackboneSource {
    fn source(&self) -> Result<WeightsSource, SourceError> {
        WeightsSource::from_arg(&self.checkpoint, self.layout)
    }
}

impl ExtractFeatures {
    fn run(self) -> anyhow::Result<()> {
        // Listed once, so the `.npy` rows and the `.txt` listing cannot disagree.
        let images = image_list(&self.images)?;
        ensure!(!images.is_empty(), "no images in {}", self.images.display());
        let extracted = self.device.dispatch(FeatureTask {
            source: self.backbone.source()?,
            arch: self.backbone.arch,
            images,
            extraction: Extraction {
                batch: self.batch,
                l2_normalize: self.l2_normalize,
                on_bad_image: self.bad_images.on_bad_image,
                max_image_pixels: self.bad_images.max_image_pixels,
                ..Extraction::new(self.size)
            },
        })??;
        let skipped = self.bad_images.report(&extracted.skipped, &self.output)?;
        ensure!(
            !extracted.images.is_empty(),
            "none of the {} images could be read",
            extracted.skipped.len()
        );
        let features = &extracted.features;
        features.save_npy(&self.output)?;
        let listing = self.output.with_extension("txt");
        let paths: String = extracted
            .images
            .iter()
            .map(|p| format!("{}\n", p.display()))
            .collect();
        write_file(&listing, paths.as_bytes())?;
        println!(
            "wrote {} × {} features to {} (images listed in {})",
            features.rows,
            features.dim,
            self.output.display(),
            listing.display()
        );
        if let Some(skipped) = skipped {
            println!(
                "skipped {} unreadable images (listed in {})",
                extracted.skipped.len(),
                skipped.display()
            );
        }
        Ok(())
    }
}

impl Voc07 {
    fn run(self) -> anyhow::Result<()> {
        let report = self.device.dispatch(Voc07Task {
            source: self.backbone.source()?,
            arch: self.backbone.arch,
            voc_root: self.voc_root,
            size: self.size,
            batch: self.batch,
        })??;
        println!("| class | C | 3-fold CV AP | test AP |");
        println!("|---|---|---|---|");
        for r in &report.classes {
            println!(
                "| {} | {} | {:.2} | {:.2} |",
                r.class,
                r.cost,
                100.0 * r.cross_val_ap,
                100.0 * r.test_ap
            );
        }
        println!(
            "VOC07 mAP: {:.2} ({} trainval, {} test images)",
            100.0 * report.map,
            report.trainval_images,
            report.test_images
        );
        match &self.output {
            Some(output) => write_json(output, &report),
            None => Ok(()),
        }
    }
}

impl Transfer {
    fn run(self, mode: TransferMode) -> anyhow::Result<()> {
        let path = self
            .config
            .clone()
            .unwrap_or_else(|| mode.default_config().into());
        let config = mode.config(&project_file(&path), &self.overrides)?;
        let root = config.data.root.display().to_string();
        let result = self.device.dispatch(TransferTask {
            source: self.backbone.source()?,
            arch: self.backbone.arch,
            config,
            test_split: "val".into(),
        })??;
        println!(
            "{:?} on {root}: top-1 {:.2}%, top-5 {:.2}% after {} iterations (training loss {:.3} → {:.3})",
            result.mode,
            100.0 * result.top1,
            100.0 * result.top5,
            result.iterations,
            result.loss_start_end.0,
            result.loss_start_end.1
        );
        match &self.output {
            Some(output) => write_json(output, &result),
            None => Ok(()),
        }
    }
}

impl EmojiProbe {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let root = project_root();
        let checkpoints = if self.checkpoints.is_empty() {
            vec![root.join("runs/emoji_bicaptioning")]
        } else {
            self.checkpoints
        };
        let experiment = EmojiExperiment {
            emoji: root.join("data/emoji"),
            folders: root.join("runs/emoji_folders"),
            config: root.join(EMOJI_PROBE_CONFIG),
            overrides: self.overrides,
            split: self.split.unwrap_or_else(|| "val".into()),
        };
        let rows = experiment.run(&checkpoints, |name, level, result| {
            println!(
                "{name}, {level}: top-1 {:.1}%, top-5 {:.1}%",
                100.0 * result.top1,
                100.0 * result.top5
            );
        })?;
        println!(
            "\n| backbone | subcategory top-1 | subcategory top-5 | category top-1 | category top-5 |"
        );
        println!("|---|---|---|---|---|");
        for EmojiRow {
            backbone,
            subcategory: sub,
            category: cat,
        } in &rows
        {
            println!(
                "| {backbone} | {:.1} | {:.1} | {:.1} | {:.1} |",
                100.0 * sub.top1,
                100.0 * sub.top5,
                100.0 * cat.top1,
                100.0 * cat.top5
            );
        }
        match &self.output {
            Some(output) => write_json(output, &rows),
            None => Ok(()),
        }
    }
}

impl CaptioningEval {
    fn run(self) -> anyhow::Result<()> {
        let references = read_references(&self.annotations)?;
        let results = match (&self.predictions, &self.checkpoint) {
            (Some(path), _) => read_results(path)?,
            (None, Some(checkpoint)) => {
                let images = ImageSet::coco(&self.annotations, self.image_dir.as_deref())?;
                // Scores cover the whole split: an unreadable image stops it.
                let task = self.captioner.task(checkpoint, images, None, None)?;
                let results = self.device.dispatch(task)??.results;
                let captions_path = match &self.output {
                    Some(output) => output.with_extension("captions.json"),
                    None => std::env::temp_dir().join("virtex-captions.json"),
                };
                write_json(&captions_path, &results)?;
                println!("captions in {}", captions_path.display());
                results
            }
            (None, None) => anyhow::bail!("pass --predictions or --checkpoint"),
        };
        let source = self.predictions.as_ref().or(self.checkpoint.as_ref());
        let pairs = pair_with_references(&results, &references).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}",
                source.map_or(PathBuf::new(), Clone::clone).display()
            )
        })?;
        let scores = score_captions(&pairs)?;
        println!("| images | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | ROUGE-L | CIDEr-D |");
        println!("|---|---|---|---|---|---|---|");
        let [b1, b2, b3, b4] = scores.bleu.map(|b| 100.0 * b);
        println!(
            "| {} | {b1:.1} | {b2:.1} | {b3:.1} | {b4:.1} | {:.1} | {:.1} |",
            scores.images,
            100.0 * scores.rouge_l,
            100.0 * scores.cider
        );
        match &self.output {
            Some(output) => write_json(output, &scores),
            None => Ok(()),
        }
    }
}

impl Detectron2Export {
    fn run(self) -> anyhow::Result<()> {
        let source = self.backbone.source()?;
        source.export_backbone(self.backbone.arch, &self.output, ExportNaming::Detectron2)?;
        println!(
            "wrote the backbone of {source} under Detectron2 names to {}",
            self.output.display()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use virtex_train::source::{SourceError, WeightsSource};

    use crate::flags::{Command, Evaluation, ExtractFeatures, Xtask};

    /// `evaluate features` of a torchvision file, with `layout` flags.
    fn features(layout: &[&str]) -> ExtractFeatures {
        let checkpoint = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../data/fixtures/resnet18_layer1.pth"
        );
        let mut args = vec![
            "cargo xtask",
            "evaluate",
            "features",
            "--checkpoint",
            checkpoint,
        ];
        args.extend(layout);
        args.extend(["--images", "photos", "--output", "f.npy"]);
        let Command::Evaluate(cmd) = Xtask::try_parse_from(args).unwrap().command else {
            panic!("evaluate");
        };
        let Some(Evaluation::Features(features)) = cmd.what else {
            panic!("features");
        };
        features
    }

    #[test]
    fn backbone_flags_name_a_typed_source_of_the_files_layout() {
        for layout in [&[][..], &["--layout", "torchvision"]] {
            let features = features(layout);
            assert_eq!(
                features.backbone.source().unwrap(),
                WeightsSource::Torchvision(features.backbone.checkpoint.clone())
            );
        }
        let wrong = features(&["--layout", "virtex"]).backbone.source();
        assert!(
            matches!(wrong, Err(SourceError::WrongLayout { .. })),
            "{wrong:?}"
        );
    }
}

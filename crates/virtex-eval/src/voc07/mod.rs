//! The VOC07 evaluation of a backbone from any weights source
//! ([`Voc07Task`]): one feature pass over trainval and test (one backbone
//! load), then the reference's linear-SVM protocol on those features.
//!
//! - [`devkit`]: reading a VOC2007 devkit's splits and labels.
//! - [`protocol`]: the SVM protocol (`scripts/clf_voc07.py`) on features
//!   already extracted: C by cross-validated AP, test AP, mAP.

pub mod devkit;
pub mod protocol;

use std::path::PathBuf;

use serde::Serialize;
use virtex_train::device::BackendTask;
use virtex_train::source::WeightsSource;
use virtex_vision::{AutodiffVisionBackend, ResNetArch};

use crate::error::EvalError;
use crate::features::{Extraction, FeatureTask};
use devkit::{Voc07Split, VocError};
use protocol::{ClassResult, LabelledFeatures, Voc07Protocol, mean_ap};

/// VOC07 SVMs on a devkit, features extracted on the backend it is
/// dispatched to (the SVMs run on the CPU).
#[derive(Clone, Debug)]
pub struct Voc07Task {
    /// The backbone's weights.
    pub source: WeightsSource,
    /// Its architecture, for sources without a config.
    pub arch: ResNetArch,
    /// The devkit directory (`JPEGImages/`, `ImageSets/Main/`).
    pub voc_root: PathBuf,
    /// Side the backbone sees (256 → 224 in the reference).
    pub size: u32,
    /// Images per forward pass.
    pub batch: usize,
}

/// What [`Voc07Task`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct Voc07Report {
    /// Mean of the test APs.
    #[serde(rename = "mAP")]
    pub map: f64,
    /// Per class: chosen C, cross-validated AP, test AP.
    pub classes: Vec<ClassResult>,
    /// Trainval images.
    pub trainval_images: usize,
    /// Test images.
    pub test_images: usize,
}

impl BackendTask for Voc07Task {
    type Output = Result<Voc07Report, EvalError>;

    fn run<B: AutodiffVisionBackend>(self, device: B::Device) -> Self::Output {
        let trainval = Voc07Split::load(&self.voc_root, "trainval")?;
        let test = Voc07Split::load(&self.voc_root, "test")?;
        if trainval.classes != test.classes {
            return Err(VocError::ClassMismatch {
                root: self.voc_root.clone(),
                trainval: trainval.classes,
                test: test.classes,
            }
            .into());
        }
        let features = FeatureTask {
            source: self.source,
            arch: self.arch,
            images: trainval
                .images
                .iter()
                .chain(&test.images)
                .cloned()
                .collect(),
            extraction: Extraction {
                batch: self.batch,
                l2_normalize: true,
                ..Extraction::new(self.size)
            },
        }
        .run::<B>(device)?
        .features;
        let (train_values, test_values) = features
            .values
            .split_at(trainval.images.len() * features.dim);
        let classes = Voc07Protocol::default().run(
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
        Ok(Voc07Report {
            map: mean_ap(&classes),
            classes,
            trainval_images: trainval.images.len(),
            test_images: test.images.len(),
        })
    }
}

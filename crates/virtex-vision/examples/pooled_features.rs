//! Extracts global-average-pooled ResNet features of a few images, with
//! weights read from a torchvision `.pth` file, and prints their shape and
//! first values.
//!
//! ```sh
//! cargo run -p virtex-vision --example pooled_features
//! cargo run -p virtex-vision --example pooled_features -- resnet50.pth resnet50
//! ```
//!
//! The repository commits no whole torchvision network, only the stem and
//! layer1 of a ResNet-18 (`data/fixtures/resnet18_layer1.pth`, the parity
//! tests' fixture). Without arguments the example loads that file partially,
//! as the tests do, so layers 2 to 4 keep torchvision's random initialisation
//! and the features say nothing about the images. Given a whole torchvision
//! state dict (and its architecture, `resnet18` by default), every key must
//! fit. The images are four bundled emoji (`data/emoji/val2017`), preprocessed
//! as the reference's downstream evaluations do (resize to 256, centre crop
//! 224, ImageNet normalisation).

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use burn_flex::Flex;
use virtex_data::images::{EvalTransform, image_files};
use virtex_vision::pytorch::TorchvisionWeights;
use virtex_vision::{ResNetArch, ResNetConfig};

const STEM_AND_LAYER1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/fixtures/resnet18_layer1.pth"
);
const EMOJI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/emoji/val2017");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let weights = match args.next() {
        Some(path) => TorchvisionWeights::new(path),
        None => TorchvisionWeights::new(STEM_AND_LAYER1).allow_partial(true),
    };
    let arch: ResNetArch = args.next().as_deref().unwrap_or("resnet18").parse()?;

    let device = Default::default();
    // Layers the file does not fill are drawn from a seeded generator, so
    // every run prints the same values.
    Flex::seed(&device, 0);
    let resnet = weights.load(ResNetConfig::new(arch).init::<Flex>(&device))?;

    let paths: Vec<PathBuf> = image_files(EMOJI.as_ref())?.into_iter().take(4).collect();
    let transform = EvalTransform::downstream(224);
    let pixels = transform.load_batch(&paths)?; // [4, 3, 224, 224], flattened
    let shape = [
        paths.len(),
        3,
        transform.crop as usize,
        transform.crop as usize,
    ];
    let images = Tensor::<Flex, 4>::from_data(TensorData::new(pixels, shape), &device);

    let features = resnet.forward_pooled(images); // [4, 512] for ResNet-18
    println!("{} features of shape {:?}", arch.name(), features.dims());
    let values = features.into_data().to_vec::<f32>()?;
    for (path, row) in paths.iter().zip(values.chunks(arch.out_channels())) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        println!("{name:>24}: {:.4?} …", &row[..5]);
    }
    Ok(())
}

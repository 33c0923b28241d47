//! Caption-aware training augmentation, in the reference's order
//! (`virtex/factories.py::ImageTransformsFactory`, train branch):
//! random resized crop → horizontal flip (which swaps the words "left" and
//! "right" in the caption) → colour jitter. Every random choice comes from
//! the `rng` passed in, so a sample is reproducible from its seed whatever
//! thread runs it.

use image::imageops;
use image::{Rgb, RgbImage};
use rand::Rng;
use rand::seq::SliceRandom;

use crate::caption::swap_left_right;
use crate::images::resize_region;

/// Training augmentation settings; defaults are the reference's.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainAugmentation {
    /// Output side in pixels (224 in the reference).
    pub size: u32,
    /// Crop area as a fraction of the image, `(0.2, 1.0)`.
    pub scale: (f64, f64),
    /// Crop aspect ratio range, `(3/4, 4/3)`.
    pub ratio: (f64, f64),
    /// Probability of a horizontal flip, 0.5.
    pub flip_probability: f64,
    /// Colour jitter strengths: brightness, contrast, saturation (0.4 each), hue (0.1).
    pub jitter: [f64; 4],
    /// Probability of applying the colour jitter, 0.8.
    pub jitter_probability: f64,
}

impl TrainAugmentation {
    /// The reference's settings at output side `size`.
    pub fn new(size: u32) -> Self {
        Self {
            size,
            scale: (0.2, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip_probability: 0.5,
            jitter: [0.4, 0.4, 0.4, 0.1],
            jitter_probability: 0.8,
        }
    }

    /// The augmentation a reference `DATA.IMAGE_TRANSFORM_TRAIN` list names,
    /// at output side `size`. The list is a subsequence of the reference's
    /// vocabulary in its order: a crop (`random_resized_crop`, or
    /// `smallest_resize` then `center_crop`, the whole image's centre square),
    /// then optionally `horizontal_flip` and `color_jitter`, then `normalize`.
    /// Leaving a step out turns it off.
    pub fn from_transforms<S: AsRef<str>>(
        names: &[S],
        size: u32,
    ) -> Result<Self, TransformListError> {
        let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
        let mut augment = Self::new(size);
        let rest = match names.as_slice() {
            ["random_resized_crop", rest @ ..] => rest,
            ["smallest_resize", "center_crop", rest @ ..] => {
                augment.scale = (1.0, 1.0);
                augment.ratio = (1.0, 1.0);
                rest
            }
            _ => return Err(TransformListError::new(&names, "must start with a crop")),
        };
        let rest = match rest {
            ["horizontal_flip", rest @ ..] => rest,
            rest => {
                augment.flip_probability = 0.0;
                rest
            }
        };
        let rest = match rest {
            ["color_jitter", rest @ ..] => rest,
            rest => {
                augment.jitter_probability = 0.0;
                rest
            }
        };
        match rest {
            ["normalize"] => Ok(augment),
            _ => Err(TransformListError::new(
                &names,
                "after the crop, only horizontal_flip, color_jitter (in that order) and a final normalize",
            )),
        }
    }

    /// Augments one image and its caption.
    pub fn apply(&self, image: &RgbImage, caption: &str, rng: &mut impl Rng) -> (RgbImage, String) {
        let (x, y, w, h) = self.crop_box(image.width(), image.height(), rng);
        let region = (f64::from(x), f64::from(y), f64::from(w), f64::from(h));
        let mut out = resize_region(image, region, self.size);
        let mut caption = caption.to_string();
        if rng.random_bool(self.flip_probability) {
            imageops::flip_horizontal_in_place(&mut out);
            caption = swap_left_right(&caption);
        }
        if rng.random_bool(self.jitter_probability) {
            color_jitter(&mut out, self.jitter, rng);
        }
        (out, caption)
    }

    /// torchvision's `RandomResizedCrop.get_params`: ten tries at a box of
    /// random area and log-uniform aspect ratio, then a centre crop with the
    /// ratio clamped into range.
    fn crop_box(&self, width: u32, height: u32, rng: &mut impl Rng) -> (u32, u32, u32, u32) {
        let area = f64::from(width) * f64::from(height);
        let (log_lo, log_hi) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * rng.random_range(self.scale.0..=self.scale.1);
            let aspect = rng.random_range(log_lo..=log_hi).exp();
            let w = (target * aspect).sqrt().round() as u32;
            let h = (target / aspect).sqrt().round() as u32;
            if (1..=width).contains(&w) && (1..=height).contains(&h) {
                let x = rng.random_range(0..=width - w);
                let y = rng.random_range(0..=height - h);
                return (x, y, w, h);
            }
        }
        let in_ratio = f64::from(width) / f64::from(height);
        let (w, h) = if in_ratio < self.ratio.0 {
            (width, (f64::from(width) / self.ratio.0).round() as u32)
        } else if in_ratio > self.ratio.1 {
            ((f64::from(height) * self.ratio.1).round() as u32, height)
        } else {
            (width, height)
        };
        ((width - w) / 2, (height - h) / 2, w, h)
    }
}

/// A training transform list [`TrainAugmentation::from_transforms`] cannot build.
#[derive(Debug, thiserror::Error)]
#[error(
    "training transforms {names:?}: {reason} (known: random_resized_crop | smallest_resize, center_crop; horizontal_flip; color_jitter; normalize)"
)]
pub struct TransformListError {
    names: Vec<String>,
    reason: &'static str,
}

impl TransformListError {
    fn new(names: &[&str], reason: &'static str) -> Self {
        Self {
            names: names.iter().map(|s| s.to_string()).collect(),
            reason,
        }
    }
}

/// ITU-R 601 luma, as torchvision's `rgb_to_grayscale`.
fn luma(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// torchvision's `ColorJitter`: brightness, contrast, saturation and hue
/// factors drawn from their ranges, applied in a random order.
fn color_jitter(image: &mut RgbImage, strength: [f64; 4], rng: &mut impl Rng) {
    let factor = |s: f64, rng: &mut dyn rand::RngCore| -> f32 {
        rng.random_range((1.0 - s).max(0.0)..=1.0 + s) as f32
    };
    let brightness = factor(strength[0], rng);
    let contrast = factor(strength[1], rng);
    let saturation = factor(strength[2], rng);
    let hue = rng.random_range(-strength[3]..=strength[3]) as f32;
    let mut order = [0, 1, 2, 3];
    order.shuffle(rng);

    let mut pixels: Vec<[f32; 3]> = image
        .pixels()
        .map(|p| p.0.map(|c| f32::from(c) / 255.0))
        .collect();
    let blend = |p: [f32; 3], other: [f32; 3], f: f32| {
        [0, 1, 2].map(|c| (f * p[c] + (1.0 - f) * other[c]).clamp(0.0, 1.0))
    };
    for op in order {
        match op {
            0 => pixels
                .iter_mut()
                .for_each(|p| *p = blend(*p, [0.0; 3], brightness)),
            1 => {
                let mean = pixels.iter().map(|p| luma(*p)).sum::<f32>() / pixels.len() as f32;
                pixels
                    .iter_mut()
                    .for_each(|p| *p = blend(*p, [mean; 3], contrast));
            }
            2 => pixels
                .iter_mut()
                .for_each(|p| *p = blend(*p, [luma(*p); 3], saturation)),
            _ => pixels.iter_mut().for_each(|p| *p = shift_hue(*p, hue)),
        }
    }
    for (out, p) in image.pixels_mut().zip(pixels) {
        // Values are in 0–1, so adding ½ and truncating rounds half up
        // without a libm `roundf` call per channel.
        *out = Rgb(p.map(|c| (c * 255.0 + 0.5) as u8));
    }
}

/// Rotates the hue of an RGB pixel (values in 0–1) by `shift` turns.
fn shift_hue(p: [f32; 3], shift: f32) -> [f32; 3] {
    let max = p[0].max(p[1]).max(p[2]);
    let min = p[0].min(p[1]).min(p[2]);
    let delta = max - min;
    if delta == 0.0 {
        return p;
    }
    let h = if max == p[0] {
        ((p[1] - p[2]) / delta).rem_euclid(6.0)
    } else if max == p[1] {
        (p[2] - p[0]) / delta + 2.0
    } else {
        (p[0] - p[1]) / delta + 4.0
    } / 6.0;
    let (s, v) = (delta / max, max);
    let h = (h + shift).rem_euclid(1.0) * 6.0;
    let i = h.floor();
    let f = h - i;
    let (a, b, c) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as u32 % 6 {
        0 => [v, c, a],
        1 => [b, v, a],
        2 => [a, v, c],
        3 => [a, b, v],
        4 => [c, a, v],
        _ => [v, a, b],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn emoji() -> RgbImage {
        let root = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../data/fixtures/images/rgb.jpg"
        );
        crate::images::load_rgb(std::path::Path::new(root)).unwrap()
    }

    #[test]
    fn same_seed_same_sample_and_output_size() {
        let augment = TrainAugmentation::new(24);
        let image = emoji();
        let run = |seed| {
            augment.apply(
                &image,
                "a cat on the left",
                &mut StdRng::seed_from_u64(seed),
            )
        };
        let (a, caption_a) = run(7);
        let (b, caption_b) = run(7);
        assert_eq!((a.as_raw(), &caption_a), (b.as_raw(), &caption_b));
        assert_eq!(a.dimensions(), (24, 24));
        let differs = (0..20).any(|seed| run(seed).0.as_raw() != a.as_raw());
        assert!(differs, "different seeds give different crops");
    }

    #[test]
    fn a_flip_mirrors_the_image_and_swaps_left_and_right() {
        let mut augment = TrainAugmentation::new(32);
        augment.scale = (1.0, 1.0);
        augment.ratio = (1.5, 1.5); // the whole 48×32 fixture
        augment.jitter_probability = 0.0;
        augment.flip_probability = 1.0;
        let image = emoji();
        let (flipped, caption) = augment.apply(
            &image,
            "bright light on the left",
            &mut StdRng::seed_from_u64(0),
        );
        assert_eq!(caption, "bright light on the right");
        augment.flip_probability = 0.0;
        let (plain, caption) = augment.apply(
            &image,
            "bright light on the left",
            &mut StdRng::seed_from_u64(0),
        );
        assert_eq!(caption, "bright light on the left");
        assert_eq!(imageops::flip_horizontal(&plain).as_raw(), flipped.as_raw());
    }

    #[test]
    fn transform_lists_switch_steps_off() {
        let reference = [
            "random_resized_crop",
            "horizontal_flip",
            "color_jitter",
            "normalize",
        ];
        assert_eq!(
            TrainAugmentation::from_transforms(&reference, 32).unwrap(),
            TrainAugmentation::new(32)
        );
        let plain = TrainAugmentation::from_transforms(
            &[
                "smallest_resize",
                "center_crop",
                "horizontal_flip",
                "normalize",
            ],
            32,
        )
        .unwrap();
        assert_eq!((plain.scale, plain.ratio), ((1.0, 1.0), (1.0, 1.0)));
        assert_eq!(
            (plain.flip_probability, plain.jitter_probability),
            (0.5, 0.0)
        );
        // A 48×32 image: the centre 32×32 square, as smallest_resize + center_crop.
        let image = emoji();
        let mut no_flip = plain.clone();
        no_flip.flip_probability = 0.0;
        let (out, _) = no_flip.apply(&image, "", &mut StdRng::seed_from_u64(1));
        let centre = imageops::crop_imm(&image, 8, 0, 32, 32).to_image();
        assert_eq!(out.as_raw(), centre.as_raw());
        for bad in [
            &["horizontal_flip", "normalize"][..],
            &[
                "random_resized_crop",
                "color_jitter",
                "horizontal_flip",
                "normalize",
            ],
            &["random_resized_crop", "horizontal_flip"],
            &["random_resized_crop", "blur", "normalize"],
        ] {
            let err = TrainAugmentation::from_transforms(bad, 32).unwrap_err();
            assert!(err.to_string().contains(bad[0]), "{err}");
        }
    }

    #[test]
    fn hue_shift_is_a_rotation() {
        let red = [1.0, 0.0, 0.0];
        let green = shift_hue(red, 1.0 / 3.0);
        assert!(
            (green[1] - 1.0).abs() < 1e-6 && green[0].abs() < 1e-6,
            "{green:?}"
        );
        let back = shift_hue(green, -1.0 / 3.0);
        assert!((back[0] - 1.0).abs() < 1e-6, "{back:?}");
        assert_eq!(shift_hue([0.5; 3], 0.25), [0.5; 3]);
    }

    #[test]
    fn jitter_keeps_grey_grey_under_saturation_and_hue() {
        let mut image = RgbImage::from_pixel(4, 4, Rgb([128, 128, 128]));
        color_jitter(
            &mut image,
            [0.0, 0.0, 0.4, 0.1],
            &mut StdRng::seed_from_u64(3),
        );
        assert!(image.pixels().all(|p| p.0 == [128, 128, 128]));
    }
}

//! Attention maps: where the forward decoder looked for each word. The
//! cross-attention over the `h × w` grid of layer4 cells (`[h·w]` weights,
//! averaged over heads, from [`virtex_text::decoding::DecodedCaption`]) is
//! upsampled bilinearly to the image and blended over it as a heat map
//! (the paper's Figure 5; the reference repository has no script for it).

use image::{Rgb, RgbImage};

/// The heat map of `attention` (`[side·side]`, row-major) over `image`:
/// bright red where the weight is high, the image darkened elsewhere.
/// Weights are scaled to [0, 1] by their maximum.
///
/// # Panics
/// If `attention` is empty or not a square grid.
pub fn overlay(image: &RgbImage, attention: &[f32]) -> RgbImage {
    let side = (attention.len() as f64).sqrt().round() as usize;
    assert!(side > 0 && side * side == attention.len(), "a square grid");
    let peak = attention
        .iter()
        .copied()
        .fold(f32::MIN, f32::max)
        .max(f32::EPSILON);
    let (width, height) = image.dimensions();
    // Cell centres sit at (i + 0.5) / side; sample between them bilinearly.
    let sample = |x: f32, y: f32| -> f32 {
        let gx = (x * side as f32 - 0.5).clamp(0.0, (side - 1) as f32);
        let gy = (y * side as f32 - 0.5).clamp(0.0, (side - 1) as f32);
        let (x0, y0) = (gx.floor() as usize, gy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(side - 1), (y0 + 1).min(side - 1));
        let (fx, fy) = (gx - x0 as f32, gy - y0 as f32);
        let at = |r: usize, c: usize| attention[r * side + c] / peak;
        let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
        let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
        top * (1.0 - fy) + bottom * fy
    };
    RgbImage::from_fn(width, height, |x, y| {
        let weight = sample(
            (x as f32 + 0.5) / width as f32,
            (y as f32 + 0.5) / height as f32,
        );
        let Rgb([r, g, b]) = *image.get_pixel(x, y);
        let dim = 0.35 + 0.65 * weight;
        let heat = 255.0 * weight;
        Rgb([
            (0.5 * f32::from(r) * dim + 0.5 * heat) as u8,
            (f32::from(g) * dim * 0.8) as u8,
            (f32::from(b) * dim * 0.8) as u8,
        ])
    })
}

/// The image followed by one overlay per word, side by side.
pub fn caption_strip(image: &RgbImage, attention: &[Vec<f32>]) -> RgbImage {
    let (width, height) = image.dimensions();
    let mut strip = RgbImage::new(width * (attention.len() as u32 + 1), height);
    image::imageops::replace(&mut strip, image, 0, 0);
    for (k, weights) in attention.iter().enumerate() {
        let panel = overlay(image, weights);
        image::imageops::replace(&mut strip, &panel, i64::from(width) * (k as i64 + 1), 0);
    }
    strip
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attended_cell_lights_up() {
        let image = RgbImage::from_pixel(70, 70, Rgb([100, 100, 100]));
        let mut attention = vec![0.0f32; 49];
        attention[7 * 6 + 6] = 1.0; // bottom-right cell of 7×7
        let heat = overlay(&image, &attention);
        let red = |x, y| heat.get_pixel(x, y).0[0];
        assert!(red(65, 65) > 150, "{}", red(65, 65));
        assert!(red(5, 5) < 40, "{}", red(5, 5));
        let strip = caption_strip(&image, &[attention.clone(), attention]);
        assert_eq!(strip.dimensions(), (210, 70));
        assert_eq!(strip.get_pixel(5, 5), image.get_pixel(5, 5));
    }
}

//! Stride-1 convolutions on small planes as one GEMM per output row and
//! kernel tap, over only the positions whose tap reads the image.
//!
//! On ResNet-18's layer3 and layer4 at 64² input (4×4 and 2×2 planes) a
//! 3×3 kernel with padding 1 reads padding in 44 of every 144 (4×4) and
//! 20 of every 36 (2×2) tap–position pairs. im2col writes those as zeros
//! and its GEMM multiplies them; PyTorch's oneDNN kernels skip them.
//!
//! Here both planes are laid out `[rows, channels, cols, n]`: for one
//! output row and one kernel tap, the output positions whose tap falls
//! inside the image form one run of columns across the whole batch, and
//! the input they read is a run of the same length in input row `row + i
//! − pad_h` (tap `(i, j)`), so the tap's contribution to that row is a
//! single GEMM,
//! `[c_out, c_in] · [c_in, run]`, with no unfolded copy. The weight is
//! read in place (a tap's `[c_out, c_in]` block at column stride `k_h·k_w`).
//!
//! The input gradient is the same sum with the output gradient as source,
//! the weight transposed and the kernel flipped: input position `p`
//! receives from output `p + pad − tap`, that is `p + tap′ − pad′` with
//! `tap′ = k − 1 − tap` and `pad′ = k − 1 − pad`. The weight gradient
//! multiplies the same runs the other way round: a tap's `[c_out, c_in]`
//! block is the sum over output rows of `grad run · input runᵀ`.
//!
//! Measured on ResNet-18's layers at batch 32 and 64² (2 threads, AVX-512;
//! forward / input gradient / weight gradient): layer3's 3×3 3.3 / 3.4 /
//! 3.8 → 2.1 / 2.2 / 3.0 ms, layer4's 3.2 / 3.2 / 4.1 → 1.5 / 1.6 / 2.7 ms.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::ops::ConvOptions;
use burn_std::{Bytes, Shape};

use crate::ops::conv_common::add_bias;
use crate::ops::matmul::GemmScalar;
use crate::{FlexTensor, Layout};

/// Fewest channels on either side. The path was measured on ResNet-18's
/// 256 and 512; over fewer channels each tap's GEMM gets short for its
/// call and packing, and the GEMM path keeps them.
const MIN_CHANNELS: usize = 64;

/// Most output channels per weight-gradient job: 64 rows of a 256- or
/// 512-channel 3×3's gradient (0.6–1.2 MB) stay in a core's L2 while the
/// job's taps write them at a stride of nine.
const WEIGHT_GRAD_MAX_BLOCK: usize = 64;

/// Least fraction of tap–position pairs that must fall in the padding
/// (as `numerator / denominator`) for the per-tap GEMMs to pay for the
/// layout changes around them: a quarter, which 4×4 (31%) and 2×2 (56%)
/// planes under a padded 3×3 pass and 7×7 (18%) does not. Below it the
/// path measured slower (batch 32, 2 threads; forward / input gradient /
/// weight gradient against the GEMM and Winograd paths): 8×8 with 128
/// channels (16%) 3.1 / 3.1 / 6.4 against 2.4 / 2.4 / 3.8 ms, 16×16 with
/// 64 (8%) 3.6 / 3.6 / 12.1 against 2.9 / 2.9 / 3.6.
const MIN_PADDING_SHARE: (usize, usize) = (1, 4);

/// One stride-1, undilated, ungrouped convolution whose planes are small
/// enough that skipping the padding pays.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SmallPlaneConv {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    out_h: usize,
    out_w: usize,
    k_h: usize,
    k_w: usize,
    padding: [usize; 2],
}

impl SmallPlaneConv {
    /// The geometry of `conv2d(x, weight)` for `x: [n, c_in, h, w]` and
    /// `weight: [c_out, c_in, k_h, k_w]`, where this path applies and pays.
    pub(crate) fn new(x_shape: &Shape, w_shape: &Shape, options: &ConvOptions<2>) -> Option<Self> {
        if options.stride != [1, 1] || options.dilation != [1, 1] || options.groups != 1 {
            return None;
        }
        let (k_h, k_w) = (w_shape[2], w_shape[3]);
        let [pad_h, pad_w] = options.padding;
        if k_h == 0 || k_w == 0 || pad_h >= k_h || pad_w >= k_w {
            return None;
        }
        let out_h = (x_shape[2] + 2 * pad_h).checked_sub(k_h - 1)?;
        let out_w = (x_shape[3] + 2 * pad_w).checked_sub(k_w - 1)?;
        let conv = Self {
            n: x_shape[0],
            c_in: x_shape[1],
            h: x_shape[2],
            w: x_shape[3],
            c_out: w_shape[0],
            out_h,
            out_w,
            k_h,
            k_w,
            padding: options.padding,
        };
        conv.pays().then_some(conv)
    }

    fn pays(&self) -> bool {
        let all = self.k_h * self.k_w * self.out_h * self.out_w;
        let padding = all - self.reading_pairs();
        self.n > 0
            && self.c_in >= MIN_CHANNELS
            && self.c_out >= MIN_CHANNELS
            && all > 0
            && padding * MIN_PADDING_SHARE.1 >= all * MIN_PADDING_SHARE.0
    }

    /// Tap–position pairs of one image's output plane that read the image.
    fn reading_pairs(&self) -> usize {
        let along = |out: usize, size: usize, k: usize, pad: usize| -> usize {
            (0..k).map(|t| span(out, size, t, pad).len()).sum()
        };
        along(self.out_h, self.h, self.k_h, self.padding[0])
            * along(self.out_w, self.w, self.k_w, self.padding[1])
    }

    /// `conv2d(x, weight) + bias`: `x: [n, c_in, h, w]`, `weight: [c_out,
    /// c_in, k_h, k_w]`, `bias: [c_out]` → `[n, c_out, out_h, out_w]`.
    pub(crate) fn conv2d<T: GemmScalar + core::ops::Add<Output = T> + Send + Sync>(
        &self,
        x: FlexTensor,
        weight: FlexTensor,
        bias: Option<FlexTensor>,
    ) -> FlexTensor {
        let weight = weight.to_contiguous();
        let taps = self.k_h * self.k_w;
        let source = Plane::new(self.h, self.w, self.c_in, self.n);
        let target = Plane::new(self.out_h, self.out_w, self.c_out, self.n);
        let sum = TapSum {
            source,
            target,
            k: [self.k_h, self.k_w],
            padding: self.padding,
            // Tap `(i, j)`'s `[c_out, c_in]` block of the weight.
            tap_offset: |i, j| i * self.k_w + j,
            tap_strides: ((self.c_in * taps) as isize, taps as isize),
        };
        let xt = to_planes(&x);
        let sum = sum.run(xt.storage::<T>(), weight.storage::<T>());
        let mut out = target.into_nchw(sum);
        if let Some(bias) = bias {
            let bias = bias.to_contiguous();
            let plane = self.out_h * self.out_w;
            add_bias(
                out.storage_mut::<T>(),
                bias.storage::<T>(),
                self.n,
                self.c_out,
                plane,
                |a, b| a + b,
            );
        }
        out
    }

    /// The input gradient of `conv2d(x, weight)`: `weight: [c_out, c_in,
    /// k_h, k_w]` and `output_grad: [n, c_out, out_h, out_w]` → `[n, c_in,
    /// h, w]`.
    pub(crate) fn input_grad<T: GemmScalar + core::ops::Add<Output = T> + Send + Sync>(
        &self,
        weight: FlexTensor,
        output_grad: FlexTensor,
    ) -> FlexTensor {
        let weight = weight.to_contiguous();
        let taps = self.k_h * self.k_w;
        let source = Plane::new(self.out_h, self.out_w, self.c_out, self.n);
        let target = Plane::new(self.h, self.w, self.c_in, self.n);
        let sum = TapSum {
            source,
            target,
            k: [self.k_h, self.k_w],
            padding: [
                self.k_h - 1 - self.padding[0],
                self.k_w - 1 - self.padding[1],
            ],
            // Flipped tap `(i, j)`'s `[c_out, c_in]` block, read transposed.
            tap_offset: |i, j| (self.k_h - 1 - i) * self.k_w + (self.k_w - 1 - j),
            tap_strides: (taps as isize, (self.c_in * taps) as isize),
        };
        let gt = to_planes(&output_grad);
        target.into_nchw(sum.run(gt.storage::<T>(), weight.storage::<T>()))
    }

    /// The weight gradient of `conv2d(x, weight)`: `x: [n, c_in, h, w]`
    /// and `output_grad: [n, c_out, out_h, out_w]` → `[c_out, c_in, k_h,
    /// k_w]`.
    ///
    /// Tap `(i, j)`'s `[c_out, c_in]` block sums, over the output rows its
    /// tap reads inside the input, `grad[row, :, run, :] · x[row + i − pad_h,
    /// :, run + j − pad_w, :]ᵀ`. Each job owns a block of output channels,
    /// whose rows of the gradient (`block · c_in · k_h · k_w` elements,
    /// written at the taps' column stride) stay in cache across its taps.
    pub(crate) fn weight_grad<T: GemmScalar + Send + Sync>(
        &self,
        x: FlexTensor,
        output_grad: FlexTensor,
    ) -> FlexTensor {
        let source = Plane::new(self.h, self.w, self.c_in, self.n);
        let target = Plane::new(self.out_h, self.out_w, self.c_out, self.n);
        let (xt, gt) = (to_planes(&x), to_planes(&output_grad));
        let (xt, gt) = (xt.storage::<T>(), gt.storage::<T>());
        let (taps, n) = (self.k_h * self.k_w, self.n);
        let per_channel = self.c_in * taps;
        let block = self.weight_grad_block();
        let mut dw = vec![T::zero(); self.c_out * per_channel];
        let job = |(index, dst): (usize, &mut [T])| {
            let (first, channels) = (index * block, dst.len() / per_channel);
            for i in 0..self.k_h {
                for j in 0..self.k_w {
                    let cols = span(self.out_w, self.w, j, self.padding[1]);
                    if cols.is_empty() {
                        continue;
                    }
                    let src_col = cols.start + j - self.padding[1];
                    for row in span(self.out_h, self.h, i, self.padding[0]) {
                        let src_row = row + i - self.padding[0];
                        let grad_at =
                            row * target.row_len() + (first * self.out_w + cols.start) * n;
                        // SAFETY: `dst` holds `channels · c_in · taps`
                        // elements, and the `channels × c_in` block at tap
                        // `(i, j)` (row stride `c_in · taps`, column stride
                        // `taps`) lies inside it; the gradient block
                        // `channels × cols.len()·n` from `(row, first,
                        // cols.start, 0)` lies inside `gt` (row stride
                        // `out_w · n`), and the input block `cols.len()·n ×
                        // c_in` from `(src_row, 0, src_col, 0)` inside `xt`
                        // (column stride `w · n`).
                        unsafe {
                            crate::ops::conv_gemm::gemm_accumulate(
                                true,
                                channels,
                                self.c_in,
                                cols.len() * n,
                                dst.as_mut_ptr().add(i * self.k_w + j),
                                taps as isize,
                                per_channel as isize,
                                gt.as_ptr().add(grad_at),
                                1,
                                (self.out_w * n) as isize,
                                xt.as_ptr().add(src_row * source.row_len() + src_col * n),
                                (self.w * n) as isize,
                                1,
                                gemm::Parallelism::None,
                            );
                        }
                    }
                }
            }
        };
        for_each_chunk(&mut dw, block * per_channel, job);
        let shape = Shape::from(vec![self.c_out, self.c_in, self.k_h, self.k_w]);
        FlexTensor::new(Bytes::from_elems(dw), Layout::contiguous(shape), T::dtype())
    }

    /// Output channels per weight-gradient job: a share of them for every
    /// thread, at most [`WEIGHT_GRAD_MAX_BLOCK`].
    fn weight_grad_block(&self) -> usize {
        #[cfg(feature = "rayon")]
        let threads = rayon::current_num_threads().max(1);
        #[cfg(not(feature = "rayon"))]
        let threads: usize = 1;
        self.c_out.div_ceil(threads).clamp(1, WEIGHT_GRAD_MAX_BLOCK)
    }
}

/// The output positions `lo..hi` along one axis (of `out` positions) whose
/// kernel tap `tap` reads the input (of `size` positions) at `o + tap −
/// pad` rather than the padding.
fn span(out: usize, size: usize, tap: usize, pad: usize) -> core::ops::Range<usize> {
    let lo = pad.saturating_sub(tap).min(out);
    let hi = (size + pad).saturating_sub(tap).min(out);
    lo..hi.max(lo)
}

/// A batch of planes laid out `[rows, channels, cols, n]`.
#[derive(Clone, Copy, Debug)]
struct Plane {
    rows: usize,
    cols: usize,
    channels: usize,
    n: usize,
}

impl Plane {
    fn new(rows: usize, cols: usize, channels: usize, n: usize) -> Self {
        Self {
            rows,
            cols,
            channels,
            n,
        }
    }

    /// Elements per row: `channels · cols · n`.
    fn row_len(&self) -> usize {
        self.channels * self.cols * self.n
    }

    /// The planes `[rows, channels, cols, n]` back as the tensor `[n,
    /// channels, rows, cols]`.
    fn into_nchw<T: GemmScalar>(self, planes: Vec<T>) -> FlexTensor {
        let shape = Shape::from(vec![self.rows, self.channels, self.cols, self.n]);
        FlexTensor::new(
            Bytes::from_elems(planes),
            Layout::contiguous(shape),
            T::dtype(),
        )
        .permute(&[3, 1, 0, 2])
        .to_contiguous()
    }
}

/// `[n, channels, rows, cols]` → `[rows, channels, cols, n]`, the layout
/// of a [`Plane`], as one permuted copy.
fn to_planes(nchw: &FlexTensor) -> FlexTensor {
    nchw.permute(&[2, 1, 3, 0]).to_contiguous()
}

/// Runs `f` on each `(index, chunk)` of `data`, in parallel under `rayon`.
fn for_each_chunk<T: Send, F: Fn((usize, &mut [T])) + Send + Sync>(
    data: &mut [T],
    chunk: usize,
    f: F,
) {
    if chunk == 0 {
        return;
    }
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk).enumerate().for_each(f);
    }
    #[cfg(not(feature = "rayon"))]
    data.chunks_mut(chunk).enumerate().for_each(f);
}

/// `target[r, :, c, :] = Σ_taps A(tap) · source[r + i − pad_h, :, c + j −
/// pad_w, :]` between two [`Plane`]s, over the taps `(i, j)` that read
/// inside `source`; `A(tap)` is the `[target.channels, source.channels]`
/// block of the weight at `tap_offset(i, j)` with `(row, column)` strides
/// `tap_strides`.
struct TapSum<F> {
    source: Plane,
    target: Plane,
    k: [usize; 2],
    padding: [usize; 2],
    tap_offset: F,
    tap_strides: (isize, isize),
}

impl<F: Fn(usize, usize) -> usize + Sync> TapSum<F> {
    /// The sum over `source: [rows, channels, cols, n]`, as the target
    /// plane `[rows, channels, cols, n]`. Each target row (and, with more
    /// threads than rows, each block of its channels) is one job.
    fn run<T: GemmScalar + Send + Sync>(&self, source: &[T], weight: &[T]) -> Vec<T> {
        let target = self.target;
        let mut out = vec![T::zero(); target.rows * target.row_len()];
        let blocks = self.channel_blocks();
        let block = target.channels.div_ceil(blocks);
        let job = |(index, dst): (usize, &mut [T])| {
            let (row, first) = (index / blocks, index % blocks * block);
            let channels = block.min(target.channels - first);
            self.row(source, weight, row, first, channels, dst);
        };
        for_each_chunk(&mut out, block * target.cols * target.n, job);
        out
    }

    /// Channel blocks per target row: enough for every thread to have a
    /// job, none under [`MIN_CHANNELS`] channels.
    fn channel_blocks(&self) -> usize {
        #[cfg(feature = "rayon")]
        let threads = rayon::current_num_threads().max(1);
        #[cfg(not(feature = "rayon"))]
        let threads: usize = 1;
        let wanted = threads.div_ceil(self.target.rows.max(1));
        let most = (self.target.channels / MIN_CHANNELS).max(1);
        // Equal blocks, so that each is one chunk of the row.
        (1..=wanted.min(most))
            .rev()
            .find(|&b| self.target.channels.is_multiple_of(b))
            .unwrap_or(1)
    }

    /// Channels `first..first + channels` of target row `row`, into `dst:
    /// [channels, cols, n]` (zeroed).
    fn row<T: GemmScalar>(
        &self,
        source: &[T],
        weight: &[T],
        row: usize,
        first: usize,
        channels: usize,
        dst: &mut [T],
    ) {
        let (src, tgt) = (self.source, self.target);
        let n = tgt.n;
        for i in 0..self.k[0] {
            if !span(tgt.rows, src.rows, i, self.padding[0]).contains(&row) {
                continue;
            }
            let src_row = row + i - self.padding[0];
            for j in 0..self.k[1] {
                let cols = span(tgt.cols, src.cols, j, self.padding[1]);
                if cols.is_empty() {
                    continue;
                }
                let src_col = cols.start + j - self.padding[1];
                let (rs, cs) = self.tap_strides;
                let lhs = (self.tap_offset)(i, j) + first * rs as usize;
                // SAFETY: `dst` holds `channels · tgt.cols · n` elements and
                // the `channels × cols.len()·n` block from column
                // `cols.start·n` lies inside it (row stride `tgt.cols · n`);
                // the tap's `channels × src.channels` weight block lies
                // inside `weight`, and the source block `src.channels ×
                // cols.len()·n` from `(src_row, 0, src_col, 0)` inside
                // `source` (row stride `src.cols · n`).
                unsafe {
                    crate::ops::conv_gemm::gemm_accumulate(
                        true,
                        channels,
                        cols.len() * n,
                        src.channels,
                        dst.as_mut_ptr().add(cols.start * n),
                        1,
                        (tgt.cols * n) as isize,
                        weight.as_ptr().add(lhs),
                        cs,
                        rs,
                        source.as_ptr().add(src_row * src.row_len() + src_col * n),
                        1,
                        (src.cols * n) as isize,
                        gemm::Parallelism::None,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Flex;
    use burn_backend::{DType, ops::ModuleOps};

    fn tensor(shape: [usize; 4], seed: u32) -> FlexTensor {
        let len: usize = shape.iter().product();
        let data: Vec<f32> = (0..len)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 1000) as f32
                    / 500.0
                    - 1.0
            })
            .collect();
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(Shape::from(shape.to_vec())),
            DType::F32,
        )
    }

    fn dims(t: &FlexTensor) -> [usize; 4] {
        t.layout().shape().dims::<4>()
    }

    /// Every `(output, input, tap)` triple of a stride-1 correlation whose
    /// tap reads the input: `(b, k, oy, ox)`, `(b, c, iy, ix)`, `(k, c, i, j)`
    /// as flat indices into the output, input and weight.
    fn pairs(
        x: [usize; 4],
        weight: [usize; 4],
        padding: [usize; 2],
    ) -> impl Iterator<Item = (usize, usize, usize)> {
        let ([n, c_in, h, w], [c_out, _, k_h, k_w]) = (x, weight);
        let (out_h, out_w) = (h + 2 * padding[0] + 1 - k_h, w + 2 * padding[1] + 1 - k_w);
        (0..n * c_out * out_h * out_w).flat_map(move |o| {
            let (b, k, oy, ox) = (
                o / (c_out * out_h * out_w),
                o / (out_h * out_w) % c_out,
                o / out_w % out_h,
                o % out_w,
            );
            (0..c_in * k_h * k_w).filter_map(move |t| {
                let (c, i, j) = (t / (k_h * k_w), t / k_w % k_h, t % k_w);
                let iy = (oy + i).checked_sub(padding[0]).filter(|&iy| iy < h)?;
                let ix = (ox + j).checked_sub(padding[1]).filter(|&ix| ix < w)?;
                let input = ((b * c_in + c) * h + iy) * w + ix;
                Some((o, input, ((k * c_in + c) * k_h + i) * k_w + j))
            })
        })
    }

    fn assert_close(got: &FlexTensor, expected: &[f64], case: usize) {
        let got = got.storage::<f32>();
        assert_eq!(got.len(), expected.len(), "case {case}: length");
        for (i, (a, b)) in got.iter().zip(expected).enumerate() {
            assert!(
                (*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "case {case}, element {i}: {a} vs {b}"
            );
        }
    }

    // (x shape, weight shape, padding)
    const CASES: [([usize; 4], [usize; 4], [usize; 2]); 6] = [
        // ResNet-18's layer3 at 64², more channels out than in.
        ([3, 64, 4, 4], [80, 64, 3, 3], [1, 1]),
        // Layer4: every tap reads one of the four positions.
        ([2, 72, 2, 2], [64, 72, 3, 3], [1, 1]),
        // A 1×1 plane: only the centre tap reads.
        ([2, 64, 1, 1], [64, 64, 3, 3], [1, 1]),
        // A 3×2 kernel: the input gradient's padding is (1, 0).
        ([2, 64, 3, 2], [96, 64, 3, 2], [1, 1]),
        // 5×5 on 3×3.
        ([1, 64, 3, 3], [64, 64, 5, 5], [2, 2]),
        // Padding 2 under a 3×3: outputs larger than the input.
        ([2, 64, 2, 2], [128, 64, 3, 3], [2, 2]),
    ];

    #[test]
    fn forward_matches_the_definition() {
        for (case, (xs, ws, padding)) in CASES.into_iter().enumerate() {
            let options = ConvOptions::new([1, 1], padding, [1, 1], 1);
            let (x, weight) = (tensor(xs, 3 + case as u32), tensor(ws, 11 + case as u32));
            let bias: Vec<f32> = (0..ws[0]).map(|k| k as f32 / 8.0 - 1.0).collect();
            let conv = SmallPlaneConv::new(x.layout().shape(), weight.layout().shape(), &options)
                .unwrap_or_else(|| panic!("case {case}: not taken"));
            let (out_h, out_w) = (conv.out_h, conv.out_w);
            let mut expected: Vec<f64> = (0..xs[0] * ws[0] * out_h * out_w)
                .map(|o| bias[o / (out_h * out_w) % ws[0]] as f64)
                .collect();
            let (xv, wv) = (x.storage::<f32>(), weight.storage::<f32>());
            for (o, i, t) in pairs(xs, ws, padding) {
                expected[o] += xv[i] as f64 * wv[t] as f64;
            }
            let bias = FlexTensor::new(
                Bytes::from_elems(bias),
                Layout::contiguous(Shape::from(vec![ws[0]])),
                DType::F32,
            );
            let got = conv.conv2d::<f32>(x, weight, Some(bias));
            assert_eq!(
                dims(&got),
                [xs[0], ws[0], out_h, out_w],
                "case {case}: shape"
            );
            assert_close(&got, &expected, case);
        }
    }

    #[test]
    fn input_grad_matches_the_definition() {
        for (case, (xs, ws, padding)) in CASES.into_iter().enumerate() {
            let options = ConvOptions::new([1, 1], padding, [1, 1], 1);
            let weight = tensor(ws, 5 + case as u32);
            let conv =
                SmallPlaneConv::new(&Shape::from(xs.to_vec()), weight.layout().shape(), &options)
                    .unwrap_or_else(|| panic!("case {case}: not taken"));
            let grad = tensor([xs[0], ws[0], conv.out_h, conv.out_w], 23 + case as u32);
            let mut expected = vec![0.0f64; xs.iter().product()];
            let (gv, wv) = (grad.storage::<f32>(), weight.storage::<f32>());
            for (o, i, t) in pairs(xs, ws, padding) {
                expected[i] += gv[o] as f64 * wv[t] as f64;
            }
            let got = conv.input_grad::<f32>(weight, grad);
            assert_eq!(dims(&got), xs, "case {case}: shape");
            assert_close(&got, &expected, case);
        }
    }

    #[test]
    fn weight_grad_matches_the_definition() {
        for (case, (xs, ws, padding)) in CASES.into_iter().enumerate() {
            let options = ConvOptions::new([1, 1], padding, [1, 1], 1);
            let x = tensor(xs, 7 + case as u32);
            let conv = SmallPlaneConv::new(x.layout().shape(), &Shape::from(ws.to_vec()), &options)
                .unwrap_or_else(|| panic!("case {case}: not taken"));
            let grad = tensor([xs[0], ws[0], conv.out_h, conv.out_w], 29 + case as u32);
            let mut expected = vec![0.0f64; ws.iter().product()];
            let (gv, xv) = (grad.storage::<f32>(), x.storage::<f32>());
            for (o, i, t) in pairs(xs, ws, padding) {
                expected[t] += gv[o] as f64 * xv[i] as f64;
            }
            let got = conv.weight_grad::<f32>(x, grad);
            assert_eq!(dims(&got), ws, "case {case}: shape");
            assert_close(&got, &expected, case);
        }
    }

    #[test]
    fn the_backend_takes_it_for_every_float_width() {
        let (xs, ws, padding) = CASES[0];
        let options = ConvOptions::new([1, 1], padding, [1, 1], 1);
        let (x, weight) = (tensor(xs, 41), tensor(ws, 43));
        let conv = SmallPlaneConv::new(x.layout().shape(), weight.layout().shape(), &options)
            .expect("taken");
        let direct = conv.conv2d::<f32>(x.clone(), weight.clone(), None);
        let y = Flex::conv2d(x.clone(), weight.clone(), None, options.clone());
        assert_eq!(y.storage::<f32>(), direct.storage::<f32>());
        let dx = Flex::conv2d_x_backward(x.clone(), weight.clone(), y.clone(), options.clone());
        let expected = conv.input_grad::<f32>(weight.clone(), y.clone());
        assert_eq!(dx.storage::<f32>(), expected.storage::<f32>());
        let dw =
            Flex::conv2d_weight_backward(x.clone(), weight.clone(), y.clone(), options.clone());
        let expected = conv.weight_grad::<f32>(x.clone(), y);
        assert_eq!(dw.storage::<f32>(), expected.storage::<f32>());
        // f64 takes the same path, up to rounding.
        let widen = |t: &FlexTensor| {
            let data: Vec<f64> = t.storage::<f32>().iter().map(|&v| v as f64).collect();
            let layout = Layout::contiguous(t.layout().shape().clone());
            FlexTensor::new(Bytes::from_elems(data), layout, DType::F64)
        };
        let (x64, w64) = (widen(&x), widen(&weight));
        let y64 = Flex::conv2d(x64, w64, None, options);
        for (a, b) in y64.storage::<f64>().iter().zip(direct.storage::<f32>()) {
            assert!(
                (a - *b as f64).abs() <= 1e-4 * (1.0 + a.abs()),
                "{a} vs {b}"
            );
        }
    }

    #[test]
    fn applies_only_where_it_pays() {
        let shape = |s: [usize; 4]| Shape::from(s.to_vec());
        let plain = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let w = shape([64, 64, 3, 3]);
        assert!(SmallPlaneConv::new(&shape([8, 64, 4, 4]), &w, &plain).is_some());
        // 7×7 reads padding in 18% of its pairs, 8×8 in 16%.
        assert!(SmallPlaneConv::new(&shape([8, 64, 7, 7]), &w, &plain).is_none());
        assert!(SmallPlaneConv::new(&shape([8, 64, 8, 8]), &w, &plain).is_none());
        // No padding, nothing to skip.
        let unpadded = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        assert!(SmallPlaneConv::new(&shape([8, 64, 4, 4]), &w, &unpadded).is_none());
        // Strided, dilated, grouped; too few channels; padding past the kernel.
        let strided = ConvOptions::new([2, 2], [1, 1], [1, 1], 1);
        let dilated = ConvOptions::new([1, 1], [1, 1], [2, 2], 1);
        let grouped = ConvOptions::new([1, 1], [1, 1], [1, 1], 2);
        let wide = ConvOptions::new([1, 1], [3, 3], [1, 1], 1);
        let x = shape([8, 64, 4, 4]);
        assert!(SmallPlaneConv::new(&x, &w, &strided).is_none());
        assert!(SmallPlaneConv::new(&x, &w, &dilated).is_none());
        assert!(SmallPlaneConv::new(&x, &shape([64, 32, 3, 3]), &grouped).is_none());
        assert!(
            SmallPlaneConv::new(&shape([8, 32, 4, 4]), &shape([64, 32, 3, 3]), &plain).is_none()
        );
        assert!(SmallPlaneConv::new(&x, &w, &wide).is_none());
    }
}

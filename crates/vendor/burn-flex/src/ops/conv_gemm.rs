//! A 2-D convolution and its gradients as GEMMs over unfolded images.
//!
//! The forward pass ([`conv2d`]) multiplies the weight `[c_out/g,
//! c_in/g·k_h·k_w]` by tiles of unfolded output positions taken across the
//! batch; see its documentation for why not one image at a time.
//!
//! For the gradients, burn-backend 0.21's defaults derive both from other convolutions: the
//! weight gradient is a convolution with batch and channels swapped (the
//! output gradient becomes an `out_h × out_w` kernel, so the im2col GEMMs are
//! `k_h·k_w`-wide slivers, one per input channel), the input gradient a
//! transposed convolution. Measured on ResNet-50 layer shapes (batch 8, 224²,
//! 2 threads) those ran 1.5–3× (input) and 2–11× (weight) slower than
//! PyTorch; a 1×1 `64 → 256` layer's weight gradient took 139 ms against
//! 12 ms.
//!
//! Here, as in PyTorch's and Caffe's CPU convolutions, with
//! `cols: [c_in·k_h·k_w, n·out_h·out_w]` the unfolded input (im2col) and
//! `grads: [c_out, n·out_h·out_w]` the output gradient, per group:
//!
//! - `dW[c_out/g, c_in/g·k_h·k_w] = grads · colsᵀ`
//! - `dcols = Wᵀ · grads`, folded back onto the input (col2im) for `dx`.
//!
//! 3×3 convolutions at stride 1 in f32 over enough positions take the
//! Winograd path instead, forward and input gradient
//! ([`super::conv_winograd`]); stride-1 convolutions on planes small enough
//! that a quarter of their taps read padding (ResNet-18's 4×4 and 2×2 at
//! 64²) take per-tap GEMMs that skip it, all three passes
//! ([`super::conv_small_plane`]).
//!
//! The batch is split between threads, each unfolding and multiplying
//! its own images; gemm's own threading splits only the result, and ran
//! these shapes at a third of the speed (ResNet-50 layer1 3×3 weight
//! gradient: 104 ms threaded, 35 ms split), and on small planes left the
//! unfolding and folding to one thread.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::ops::conv::calculate_conv_output_size;
use burn_backend::{DType, ops::ConvOptions};
use burn_std::{Bytes, Shape, bf16, f16};

use crate::ops::conv_common::add_bias;
use crate::ops::conv_small_plane::SmallPlaneConv;
use crate::ops::conv_winograd::Winograd3x3;
use crate::ops::matmul::{GemmScalar, gemm_call, get_parallelism};
use crate::ops::module::{cast_from_f32, cast_to_f32};
use crate::{FlexTensor, Layout};

/// Inner GEMM dimension (`batch · out_h · out_w`) from which a batch of
/// fewer images than threads is split between them, one image each.
#[cfg(feature = "rayon")]
const SPLIT_BATCH_MIN_INNER: usize = 2048;

/// Gradient of `conv2d(x, weight)` with respect to `weight`.
///
/// - `x`: `[n, c_in, h, w]`; `output_grad`: `[n, c_out, out_h, out_w]`
/// - returns `[c_out, c_in / groups, k_h, k_w]` (`weight_shape`)
pub(crate) fn conv2d_weight_backward(
    x: FlexTensor,
    weight_shape: Shape,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    match x.dtype() {
        DType::F32 => weight_grad::<f32>(x, weight_shape, output_grad, options),
        DType::F64 => weight_grad::<f64>(x, weight_shape, output_grad, options),
        DType::F16 => weight_grad::<f16>(x, weight_shape, output_grad, options),
        DType::BF16 => {
            let x = cast_to_f32(x, bf16::to_f32);
            let output_grad = cast_to_f32(output_grad, bf16::to_f32);
            let grad = weight_grad::<f32>(x, weight_shape, output_grad, options);
            cast_from_f32(grad, bf16::from_f32)
        }
        dtype => panic!("conv2d_weight_backward: unsupported dtype {dtype:?}"),
    }
}

/// Gradient of `conv2d(x, weight)` with respect to `x`.
///
/// - `weight`: `[c_out, c_in / groups, k_h, k_w]`; `output_grad`:
///   `[n, c_out, out_h, out_w]`
/// - returns `[n, c_in, h, w]` (`x_shape`)
pub(crate) fn conv2d_x_backward(
    x_shape: Shape,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    match weight.dtype() {
        DType::F32 => {
            let (grad_shape, w_shape) = (output_grad.layout().shape(), weight.layout().shape());
            match Winograd3x3::for_input_grad(grad_shape, w_shape, options) {
                Some(winograd) => winograd.input_grad(weight, output_grad),
                None => input_grad::<f32>(x_shape, weight, output_grad, options),
            }
        }
        DType::F64 => input_grad::<f64>(x_shape, weight, output_grad, options),
        DType::F16 => input_grad::<f16>(x_shape, weight, output_grad, options),
        DType::BF16 => {
            let weight = cast_to_f32(weight, bf16::to_f32);
            let output_grad = cast_to_f32(output_grad, bf16::to_f32);
            let grad = input_grad::<f32>(x_shape, weight, output_grad, options);
            cast_from_f32(grad, bf16::from_f32)
        }
        dtype => panic!("conv2d_x_backward: unsupported dtype {dtype:?}"),
    }
}

/// `conv2d(x, weight) + bias` as GEMMs over unfolded tiles of output
/// positions, for the convolutions `conv.rs` has no direct path for
/// ([`super::conv::conv2d_has_direct_path`]).
///
/// burn-flex 0.21 unfolded one image (or a 512-position tile of one) per
/// GEMM: on small feature maps (ResNet's layer4 at 2×2) that is a GEMM of
/// four columns that repacks the whole weight for each image. Here a tile
/// is a run of flat positions over `[n, out_h, out_w]` that may span
/// images, sized to keep its unfolded copy in L2 and to give every thread
/// several tiles; each tile's GEMM runs single-threaded, side by side (one tile's GEMM
/// is threaded when there are fewer tiles than threads).
///
/// - `x`: `[n, c_in, h, w]`; `weight`: `[c_out, c_in / groups, k_h, k_w]`;
///   `bias`: `[c_out]`
/// - returns `[n, c_out, out_h, out_w]`
pub(crate) fn conv2d(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    match x.dtype() {
        DType::F32 => {
            match Winograd3x3::for_forward(x.layout().shape(), weight.layout().shape(), options) {
                Some(winograd) => winograd.conv2d(x, weight, bias),
                None => forward::<f32>(x, weight, bias, options),
            }
        }
        DType::F64 => forward::<f64>(x, weight, bias, options),
        DType::F16 => forward::<f16>(x, weight, bias, options),
        DType::BF16 => {
            let x = cast_to_f32(x, bf16::to_f32);
            let weight = cast_to_f32(weight, bf16::to_f32);
            let bias = bias.map(|bias| cast_to_f32(bias, bf16::to_f32));
            cast_from_f32(forward::<f32>(x, weight, bias, options), bf16::from_f32)
        }
        dtype => panic!("conv2d: unsupported dtype {dtype:?}"),
    }
}

/// Unfolded bytes per forward tile: small enough to stay in a core's L2
/// cache between the unfolding and the GEMM that reads it.
const FORWARD_TILE_BYTES: usize = 1 << 20;
/// Fewest output positions per forward tile: below this the GEMM repacks
/// the weight for too few columns.
const FORWARD_MIN_TILE: usize = 64;
/// Most output positions per forward tile.
const FORWARD_MAX_TILE: usize = 1024;

fn forward<T: GemmScalar + core::ops::Add<Output = T> + Send + Sync>(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    if let Some(conv) = SmallPlaneConv::new(x.layout().shape(), weight.layout().shape(), options) {
        return conv.conv2d::<T>(x, weight, bias);
    }
    let x = x.to_contiguous();
    let weight = weight.to_contiguous();
    let (x_shape, w_shape) = (x.layout().shape(), weight.layout().shape());
    let out_size = |axis: usize| {
        calculate_conv_output_size(
            w_shape[2 + axis],
            options.stride[axis],
            options.padding[axis],
            options.dilation[axis],
            x_shape[2 + axis],
        )
    };
    let out_shape = Shape::from(vec![x_shape[0], w_shape[0], out_size(0), out_size(1)]);
    let geometry = Geometry::new(x_shape, w_shape, &out_shape, options);
    let plane = geometry.out_h * geometry.out_w;
    let positions = geometry.n * plane;
    let mut out: Vec<T> = vec![T::zero(); out_shape.num_elements()];
    if positions > 0 && geometry.row_len() > 0 {
        let (tile, parallelism) = geometry.forward_tiling(positions, core::mem::size_of::<T>());
        let (x, weight) = (x.storage::<T>(), weight.storage::<T>());
        let out_ptr = crate::ops::SendMutPtr::new(out.as_mut_ptr());
        let run = |start: usize| {
            let end = (start + tile).min(positions);
            let result = geometry.forward_tile(x, weight, start..end, parallelism);
            // SAFETY: tiles cover disjoint output positions, and every
            // position `(b, p)` of this tile owns the `c_out` elements
            // `out[b, :, p]`, which lie inside `out`.
            unsafe { geometry.scatter_tile(&result, start..end, &out_ptr) };
        };
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            (0..positions).into_par_iter().step_by(tile).for_each(run);
        }
        #[cfg(not(feature = "rayon"))]
        (0..positions).step_by(tile).for_each(run);
    }
    if let Some(bias) = bias {
        let bias = bias.to_contiguous();
        add_bias(
            &mut out,
            bias.storage::<T>(),
            geometry.n,
            geometry.c_out,
            plane,
            |a, b| a + b,
        );
    }
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(out_shape),
        T::dtype(),
    )
}

/// Output plane (`out_h · out_w`) from which the gradients of a pointwise
/// convolution ([`Geometry::is_pointwise`]) multiply each image in place
/// instead of unfolding the batch: smaller planes make short GEMMs. (Its
/// forward pass never comes here: `conv.rs` runs 1×1s in place.)
const POINTWISE_MIN_PLANE: usize = 196;

/// Output plane from which the gradients of other convolutions work in
/// tiles of positions within each image (unfolded [`FORWARD_TILE_BYTES`]
/// at a time, as the forward's) instead of unfolding whole images or the
/// whole batch: a ResNet-50 layer1 3×3 unfolds 7 MB per image, and a
/// 16×16 plane's batch of 32 (ResNet-18 at 64²) 19 MB, which the GEMM then
/// streams from memory. Below it (8×8, 14×14) a plane's GEMMs get too short.
const GRAD_TILE_MIN_PLANE: usize = 256;

/// Most output channels (per group) for which the weight gradient is
/// accumulated transposed ([`Geometry::weight_grad_transposed`]). Measured
/// on ResNet layer shapes (2 threads, AVX-512): 10–17% faster at 64 and 128
/// channels out (the stems, 1×1 `256 → 64`, the 3×3s of layers 1–2), level
/// at 256, and 15–60% slower at 512, where the packed output gradient spans
/// eight microkernel panels that cycle through L2 for every six columns of
/// the result.
const WEIGHT_GRAD_TRANSPOSED_MAX_OUT: usize = 128;

/// Sizes of one convolution and how its batch is shared between threads.
#[derive(Clone, Copy)]
struct Geometry {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    out_h: usize,
    out_w: usize,
    k_h: usize,
    k_w: usize,
    groups: usize,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl Geometry {
    fn new(x: &Shape, weight: &Shape, output: &Shape, options: &ConvOptions<2>) -> Self {
        Self {
            n: x[0],
            c_in: x[1],
            h: x[2],
            w: x[3],
            c_out: output[1],
            out_h: output[2],
            out_w: output[3],
            k_h: weight[2],
            k_w: weight[3],
            groups: options.groups,
            stride: options.stride,
            padding: options.padding,
            dilation: options.dilation,
        }
    }

    /// A 1×1 convolution at stride 1 without padding on a plane of at
    /// least [`POINTWISE_MIN_PLANE`]: each image's `[c_in, h·w]` is already
    /// its unfolded matrix, and its output gradient `[c_out, h·w]` the
    /// GEMM operand, so the gradients' GEMMs read and write the tensors in
    /// place (no im2col, col2im or reordering copies).
    fn is_pointwise(&self) -> bool {
        self.k_h == 1
            && self.k_w == 1
            && self.stride == [1, 1]
            && self.padding == [0, 0]
            && self.out_h * self.out_w >= POINTWISE_MIN_PLANE
    }

    /// Positions per gradient tile ([`GRAD_TILE_MIN_PLANE`]), `None` to
    /// unfold whole images.
    fn grad_tile(&self, elem_size: usize) -> Option<usize> {
        let plane = self.out_h * self.out_w;
        (plane >= GRAD_TILE_MIN_PLANE).then(|| {
            let rows = self.c_in * self.k_h * self.k_w;
            (FORWARD_TILE_BYTES / (rows * elem_size).max(1))
                .clamp(FORWARD_MIN_TILE, FORWARD_MAX_TILE)
        })
    }

    /// The tiles of image `b`'s output plane: `(flat positions, offset in
    /// the plane)`.
    fn plane_tiles(
        &self,
        b: usize,
        tile: usize,
    ) -> impl Iterator<Item = (core::ops::Range<usize>, usize)> {
        let plane = self.out_h * self.out_w;
        (0..plane)
            .step_by(tile)
            .map(move |p| (b * plane + p..b * plane + (p + tile).min(plane), p))
    }

    fn out_per_group(&self) -> usize {
        self.c_out / self.groups
    }

    /// Length of one group's unfolded column: `c_in/groups · k_h · k_w`.
    fn row_len(&self) -> usize {
        self.c_in / self.groups * self.k_h * self.k_w
    }

    /// Images per thread when the batch is split between threads, `None`
    /// for one chunk with a threaded GEMM. The batch is split whenever it
    /// has an image per thread, and below that from an inner dimension of
    /// [`SPLIT_BATCH_MIN_INNER`]. On small planes a single threaded GEMM
    /// left the unfolding and folding around it to one thread: splitting
    /// measured level or faster on every ResNet-18 layer at batch 32 and
    /// 64², up to 5.1 → 3.2 ms for layer4's input gradient (2×2 plane) and
    /// 3.4 → 2.9 ms for layer3's weight gradient (4×4), its partial
    /// weight gradients' sum included.
    fn images_per_thread(&self) -> Option<usize> {
        #[cfg(feature = "rayon")]
        {
            let threads = rayon::current_num_threads().max(1);
            if self.n >= threads || self.n * self.out_h * self.out_w >= SPLIT_BATCH_MIN_INNER {
                return Some(self.n.div_ceil(threads.min(self.n).max(1)));
            }
        }
        None
    }

    /// Images per chunk, and how each chunk's GEMM (`m × k` by `k × n`
    /// over the whole batch) is threaded.
    fn chunking(&self, m: usize, n: usize, k: usize) -> (usize, gemm::Parallelism) {
        match self.images_per_thread() {
            Some(images) => (images, gemm::Parallelism::None),
            None => (self.n.max(1), get_parallelism(m, n, k)),
        }
    }

    /// Output positions per forward tile, and how each tile's GEMM is
    /// threaded: tiles run in parallel with single-threaded GEMMs when there
    /// are enough of them, else one tile's GEMM is threaded.
    fn forward_tiling(&self, positions: usize, elem_size: usize) -> (usize, gemm::Parallelism) {
        let rows = self.c_in * self.k_h * self.k_w;
        let by_cache = (FORWARD_TILE_BYTES / (rows * elem_size).max(1))
            .clamp(FORWARD_MIN_TILE, FORWARD_MAX_TILE);
        #[cfg(feature = "rayon")]
        {
            let threads = rayon::current_num_threads().max(1);
            let balanced = positions.div_ceil(4 * threads).max(FORWARD_MIN_TILE);
            let tile = by_cache.min(balanced);
            if positions.div_ceil(tile) < threads {
                return (
                    positions,
                    get_parallelism(self.out_per_group(), positions, self.row_len()),
                );
            }
            (tile, gemm::Parallelism::None)
        }
        #[cfg(not(feature = "rayon"))]
        {
            let _ = positions;
            (by_cache, gemm::Parallelism::None)
        }
    }

    /// The convolution at the flat output positions `range` (over `[n,
    /// out_h, out_w]`), as `[c_out, range.len()]`.
    fn forward_tile<T: GemmScalar>(
        &self,
        x: &[T],
        weight: &[T],
        range: core::ops::Range<usize>,
        parallelism: gemm::Parallelism,
    ) -> Vec<T> {
        let (out_per_group, row_len) = (self.out_per_group(), self.row_len());
        let len = range.len();
        let cols = self.unfold_positions(x, range);
        let mut result: Vec<T> = vec![T::zero(); self.c_out * len];
        for group in 0..self.groups {
            // SAFETY: `weight` holds `c_out · row_len`, `cols` `groups ·
            // row_len · len`, `result` `c_out · len` elements; the group's
            // `out_per_group × row_len`, `row_len × len` and `out_per_group
            // × len` blocks lie inside them.
            unsafe {
                gemm_call(
                    out_per_group,
                    len,
                    row_len,
                    result.as_mut_ptr().add(group * out_per_group * len),
                    1,
                    len as isize,
                    weight.as_ptr().add(group * out_per_group * row_len),
                    1,
                    row_len as isize,
                    cols.as_ptr().add(group * row_len * len),
                    1,
                    len as isize,
                    parallelism,
                );
            }
        }
        result
    }

    /// Writes a tile's `[c_out, range.len()]` result to its places in the
    /// `[n, c_out, out_h, out_w]` output.
    ///
    /// # Safety
    /// `out` points at `n · c_out · out_h · out_w` elements, and no other
    /// thread writes the positions in `range`.
    unsafe fn scatter_tile<T: Copy>(
        &self,
        result: &[T],
        range: core::ops::Range<usize>,
        out: &crate::ops::SendMutPtr<T>,
    ) {
        let plane = self.out_h * self.out_w;
        let len = range.len();
        for (position, run) in runs_within(range.clone(), plane) {
            let (b, p) = (position / plane, position % plane);
            let offset = position - range.start;
            for channel in 0..self.c_out {
                let src = &result[channel * len + offset..][..run];
                let dst = (b * self.c_out + channel) * plane + p;
                // SAFETY: as the caller promises.
                unsafe {
                    core::ptr::copy_nonoverlapping(src.as_ptr(), out.ptr_add(dst), run);
                }
            }
        }
    }

    /// The output rows the flat positions `range` (over `[n, out_h,
    /// out_w]`) cover, in order, as `(image, output row, first column,
    /// length, offset from range.start)`. Advances row by row rather than
    /// dividing each run's position: on small planes (2×2, 4×4) the runs are
    /// a few elements long and the divisions cost more than the copies.
    fn row_runs(
        &self,
        range: core::ops::Range<usize>,
    ) -> impl Iterator<Item = (usize, usize, usize, usize, usize)> {
        let (out_h, out_w) = (self.out_h, self.out_w);
        let plane = (out_h * out_w).max(1);
        let (start, end) = (range.start, range.end);
        let (mut b, mut oy, mut ox) = (
            start / plane,
            start % plane / out_w.max(1),
            start % out_w.max(1),
        );
        let mut position = start;
        core::iter::from_fn(move || {
            (position < end).then(|| {
                let run = (out_w - ox).min(end - position);
                let item = (b, oy, ox, run, position - start);
                position += run;
                ox = 0;
                oy += 1;
                if oy == out_h {
                    oy = 0;
                    b += 1;
                }
                item
            })
        })
    }

    /// im2col over flat output positions: `x: [n, c_in, h, w]` →
    /// `[c_in·k_h·k_w, range.len()]`, row `(c, i, j)` holding the input seen
    /// by kernel tap `(i, j)` at each position (zero in the padding).
    fn unfold_positions<T: GemmScalar>(&self, x: &[T], range: core::ops::Range<usize>) -> Vec<T> {
        let (h, w) = (self.h, self.w);
        let len = range.len();
        let mut cols: Vec<T> = vec![T::zero(); self.c_in * self.k_h * self.k_w * len];
        for (row, dst) in cols.chunks_mut(len.max(1)).enumerate() {
            let (c, i, j) = self.tap(row);
            let (lo, hi) = self.valid_outputs(1, j, w);
            for (b, oy, ox0, run, offset) in self.row_runs(range.clone()) {
                let ox1 = ox0 + run;
                if let Some(iy) = self.source(0, oy, i, h) {
                    let src = &x[((b * self.c_in + c) * h + iy) * w..][..w];
                    let (from, to) = (lo.max(ox0), hi.min(ox1));
                    if from < to {
                        let seg = &mut dst[offset + from - ox0..][..to - from];
                        let first = from * self.stride[1] + j * self.dilation[1] - self.padding[1];
                        gather_strided(seg, &src[first..], self.stride[1]);
                    }
                }
            }
        }
        cols
    }

    /// The output positions `lo..hi` along `axis` whose kernel tap `i`
    /// reads the input rather than the padding.
    fn valid_outputs(&self, axis: usize, i: usize, size: usize) -> (usize, usize) {
        let out = if axis == 0 { self.out_h } else { self.out_w };
        let (stride, pad) = (self.stride[axis], self.padding[axis]);
        let offset = i * self.dilation[axis];
        let lo = pad.saturating_sub(offset).div_ceil(stride);
        let hi = if size + pad > offset {
            ((size + pad - offset - 1) / stride + 1).min(out)
        } else {
            0
        };
        (lo.min(hi), hi)
    }

    /// Whether the weight gradient is accumulated transposed, each group's
    /// block as `[row_len, out_per_group]` instead of `[out_per_group,
    /// row_len]` ([`Self::weight_grad_block`]).
    ///
    /// Both operands of the weight gradient's GEMM, the output gradient
    /// `[c_out, positions]` and the unfolded input `[row_len, positions]`,
    /// run along the GEMM's inner dimension. gemm 0.19 vectorises its
    /// microkernel along the destination's contiguous axis and packs the
    /// operand that runs along that axis, which here means gathering it
    /// element by element (`pack_generic_inner_loop`: 5.8% of the samples
    /// of a ResNet-18 training step at 64², all of it here). A destination
    /// laid out `[row_len, out_per_group]` makes gemm pack the output
    /// gradient instead of the unfolded input, the smaller of the two
    /// whenever `out_per_group < row_len` (9× smaller for a 3×3 with as many
    /// channels out as in), up to [`WEIGHT_GRAD_TRANSPOSED_MAX_OUT`]
    /// channels out. That gradient is itself transposed first, a tile at a
    /// time ([`transpose_into`]), so that gemm reads it down its columns in
    /// place rather than gathering it: gemm's gather had still taken 40% of
    /// the stem's weight gradient (ResNet-18, batch 32, 64²).
    fn weight_grad_transposed(&self) -> bool {
        self.out_per_group() < self.row_len()
            && self.out_per_group() <= WEIGHT_GRAD_TRANSPOSED_MAX_OUT
    }

    /// Where group `group`'s `out_per_group × row_len` weight gradient lies
    /// in the buffer [`Self::weight_grad_of_images`] fills: `(offset, column
    /// stride, row stride)`.
    fn weight_grad_block(&self, group: usize) -> (usize, isize, isize) {
        let (rows, cols) = (self.out_per_group(), self.row_len());
        let offset = group * rows * cols;
        if self.weight_grad_transposed() {
            (offset, rows as isize, 1)
        } else {
            (offset, 1, cols as isize)
        }
    }

    /// `dW` contributed by the `nb` images `x: [nb, c_in, h, w]` with output
    /// gradient `output_grad: [nb, c_out, out_h, out_w]`, each group's block
    /// laid out as [`Self::weight_grad_block`] says.
    fn weight_grad_of_images<T: GemmScalar>(
        &self,
        x: &[T],
        output_grad: &[T],
        nb: usize,
        parallelism: gemm::Parallelism,
    ) -> Vec<T> {
        let (out_per_group, row_len) = (self.out_per_group(), self.row_len());
        let inner = nb * self.out_h * self.out_w;
        let mut weight_grad: Vec<T> = vec![T::zero(); self.c_out * row_len];
        if inner == 0 {
            return weight_grad;
        }
        if self.is_pointwise() {
            let plane = self.out_h * self.out_w;
            for b in 0..nb {
                for group in 0..self.groups {
                    let (offset, dst_cs, dst_rs) = self.weight_grad_block(group);
                    // SAFETY: `output_grad` holds `nb · c_out · plane`, `x`
                    // `nb · c_in · plane` and `weight_grad` `c_out · row_len`
                    // elements; the image's `out_per_group × plane` gradient
                    // block, its `plane × row_len` input block (read
                    // transposed) and the group's `out_per_group × row_len`
                    // block lie inside them.
                    unsafe {
                        gemm_accumulate(
                            b > 0,
                            out_per_group,
                            row_len,
                            plane,
                            weight_grad.as_mut_ptr().add(offset),
                            dst_cs,
                            dst_rs,
                            output_grad
                                .as_ptr()
                                .add((b * self.c_out + group * out_per_group) * plane),
                            1,
                            plane as isize,
                            x.as_ptr().add((b * self.c_in + group * row_len) * plane),
                            plane as isize,
                            1,
                            parallelism,
                        );
                    }
                }
            }
            return weight_grad;
        }
        // Transposed, the output gradient goes to gemm as `[positions,
        // c_out]`, down whose columns its microkernel runs, instead of being
        // gathered element by element into panels (the stem's weight
        // gradient spent 40% of its time there).
        let transposed = self.weight_grad_transposed();
        if let Some(tile) = self.grad_tile(core::mem::size_of::<T>()) {
            let plane = self.out_h * self.out_w;
            let mut grad_rows: Vec<T> =
                vec![T::zero(); if transposed { self.c_out * tile } else { 0 }];
            for b in 0..nb {
                for (range, p) in self.plane_tiles(b, tile) {
                    let len = range.len();
                    let cols = self.unfold_positions(x, range);
                    let grad = &output_grad[b * self.c_out * plane + p..];
                    if transposed {
                        transpose_into(grad, self.c_out, len, plane, &mut grad_rows);
                    }
                    for group in 0..self.groups {
                        let (offset, dst_cs, dst_rs) = self.weight_grad_block(group);
                        let (lhs, lhs_cs, lhs_rs) = if transposed {
                            (&grad_rows[group * out_per_group..], self.c_out, 1)
                        } else {
                            (&grad[group * out_per_group * plane..], 1, plane)
                        };
                        // SAFETY: `weight_grad` holds `c_out · row_len`
                        // elements and `cols` `groups · row_len · len`; the
                        // group's `out_per_group × row_len` block, its `len
                        // × row_len` block of `cols` (read transposed) and
                        // the tile's `out_per_group × len` gradient block
                        // (in `grad_rows` at row stride 1 and column stride
                        // `c_out`, or in `output_grad` at row stride
                        // `plane`) lie inside them.
                        unsafe {
                            gemm_accumulate(
                                true,
                                out_per_group,
                                row_len,
                                len,
                                weight_grad.as_mut_ptr().add(offset),
                                dst_cs,
                                dst_rs,
                                lhs.as_ptr(),
                                lhs_cs as isize,
                                lhs_rs as isize,
                                cols.as_ptr().add(group * row_len * len),
                                len as isize,
                                1,
                                parallelism,
                            );
                        }
                    }
                }
            }
            return weight_grad;
        }
        let cols = self.unfold_positions(x, 0..inner);
        let plane = self.out_h * self.out_w;
        let grads = if transposed {
            positions_first(output_grad, nb, self.c_out, plane)
        } else {
            channels_first(output_grad, nb, self.c_out, plane)
        };
        for group in 0..self.groups {
            let (offset, dst_cs, dst_rs) = self.weight_grad_block(group);
            let (lhs, lhs_cs, lhs_rs) = if transposed {
                (&grads[group * out_per_group..], self.c_out, 1)
            } else {
                (&grads[group * out_per_group * inner..], 1, inner)
            };
            // SAFETY: `grads` holds `c_out · inner`, `cols` `groups · row_len
            // · inner`, `weight_grad` `c_out · row_len` elements; the group's
            // `out_per_group × inner` (at the strides chosen above), `inner ×
            // row_len` (read transposed) and `out_per_group × row_len`
            // blocks lie inside them.
            unsafe {
                gemm_call(
                    out_per_group,
                    row_len,
                    inner,
                    weight_grad.as_mut_ptr().add(offset),
                    dst_cs,
                    dst_rs,
                    lhs.as_ptr(),
                    lhs_cs as isize,
                    lhs_rs as isize,
                    cols.as_ptr().add(group * row_len * inner),
                    inner as isize,
                    1,
                    parallelism,
                );
            }
        }
        weight_grad
    }

    /// `dx` for the `nb` images whose output gradient is `output_grad: [nb,
    /// c_out, out_h, out_w]`, written into `dx: [nb, c_in, h, w]` (zeroed).
    fn input_grad_of_images<T: GemmScalar + core::ops::Add<Output = T>>(
        &self,
        weight: &[T],
        output_grad: &[T],
        nb: usize,
        dx: &mut [T],
        parallelism: gemm::Parallelism,
    ) {
        let (out_per_group, row_len) = (self.out_per_group(), self.row_len());
        let inner = nb * self.out_h * self.out_w;
        if inner == 0 {
            return;
        }
        if self.is_pointwise() {
            let plane = self.out_h * self.out_w;
            for b in 0..nb {
                for group in 0..self.groups {
                    // SAFETY: `dx` holds `nb · c_in · plane`, `weight` `c_out
                    // · row_len` and `output_grad` `nb · c_out · plane`
                    // elements; the image's `row_len × plane` block of `dx`,
                    // the group's weight block (read transposed) and the
                    // image's `out_per_group × plane` gradient block lie
                    // inside them, and each `dx` element is written once.
                    unsafe {
                        gemm_call(
                            row_len,
                            plane,
                            out_per_group,
                            dx.as_mut_ptr()
                                .add((b * self.c_in + group * row_len) * plane),
                            1,
                            plane as isize,
                            weight.as_ptr().add(group * out_per_group * row_len),
                            row_len as isize,
                            1,
                            output_grad
                                .as_ptr()
                                .add((b * self.c_out + group * out_per_group) * plane),
                            1,
                            plane as isize,
                            parallelism,
                        );
                    }
                }
            }
            return;
        }
        if let Some(tile) = self.grad_tile(core::mem::size_of::<T>()) {
            let plane = self.out_h * self.out_w;
            // One buffer for every tile: the GEMMs overwrite what they use.
            let mut buffer: Vec<T> = vec![T::zero(); self.groups * row_len * tile];
            for b in 0..nb {
                for (range, p) in self.plane_tiles(b, tile) {
                    let len = range.len();
                    let cols = &mut buffer[..self.groups * row_len * len];
                    for group in 0..self.groups {
                        // SAFETY: `cols` holds `groups · row_len · len`,
                        // `weight` `c_out · row_len` and `output_grad` `nb ·
                        // c_out · plane` elements; the group's `row_len ×
                        // len` block, its weight block (read transposed) and
                        // the tile's `out_per_group × len` gradient block
                        // (row stride `plane`) lie inside them.
                        unsafe {
                            gemm_call(
                                row_len,
                                len,
                                out_per_group,
                                cols.as_mut_ptr().add(group * row_len * len),
                                1,
                                len as isize,
                                weight.as_ptr().add(group * out_per_group * row_len),
                                row_len as isize,
                                1,
                                output_grad
                                    .as_ptr()
                                    .add((b * self.c_out + group * out_per_group) * plane + p),
                                1,
                                plane as isize,
                                parallelism,
                            );
                        }
                    }
                    self.fold_positions(cols, range, dx);
                }
            }
            return;
        }
        let grads = channels_first(output_grad, nb, self.c_out, self.out_h * self.out_w);
        let mut cols: Vec<T> = vec![T::zero(); self.groups * row_len * inner];
        for group in 0..self.groups {
            // SAFETY: `weight` holds `c_out · row_len`, `grads` `c_out ·
            // inner`, `cols` `groups · row_len · inner` elements; the group's
            // `row_len × out_per_group` (weight read transposed),
            // `out_per_group × inner` and `row_len × inner` blocks lie
            // inside them.
            unsafe {
                gemm_call(
                    row_len,
                    inner,
                    out_per_group,
                    cols.as_mut_ptr().add(group * row_len * inner),
                    1,
                    inner as isize,
                    weight.as_ptr().add(group * out_per_group * row_len),
                    row_len as isize,
                    1,
                    grads.as_ptr().add(group * out_per_group * inner),
                    1,
                    inner as isize,
                    parallelism,
                );
            }
        }
        self.fold_positions(&cols, 0..inner, dx);
    }

    /// The input position read by kernel tap `i` at output position `o`
    /// along one axis, if it is not padding.
    #[inline]
    fn source(&self, axis: usize, o: usize, i: usize, size: usize) -> Option<usize> {
        let at = (o * self.stride[axis] + i * self.dilation[axis]) as isize
            - self.padding[axis] as isize;
        (at >= 0 && at < size as isize).then_some(at as usize)
    }

    /// col2im over flat output positions, the adjoint of
    /// [`Self::unfold_positions`]: adds every entry of `cols: [c_in·k_h·k_w,
    /// range.len()]` back onto the input position it was read from, in `dx:
    /// [n, c_in, h, w]` (padding taps are skipped). Each row's runs are
    /// contiguous in `dx` at stride 1, so they add as slices; per input
    /// element the rows add in order, as the element-wise col2im did.
    fn fold_positions<T: GemmScalar + core::ops::Add<Output = T>>(
        &self,
        cols: &[T],
        range: core::ops::Range<usize>,
        dx: &mut [T],
    ) {
        let (h, w) = (self.h, self.w);
        let len = range.len();
        for (row, src) in cols.chunks(len.max(1)).enumerate() {
            let (c, i, j) = self.tap(row);
            let (lo, hi) = self.valid_outputs(1, j, w);
            for (b, oy, ox0, run, offset) in self.row_runs(range.clone()) {
                let ox1 = ox0 + run;
                let Some(iy) = self.source(0, oy, i, h) else {
                    continue;
                };
                let (from, to) = (lo.max(ox0), hi.min(ox1));
                if from >= to {
                    continue;
                }
                let dst = &mut dx[((b * self.c_in + c) * h + iy) * w..][..w];
                let seg = &src[offset + from - ox0..][..to - from];
                let first = from * self.stride[1] + j * self.dilation[1] - self.padding[1];
                scatter_add_strided(&mut dst[first..], seg, self.stride[1]);
            }
        }
    }

    /// Unfolded row → (input channel, kernel row, kernel column).
    fn tap(&self, row: usize) -> (usize, usize, usize) {
        let taps = self.k_h * self.k_w;
        (row / taps, (row % taps) / self.k_w, row % self.k_w)
    }
}

fn weight_grad<T: GemmScalar + core::ops::Add<Output = T> + Send + Sync>(
    x: FlexTensor,
    weight_shape: Shape,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    if let Some(conv) = SmallPlaneConv::new(x.layout().shape(), &weight_shape, options) {
        return conv.weight_grad::<T>(x, output_grad);
    }
    let x = x.to_contiguous();
    let output_grad = output_grad.to_contiguous();
    let geometry = Geometry::new(
        x.layout().shape(),
        &weight_shape,
        output_grad.layout().shape(),
        options,
    );
    let inner = geometry.n * geometry.out_h * geometry.out_w;
    let (per_chunk, parallelism) =
        geometry.chunking(geometry.out_per_group(), geometry.row_len(), inner);
    let image_in = (geometry.c_in * geometry.h * geometry.w).max(1);
    let image_out = (geometry.c_out * geometry.out_h * geometry.out_w).max(1);
    let (x, output_grad) = (x.storage::<T>(), output_grad.storage::<T>());
    let partial = |(x, output_grad): (&[T], &[T])| {
        let nb = x.len() / image_in;
        geometry.weight_grad_of_images(x, output_grad, nb, parallelism)
    };
    let chunks = x
        .chunks(per_chunk * image_in)
        .zip(output_grad.chunks(per_chunk * image_out));
    #[cfg(feature = "rayon")]
    let partials: Vec<Vec<T>> = {
        use rayon::prelude::*;
        let chunks: Vec<_> = chunks.collect();
        chunks.into_par_iter().map(partial).collect()
    };
    #[cfg(not(feature = "rayon"))]
    let partials: Vec<Vec<T>> = chunks.map(partial).collect();

    let mut partials = partials.into_iter();
    let mut weight_grad = partials
        .next()
        .unwrap_or_else(|| vec![T::zero(); weight_shape.num_elements()]);
    for other in partials {
        for (sum, value) in weight_grad.iter_mut().zip(other) {
            *sum = *sum + value;
        }
    }
    if geometry.weight_grad_transposed() {
        let blocks = Shape::from(vec![
            geometry.groups,
            geometry.row_len(),
            geometry.out_per_group(),
        ]);
        return FlexTensor::new(
            Bytes::from_elems(weight_grad),
            Layout::contiguous(blocks),
            T::dtype(),
        )
        .transpose(1, 2)
        .to_contiguous()
        .reshape(weight_shape);
    }
    FlexTensor::new(
        Bytes::from_elems(weight_grad),
        Layout::contiguous(weight_shape),
        T::dtype(),
    )
}

fn input_grad<T: GemmScalar + core::ops::Add<Output = T> + Send + Sync>(
    x_shape: Shape,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    if let Some(conv) = SmallPlaneConv::new(&x_shape, weight.layout().shape(), options) {
        return conv.input_grad::<T>(weight, output_grad);
    }
    let weight = weight.to_contiguous();
    let output_grad = output_grad.to_contiguous();
    let geometry = Geometry::new(
        &x_shape,
        weight.layout().shape(),
        output_grad.layout().shape(),
        options,
    );
    let inner = geometry.n * geometry.out_h * geometry.out_w;
    let (per_chunk, parallelism) =
        geometry.chunking(geometry.row_len(), inner, geometry.out_per_group());
    let image_in = geometry.c_in * geometry.h * geometry.w;
    let image_out = (geometry.c_out * geometry.out_h * geometry.out_w).max(1);
    let (weight, output_grad) = (weight.storage::<T>(), output_grad.storage::<T>());
    let mut dx: Vec<T> = vec![T::zero(); x_shape.num_elements()];
    // Each chunk of images owns its slice of `dx`: no reduction.
    let run = |(dx, output_grad): (&mut [T], &[T])| {
        let nb = output_grad.len() / image_out;
        geometry.input_grad_of_images(weight, output_grad, nb, dx, parallelism);
    };
    if image_in > 0 {
        let chunks = dx
            .chunks_mut(per_chunk * image_in)
            .zip(output_grad.chunks(per_chunk * image_out));
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            let chunks: Vec<_> = chunks.collect();
            chunks.into_par_iter().for_each(run);
        }
        #[cfg(not(feature = "rayon"))]
        chunks.for_each(run);
    }
    FlexTensor::new(
        Bytes::from_elems(dx),
        Layout::contiguous(x_shape),
        T::dtype(),
    )
}

/// `dst = (accumulate ? dst : 0) + lhs · rhs`, strides as [`gemm_call`]'s.
///
/// # Safety
/// As [`gemm_call`]: every pointer addresses its whole strided block.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_accumulate<T: GemmScalar>(
    accumulate: bool,
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_cs: isize,
    dst_rs: isize,
    lhs: *const T,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const T,
    rhs_cs: isize,
    rhs_rs: isize,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: as the caller promises.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs,
            dst_rs,
            accumulate,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `[n, c, plane]` → `[c, n·plane]`.
fn channels_first<T: GemmScalar>(data: &[T], n: usize, c: usize, plane: usize) -> Vec<T> {
    let mut out: Vec<T> = vec![T::zero(); c * n * plane];
    for (channel, dst) in out.chunks_mut(n * plane).enumerate() {
        for b in 0..n {
            dst[b * plane..][..plane].copy_from_slice(&data[(b * c + channel) * plane..][..plane]);
        }
    }
    out
}

/// `dst[k] = src[k · stride]` for every `k < dst.len()`. Stride 2 (the
/// stems' and downsampling layers') reads pairs, which the compiler turns
/// into vector loads and shuffles instead of one scalar load per element.
fn gather_strided<T: Copy>(dst: &mut [T], src: &[T], stride: usize) {
    match stride {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        2 => {
            let pairs = src.chunks_exact(2).len().min(dst.len());
            for (d, pair) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = pair[0];
            }
            // `src` may end on the last element read, one short of a pair.
            if let Some(last) = dst.get_mut(pairs) {
                *last = src[2 * pairs];
            }
        }
        _ => {
            for (k, d) in dst.iter_mut().enumerate() {
                *d = src[k * stride];
            }
        }
    }
}

/// `dst[k · stride] += src[k]` for every `k < src.len()`, the adjoint of
/// [`gather_strided`]; stride 2 goes by pairs, as there.
fn scatter_add_strided<T: Copy + core::ops::Add<Output = T>>(
    dst: &mut [T],
    src: &[T],
    stride: usize,
) {
    match stride {
        1 => {
            for (d, &v) in dst[..src.len()].iter_mut().zip(src) {
                *d = *d + v;
            }
        }
        2 => {
            let pairs = dst.chunks_exact(2).len().min(src.len());
            for (pair, &v) in dst.chunks_exact_mut(2).zip(src) {
                pair[0] = pair[0] + v;
            }
            // `dst` may end on the last element written, one short of a pair.
            if let Some(&v) = src.get(pairs) {
                dst[2 * pairs] = dst[2 * pairs] + v;
            }
        }
        _ => {
            for (k, &v) in src.iter().enumerate() {
                dst[k * stride] = dst[k * stride] + v;
            }
        }
    }
}

/// `[n, c, plane]` → `[n·plane, c]`.
fn positions_first<T: GemmScalar>(data: &[T], n: usize, c: usize, plane: usize) -> Vec<T> {
    let mut out: Vec<T> = vec![T::zero(); c * n * plane];
    for (b, dst) in out.chunks_mut((c * plane).max(1)).enumerate() {
        transpose_into(&data[b * c * plane..], c, plane, plane, dst);
    }
    out
}

/// `dst[j · rows + i] = src[i · stride + j]` for `i < rows`, `j < cols`:
/// the `[rows, cols]` block of `src` at row stride `stride`, transposed,
/// by the tiled copy that `to_contiguous` uses for permuted tensors.
fn transpose_into<T: Copy>(src: &[T], rows: usize, cols: usize, stride: usize, dst: &mut [T]) {
    crate::tensor::copy_2d_tiled(
        &mut dst[..rows * cols],
        src,
        0,
        cols,
        rows,
        1,
        stride as isize,
    );
}

/// Splits the flat positions `range` where they cross a multiple of
/// `period` (an output row or plane): `(first position, length)` of each
/// piece, in order.
fn runs_within(
    range: core::ops::Range<usize>,
    period: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let end = range.end;
    let mut position = range.start;
    core::iter::from_fn(move || {
        (position < end).then(|| {
            let run = (period - position % period).min(end - position);
            position += run;
            (position - run, run)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Flex;
    use burn_backend::{TensorMetadata, ops::ModuleOps};

    #[test]
    fn row_runs_walk_output_rows_across_images() {
        // 2 images of 3×4 outputs (1×1 kernel, no padding).
        let x = Shape::from(vec![2, 1, 3, 4]);
        let w = Shape::from(vec![1, 1, 1, 1]);
        let out = Shape::from(vec![2, 1, 3, 4]);
        let geometry = Geometry::new(&x, &w, &out, &ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
        // From mid-row 1 of image 0 to mid-row 0 of image 1.
        let runs: Vec<_> = geometry.row_runs(6..15).collect();
        assert_eq!(runs, [(0, 1, 2, 2, 0), (0, 2, 0, 4, 2), (1, 0, 0, 3, 6)]);
        assert_eq!(geometry.row_runs(0..24).count(), 6);
        assert_eq!(geometry.row_runs(5..5).count(), 0);
    }

    #[test]
    fn transposes_whole_and_cut_tiles() {
        let (rows, cols, stride) = (37, 21, 25);
        let src: Vec<f32> = (0..rows * stride).map(|v| v as f32).collect();
        let mut dst = vec![0.0f32; rows * cols];
        transpose_into(&src, rows, cols, stride, &mut dst);
        for i in 0..rows {
            for j in 0..cols {
                assert_eq!(dst[j * rows + i], src[i * stride + j], "({i}, {j})");
            }
        }
    }

    #[test]
    fn gathers_every_stride_to_the_end_of_the_source() {
        let src: Vec<f32> = (0..11).map(|v| v as f32).collect();
        for stride in 1..4 {
            // Ending on the source's last element, and short of it.
            for len in [(src.len() - 1) / stride + 1, (src.len() - 1) / stride] {
                let mut dst = vec![-1.0f32; len];
                gather_strided(&mut dst, &src, stride);
                let expected: Vec<f32> = (0..len).map(|k| src[k * stride]).collect();
                assert_eq!(dst, expected, "stride {stride}, {len} elements");
            }
        }
    }

    #[test]
    fn scatters_every_stride_to_the_end_of_the_destination() {
        for stride in 1..4 {
            // Ending on the destination's last element, and short of it.
            for len in [(11 - 1) / stride + 1, (11 - 1) / stride] {
                let src: Vec<f32> = (0..len).map(|k| 100.0 + k as f32).collect();
                let mut dst: Vec<f32> = (0..11).map(|v| v as f32).collect();
                scatter_add_strided(&mut dst, &src, stride);
                let expected: Vec<f32> = (0..11)
                    .map(|i| {
                        let hit = i % stride == 0 && i / stride < len;
                        i as f32 + if hit { src[i / stride] } else { 0.0 }
                    })
                    .collect();
                assert_eq!(dst, expected, "stride {stride}, {len} elements");
            }
        }
    }

    #[test]
    fn runs_split_a_range_at_multiples_of_the_period() {
        let runs: Vec<_> = runs_within(5..23, 8).collect();
        assert_eq!(runs, [(5, 3), (8, 8), (16, 7)]);
        assert_eq!(runs_within(8..16, 8).collect::<Vec<_>>(), [(8, 8)]);
        assert_eq!(runs_within(3..3, 8).count(), 0);
    }

    fn dims4(shape: &Shape) -> [usize; 4] {
        [shape[0], shape[1], shape[2], shape[3]]
    }

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

    /// Direct summation over the definition, for comparison.
    fn reference(
        x: &FlexTensor,
        g: &FlexTensor,
        weight: [usize; 4],
        o: &ConvOptions<2>,
    ) -> Vec<f32> {
        let [n, c_in, h, w] = dims4(x.layout().shape());
        let [_, c_out, out_h, out_w] = dims4(g.layout().shape());
        let [_, cpg, k_h, k_w] = weight;
        let opg = c_out / o.groups;
        let (xs, gs) = (x.storage::<f32>(), g.storage::<f32>());
        let mut dw = vec![0.0f32; weight.iter().product()];
        for co in 0..c_out {
            for ci in 0..cpg {
                let cin = (co / opg) * cpg + ci;
                for i in 0..k_h {
                    for j in 0..k_w {
                        let mut sum = 0.0f64;
                        for b in 0..n {
                            for oy in 0..out_h {
                                for ox in 0..out_w {
                                    let iy = (oy * o.stride[0] + i * o.dilation[0]) as isize
                                        - o.padding[0] as isize;
                                    let ix = (ox * o.stride[1] + j * o.dilation[1]) as isize
                                        - o.padding[1] as isize;
                                    if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
                                        sum += xs
                                            [((b * c_in + cin) * h + iy as usize) * w + ix as usize]
                                            as f64
                                            * gs[((b * c_out + co) * out_h + oy) * out_w + ox]
                                                as f64;
                                    }
                                }
                            }
                        }
                        dw[((co * cpg + ci) * k_h + i) * k_w + j] = sum as f32;
                    }
                }
            }
        }
        dw
    }

    /// `dx` by direct summation over the definition.
    fn reference_input(
        x_shape: [usize; 4],
        weight: &FlexTensor,
        g: &FlexTensor,
        o: &ConvOptions<2>,
    ) -> Vec<f32> {
        let [n, c_in, h, w] = x_shape;
        let [c_out, cpg, k_h, k_w] = dims4(weight.layout().shape());
        let [_, _, out_h, out_w] = dims4(g.layout().shape());
        let opg = c_out / o.groups;
        let (ws, gs) = (weight.storage::<f32>(), g.storage::<f32>());
        let mut dx = vec![0.0f64; n * c_in * h * w];
        for b in 0..n {
            for co in 0..c_out {
                for ci in 0..cpg {
                    let cin = (co / opg) * cpg + ci;
                    for i in 0..k_h {
                        for j in 0..k_w {
                            for oy in 0..out_h {
                                for ox in 0..out_w {
                                    let iy = (oy * o.stride[0] + i * o.dilation[0]) as isize
                                        - o.padding[0] as isize;
                                    let ix = (ox * o.stride[1] + j * o.dilation[1]) as isize
                                        - o.padding[1] as isize;
                                    if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
                                        dx[((b * c_in + cin) * h + iy as usize) * w
                                            + ix as usize] +=
                                            ws[((co * cpg + ci) * k_h + i) * k_w + j] as f64
                                                * gs[((b * c_out + co) * out_h + oy) * out_w + ox]
                                                    as f64;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        dx.into_iter().map(|v| v as f32).collect()
    }

    /// `conv2d(x, weight) + bias` by direct summation over the definition.
    fn reference_forward(
        x: &FlexTensor,
        weight: &FlexTensor,
        bias: &[f32],
        o: &ConvOptions<2>,
    ) -> (Vec<f32>, [usize; 4]) {
        let [n, c_in, h, w] = dims4(x.layout().shape());
        let [c_out, cpg, k_h, k_w] = dims4(weight.layout().shape());
        let out = |size: usize, k: usize, axis: usize| {
            (size + 2 * o.padding[axis] - o.dilation[axis] * (k - 1) - 1) / o.stride[axis] + 1
        };
        let (out_h, out_w) = (out(h, k_h, 0), out(w, k_w, 1));
        let opg = c_out / o.groups;
        let (xs, ws) = (x.storage::<f32>(), weight.storage::<f32>());
        let mut y = vec![0.0f32; n * c_out * out_h * out_w];
        for b in 0..n {
            for co in 0..c_out {
                for oy in 0..out_h {
                    for ox in 0..out_w {
                        let mut sum = bias[co] as f64;
                        for ci in 0..cpg {
                            let cin = (co / opg) * cpg + ci;
                            for i in 0..k_h {
                                for j in 0..k_w {
                                    let iy = (oy * o.stride[0] + i * o.dilation[0]) as isize
                                        - o.padding[0] as isize;
                                    let ix = (ox * o.stride[1] + j * o.dilation[1]) as isize
                                        - o.padding[1] as isize;
                                    if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
                                        sum += xs
                                            [((b * c_in + cin) * h + iy as usize) * w + ix as usize]
                                            as f64
                                            * ws[((co * cpg + ci) * k_h + i) * k_w + j] as f64;
                                    }
                                }
                            }
                        }
                        y[((b * c_out + co) * out_h + oy) * out_w + ox] = sum as f32;
                    }
                }
            }
        }
        (y, [n, c_out, out_h, out_w])
    }

    #[test]
    fn forward_matches_the_definition() {
        // (x shape, weight shape, stride, padding, dilation, groups)
        let cases: [([usize; 4], [usize; 4], usize, usize, usize, usize); 8] = [
            // Tiles of 64 positions spanning several 5×5 images.
            ([6, 8, 5, 5], [12, 8, 3, 3], 1, 1, 1, 1),
            // Fewer positions than one tile per thread: one threaded GEMM.
            ([2, 8, 4, 4], [20, 8, 3, 3], 1, 1, 1, 1),
            // Many tiles within each image; the ResNet stem's shape.
            ([3, 3, 40, 40], [24, 3, 7, 7], 2, 3, 1, 1),
            ([2, 6, 11, 9], [8, 6, 3, 3], 2, 1, 1, 1),
            // A strided 1×1 (ResNet's downsampling shortcut).
            ([4, 16, 8, 8], [32, 16, 1, 1], 2, 0, 1, 1),
            ([2, 8, 9, 9], [10, 4, 3, 3], 1, 2, 2, 2),
            ([2, 6, 7, 7], [9, 2, 3, 3], 3, 0, 1, 3),
            // Rectangular kernel reaching past the padding.
            ([3, 5, 6, 13], [18, 5, 2, 5], 1, 2, 1, 1),
        ];
        for (k, (xs, ws, s, p, d, g)) in cases.into_iter().enumerate() {
            let options = ConvOptions::new([s, s], [p, p], [d, d], g);
            let x = tensor(xs, 3 + k as u32);
            let weight = tensor(ws, 5 + k as u32);
            assert!(
                !super::super::conv::conv2d_has_direct_path(
                    x.layout().shape(),
                    weight.layout().shape(),
                    &options
                ),
                "case {k} takes another path"
            );
            let bias: Vec<f32> = (0..ws[0]).map(|c| c as f32 * 0.25 - 1.0).collect();
            let (expected, shape) = reference_forward(&x, &weight, &bias, &options);
            let bias_tensor = FlexTensor::new(
                Bytes::from_elems(bias),
                Layout::contiguous(Shape::from(vec![ws[0]])),
                DType::F32,
            );
            let got = Flex::conv2d(x, weight, Some(bias_tensor), options);
            assert_eq!(dims4(got.layout().shape()), shape, "case {k} shape");
            for (a, b) in got.storage::<f32>().iter().zip(&expected) {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "case {k}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn matches_the_definition() {
        // (x shape, weight shape, stride, padding, dilation, groups)
        let cases: [([usize; 4], [usize; 4], usize, usize, usize, usize); 18] = [
            ([2, 3, 9, 9], [4, 3, 3, 3], 1, 1, 1, 1),
            ([2, 3, 10, 10], [5, 3, 7, 7], 2, 3, 1, 1),
            ([3, 4, 6, 6], [6, 4, 1, 1], 1, 0, 1, 1),
            ([2, 4, 8, 7], [6, 2, 3, 3], 2, 1, 2, 2),
            // One image on a small plane: a single chunk, threaded GEMM.
            ([1, 2, 5, 5], [3, 2, 3, 3], 3, 0, 1, 1),
            // The batch split between threads (an image per thread, or an
            // inner dimension ≥ SPLIT_BATCH_MIN_INNER), unevenly for 3 images.
            ([4, 2, 48, 48], [3, 2, 3, 3], 1, 1, 1, 1),
            ([3, 4, 40, 40], [4, 2, 3, 3], 1, 1, 1, 2),
            // Below GRAD_TILE_MIN_PLANE with a long inner dimension: the
            // batch unfolded whole, split between threads.
            ([48, 2, 7, 7], [3, 2, 3, 3], 1, 1, 1, 1),
            // Pointwise (1×1, stride 1, plane ≥ POINTWISE_MIN_PLANE): the
            // gradients multiply each image in place; grouped; and with the
            // batch split between threads.
            ([3, 6, 16, 16], [8, 6, 1, 1], 1, 0, 1, 1),
            ([2, 8, 14, 14], [6, 4, 1, 1], 1, 0, 1, 2),
            ([6, 4, 20, 20], [6, 4, 1, 1], 1, 0, 1, 1),
            // Planes ≥ GRAD_TILE_MIN_PLANE: tiles within each image, cut
            // mid-row; a strided stem; grouped; many rows, so short tiles.
            ([2, 3, 36, 36], [4, 3, 3, 3], 1, 1, 1, 1),
            ([2, 3, 70, 70], [5, 3, 7, 7], 2, 3, 1, 1),
            ([1, 4, 34, 34], [6, 2, 3, 3], 1, 1, 1, 2),
            ([1, 64, 32, 32], [8, 64, 3, 3], 1, 1, 1, 1),
            // The smallest tiled plane (16×16, ResNet-18's layer1 at 64²).
            ([3, 5, 16, 16], [4, 5, 3, 3], 1, 1, 1, 1),
            // Weight gradients accumulated transposed with whole and cut
            // 16×16 blocks of the output gradient to transpose: tiled
            // (a stem on an odd plane), and the batch unfolded whole.
            ([2, 3, 35, 37], [24, 3, 7, 7], 2, 3, 1, 1),
            ([8, 4, 7, 7], [20, 4, 3, 3], 1, 1, 1, 1),
        ];
        for (k, (xs, ws, s, p, d, g)) in cases.into_iter().enumerate() {
            let options = ConvOptions::new([s, s], [p, p], [d, d], g);
            let x = tensor(xs, 1 + k as u32);
            let weight = tensor(ws, 7 + k as u32);
            let y = Flex::conv2d(x.clone(), weight.clone(), None, options.clone());
            let g_shape = dims4(&y.shape());
            let grad = tensor(g_shape, 13 + k as u32);
            let expected = reference(&x, &grad, ws, &options);
            let expected_dx = reference_input(xs, &weight, &grad, &options);
            let got = conv2d_weight_backward(x, Shape::from(ws.to_vec()), grad.clone(), &options);
            for (a, b) in got.storage::<f32>().iter().zip(&expected) {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "case {k} dW: {a} vs {b}"
                );
            }
            let got = conv2d_x_backward(Shape::from(xs.to_vec()), weight, grad, &options);
            assert_eq!(got.storage::<f32>().len(), expected_dx.len());
            for (a, b) in got.storage::<f32>().iter().zip(&expected_dx) {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "case {k} dx: {a} vs {b}"
                );
            }
        }
    }
}

//! 3×3 convolutions at stride 1 by Winograd's minimal filtering F(2×2, 3×3)
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
//! CVPR 2016), for f32: 16 multiplications per 2×2 block of outputs instead
//! of 36.
//!
//! The output is cut into 2×2 tiles, each read from a 4×4 patch `d` of the
//! input. With `g` the 3×3 kernel of output channel `k` and input channel
//! `c`, a tile of output channel `k` is `Aᵀ [Σ_c (G g Gᵀ) ⊙ (Bᵀ d_c B)] A`.
//! Numbering the 16 entries of the transformed 4×4 tiles by `ξ`, the sum
//! over channels is 16 GEMMs, `M_ξ[k, t] = Σ_c U_ξ[k, c] · V_ξ[c, t]`, with
//! `U: [16, c_out, c_in]` the transformed weight and `V: [16, c_in, tiles]`
//! the transformed input. Tiles are taken in blocks of whole tile rows,
//! each block transformed, multiplied and transformed back by one thread
//! while it is in cache, as the GEMM forward's tiles are.
//!
//! The transforms only add, subtract and halve, so the result differs
//! from the direct sum by rounding alone (a few ulps of the inputs'
//! magnitude; the tests hold it to the direct sum within 1e-4).
//!
//! The input gradient of a 3×3 convolution at stride 1 is itself one: the
//! output gradient convolved with the kernel rotated by 180° and its
//! channel axes swapped, padded by `2 - padding`.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use burn_backend::ops::ConvOptions;
use burn_std::{Bytes, Shape};

use crate::ops::SendMutPtr;
use crate::ops::conv_common::add_bias;
use crate::ops::matmul::gemm_call;
use crate::{FlexTensor, Layout};

/// Entries of a transformed 4×4 tile.
const TRANSFORMED: usize = 16;

/// Tiles per block: the GEMMs repack the transformed weight for each
/// block, so a block must be wide enough for that to be a small part of
/// its work (`c_out · c_in` elements packed for `2 · c_out · c_in · tiles`
/// FLOPs per `ξ`).
const BLOCK_TILES: usize = 128;

/// Fewest tiles for which the Winograd path is taken. The weight is
/// transformed on every call into 16/9 of its size, which a few tiles do
/// not repay: at 512 channels that alone took 2 ms (2 threads), and
/// ResNet's 3×3s with 32–128 tiles (ResNet-18's layer3–4 at batch 32 and
/// 64², ResNet-50's layer4 at batch 8 and 224²) measured level or slower
/// than the GEMM path; from 392 tiles (ResNet-50's layer3) they measured
/// 15–38% faster.
const MIN_TILES: usize = 256;

/// Fewest channels in and out: below, the GEMMs are too thin for the
/// transforms to pay.
const MIN_CHANNELS: usize = 16;

/// Kernel pairs `(k, c)` transformed together, as lanes of one loop.
const WEIGHT_LANES: usize = 64;

/// The geometry of one F(2×2, 3×3) convolution: `[n, c_in, h, w]` in,
/// `[n, c_out, out_h, out_w]` out, `out = in + 2 · padding − 2`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Winograd3x3 {
    n: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    padding: [usize; 2],
    out_h: usize,
    out_w: usize,
    tiles_h: usize,
    tiles_w: usize,
}

impl Winograd3x3 {
    fn new(x: [usize; 4], c_out: usize, padding: [usize; 2]) -> Option<Self> {
        let [n, c_in, h, w] = x;
        let out_h = (h + 2 * padding[0]).checked_sub(2)?;
        let out_w = (w + 2 * padding[1]).checked_sub(2)?;
        let geometry = Self {
            n,
            c_in,
            c_out,
            h,
            w,
            padding,
            out_h,
            out_w,
            tiles_h: out_h.div_ceil(2),
            tiles_w: out_w.div_ceil(2),
        };
        padding.iter().all(|&p| p <= 2).then_some(geometry)
    }

    /// Whether the Winograd path pays for this geometry.
    fn pays(&self) -> bool {
        self.c_in >= MIN_CHANNELS && self.c_out >= MIN_CHANNELS && self.tiles() >= MIN_TILES
    }

    fn is_3x3_stride_1(w_shape: &Shape, options: &ConvOptions<2>) -> bool {
        w_shape[2] == 3
            && w_shape[3] == 3
            && options.stride == [1, 1]
            && options.dilation == [1, 1]
            && options.groups == 1
    }

    /// The Winograd form of `conv2d(x, weight)` (`x: [n, c_in, h, w]`,
    /// `weight: [c_out, c_in, 3, 3]`), where it applies and pays.
    pub(crate) fn for_forward(
        x_shape: &Shape,
        w_shape: &Shape,
        options: &ConvOptions<2>,
    ) -> Option<Self> {
        Self::forward_geometry(x_shape, w_shape, options).filter(Self::pays)
    }

    /// The Winograd form of the input gradient of `conv2d(x, weight)`:
    /// the output gradient `[n, c_out, out_h, out_w]` convolved into `[n,
    /// c_in, h, w]`, where it applies and pays.
    pub(crate) fn for_input_grad(
        grad_shape: &Shape,
        w_shape: &Shape,
        options: &ConvOptions<2>,
    ) -> Option<Self> {
        Self::input_grad_geometry(grad_shape, w_shape, options).filter(Self::pays)
    }

    /// [`Self::for_forward`] wherever it applies, paying or not.
    fn forward_geometry(
        x_shape: &Shape,
        w_shape: &Shape,
        options: &ConvOptions<2>,
    ) -> Option<Self> {
        if !Self::is_3x3_stride_1(w_shape, options) {
            return None;
        }
        let x = [x_shape[0], x_shape[1], x_shape[2], x_shape[3]];
        Self::new(x, w_shape[0], options.padding)
    }

    /// [`Self::for_input_grad`] wherever it applies, paying or not.
    fn input_grad_geometry(
        grad_shape: &Shape,
        w_shape: &Shape,
        options: &ConvOptions<2>,
    ) -> Option<Self> {
        if !Self::is_3x3_stride_1(w_shape, options) || options.padding.iter().any(|&p| p > 2) {
            return None;
        }
        let grad = [grad_shape[0], grad_shape[1], grad_shape[2], grad_shape[3]];
        Self::new(grad, w_shape[1], options.padding.map(|p| 2 - p))
    }

    fn tiles(&self) -> usize {
        self.n * self.tiles_h * self.tiles_w
    }

    /// `conv2d(x, weight) + bias`: `x: [n, c_in, h, w]` (f32), `weight:
    /// [c_out, c_in, 3, 3]`, `bias: [c_out]` → `[n, c_out, out_h, out_w]`.
    pub(crate) fn conv2d(
        &self,
        x: FlexTensor,
        weight: FlexTensor,
        bias: Option<FlexTensor>,
    ) -> FlexTensor {
        let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
        let u = self.transform_weight(weight.storage::<f32>(), false);
        let mut out = self.run(x.storage::<f32>(), &u);
        if let Some(bias) = bias {
            let bias = bias.to_contiguous();
            let plane = self.out_h * self.out_w;
            add_bias(
                &mut out,
                bias.storage::<f32>(),
                self.n,
                self.c_out,
                plane,
                |a, b| a + b,
            );
        }
        self.tensor(out)
    }

    /// The input gradient of `conv2d(x, weight)`: `weight: [c_out, c_in,
    /// 3, 3]` and `output_grad: [n, c_out, out_h, out_w]` (f32) → `[n,
    /// c_in, h, w]`.
    pub(crate) fn input_grad(&self, weight: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
        let (weight, grad) = (weight.to_contiguous(), output_grad.to_contiguous());
        let u = self.transform_weight(weight.storage::<f32>(), true);
        let dx = self.run(grad.storage::<f32>(), &u);
        self.tensor(dx)
    }

    fn tensor(&self, data: Vec<f32>) -> FlexTensor {
        let shape = Shape::from(vec![self.n, self.c_out, self.out_h, self.out_w]);
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(shape),
            burn_backend::DType::F32,
        )
    }

    /// `U: [16, c_out, c_in]`, `U_ξ[k, c]` entry `ξ` of `G g Gᵀ` for the
    /// kernel `g = weight[k, c]` (`weight: [c_out, c_in, 3, 3]`), or, when
    /// `rotated`, for `g = weight[c, k]` rotated by 180° (`weight: [c_in,
    /// c_out, 3, 3]`: the input gradient's kernel).
    fn transform_weight(&self, weight: &[f32], rotated: bool) -> Vec<f32> {
        let pairs = self.c_out * self.c_in;
        let mut u = vec![0.0f32; TRANSFORMED * pairs];
        let u_ptr = SendMutPtr::new(u.as_mut_ptr());
        let lanes = |start: usize| {
            let len = WEIGHT_LANES.min(pairs - start);
            // The nine taps of each kernel in the block, tap-major.
            let mut g = [[0.0f32; WEIGHT_LANES]; 9];
            if rotated {
                let (mut k, mut c) = (start / self.c_in, start % self.c_in);
                for lane in 0..len {
                    let src = &weight[(c * self.c_out + k) * 9..][..9];
                    for (tap, g) in g.iter_mut().enumerate() {
                        g[lane] = src[8 - tap];
                    }
                    c += 1;
                    if c == self.c_in {
                        (k, c) = (k + 1, 0);
                    }
                }
            } else {
                for (lane, src) in weight[start * 9..][..len * 9].chunks_exact(9).enumerate() {
                    for (tap, g) in g.iter_mut().enumerate() {
                        g[lane] = src[tap];
                    }
                }
            }
            // G g: four rows of three taps each.
            let mut gg = [[[0.0f32; WEIGHT_LANES]; 3]; 4];
            for j in 0..3 {
                let (g0, g1, g2) = (&g[j], &g[3 + j], &g[6 + j]);
                for lane in 0..WEIGHT_LANES {
                    gg[0][j][lane] = g0[lane];
                    gg[1][j][lane] = 0.5 * (g0[lane] + g1[lane] + g2[lane]);
                    gg[2][j][lane] = 0.5 * (g0[lane] - g1[lane] + g2[lane]);
                    gg[3][j][lane] = g2[lane];
                }
            }
            // (G g) Gᵀ: each row of three becomes four.
            let mut t = [[0.0f32; WEIGHT_LANES]; TRANSFORMED];
            for (r, [y0, y1, y2]) in gg.iter().enumerate() {
                for lane in 0..WEIGHT_LANES {
                    t[4 * r][lane] = y0[lane];
                    t[4 * r + 1][lane] = 0.5 * (y0[lane] + y1[lane] + y2[lane]);
                    t[4 * r + 2][lane] = 0.5 * (y0[lane] - y1[lane] + y2[lane]);
                    t[4 * r + 3][lane] = y2[lane];
                }
            }
            for (xi, t) in t.iter().enumerate() {
                // SAFETY: blocks cover disjoint ranges `start..start + len`
                // of each `U_ξ`, which lie inside `u`.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        t.as_ptr(),
                        u_ptr.ptr_add(xi * pairs + start),
                        len,
                    );
                }
            }
        };
        for_each_index(pairs.div_ceil(WEIGHT_LANES), true, |block| {
            lanes(block * WEIGHT_LANES)
        });
        u
    }

    /// How the tiles are shared between threads.
    fn schedule(&self) -> Schedule {
        let rows = self.n * self.tiles_h;
        let block = (BLOCK_TILES / self.tiles_w).max(1);
        #[cfg(feature = "rayon")]
        if rows.div_ceil(block) < rayon::current_num_threads() {
            return Schedule::Whole;
        }
        Schedule::Blocks(block.min(rows))
    }

    /// The convolution of `x: [n, c_in, h, w]` by the transformed weight
    /// `u: [16, c_out, c_in]`, as `[n, c_out, out_h, out_w]`.
    fn run(&self, x: &[f32], u: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; self.n * self.c_out * self.out_h * self.out_w];
        let out_ptr = SendMutPtr::new(out.as_mut_ptr());
        let rows = self.n * self.tiles_h;
        // SAFETY: `out` holds the whole output; the blocks' tile rows are
        // disjoint, so are the outputs they write.
        match self.schedule() {
            Schedule::Blocks(block) => for_each_index(rows.div_ceil(block), true, |index| unsafe {
                let rows = index * block..((index + 1) * block).min(rows);
                self.convolve_rows(x, u, rows, &out_ptr, false);
            }),
            Schedule::Whole => unsafe { self.convolve_rows(x, u, 0..rows, &out_ptr, true) },
        }
        out
    }

    /// Transforms the input of the tile rows `rows`, multiplies it by `u`
    /// and writes the transformed-back result to its place in `out`; each
    /// step split between threads when `threaded` (the transforms by
    /// channel, the GEMMs by `ξ`), else all on this thread.
    ///
    /// # Safety
    /// `out` points at `n · c_out · out_h · out_w` elements, and no other
    /// thread writes the outputs of these tile rows.
    unsafe fn convolve_rows(
        &self,
        x: &[f32],
        u: &[f32],
        rows: Range<usize>,
        out: &SendMutPtr<f32>,
        threaded: bool,
    ) {
        let len = rows.len() * self.tiles_w;
        let per_channel = TRANSFORMED * len;
        // Channels per task: one when threaded, else all of them, so the
        // transforms' scratch rows are allocated once.
        let group = |channels: usize| if threaded { 1 } else { channels.max(1) };
        let mut v = vec![0.0f32; self.c_in * per_channel];
        let v_ptr = SendMutPtr::new(v.as_mut_ptr());
        let g = group(self.c_in);
        for_each_index(self.c_in.div_ceil(g), threaded, |task| {
            let channels = task * g..((task + 1) * g).min(self.c_in);
            // SAFETY: these channels' elements lie inside `v`, and only this
            // task writes them.
            let v = unsafe {
                core::slice::from_raw_parts_mut(
                    v_ptr.ptr_add(channels.start * per_channel),
                    channels.len() * per_channel,
                )
            };
            transform_input_vectorized(self, x, rows.clone(), channels, v);
        });
        let mut m = vec![0.0f32; self.c_out * per_channel];
        let m_ptr = SendMutPtr::new(m.as_mut_ptr());
        // SAFETY: `v` and `m` hold `len` tiles; each `ξ` writes its own
        // columns of `m`.
        for_each_index(TRANSFORMED, threaded, |xi| unsafe {
            self.multiply(u, &v, &m_ptr, len, xi)
        });
        let g = group(self.c_out);
        for_each_index(self.c_out.div_ceil(g), threaded, |task| {
            let channels = task * g..((task + 1) * g).min(self.c_out);
            let m = &m[channels.start * per_channel..][..channels.len() * per_channel];
            // SAFETY: as the caller promises; only this task writes these
            // channels.
            unsafe { transform_output_vectorized(self, m, rows.clone(), channels, out) };
        });
    }

    /// `M_ξ = U_ξ · V_ξ` (single-threaded), with `u: [16, c_out, c_in]`,
    /// `v: [c_in, 16, len]` and `m: [c_out, 16, len]`.
    ///
    /// # Safety
    /// `v` holds `c_in · 16 · len` elements, `m` points at `c_out · 16 ·
    /// len`, and no other thread touches `m`'s `ξ` columns meanwhile.
    unsafe fn multiply(&self, u: &[f32], v: &[f32], m: &SendMutPtr<f32>, len: usize, xi: usize) {
        let stride = (TRANSFORMED * len) as isize;
        // SAFETY: as the caller promises; `u` holds 16 `c_out × c_in`
        // matrices.
        unsafe {
            gemm_call(
                self.c_out,
                len,
                self.c_in,
                m.ptr_add(xi * len),
                1,
                stride,
                u.as_ptr().add(xi * self.c_out * self.c_in),
                1,
                self.c_in as isize,
                v.as_ptr().add(xi * len),
                1,
                stride,
                gemm::Parallelism::None,
            );
        }
    }

    /// `v: [channels.len(), 16, len]` for the input channels `channels` and
    /// the tile rows `rows` (over `[n, tiles_h]`, `len = rows.len() ·
    /// tiles_w`): entry `ξ` of `Bᵀ d B` for each tile's 4×4 input patch `d`
    /// (zero in the padding).
    ///
    /// Each entry of the patches is first gathered into its row of `v` (a
    /// row per entry, a lane per tile), so the transform itself runs along
    /// whole rows of `len` tiles, in vectors as wide as the CPU has when
    /// called through [`transform_input_vectorized`].
    #[inline(always)]
    fn transform_input(
        &self,
        x: &[f32],
        rows: Range<usize>,
        channels: Range<usize>,
        v: &mut [f32],
    ) {
        let (tiles_w, len) = (self.tiles_w, rows.len() * self.tiles_w);
        // One input row under a tile row, padded.
        let width = 2 * tiles_w + 2;
        let mut line = vec![0.0f32; width];
        for (c, v) in channels.zip(v.chunks_exact_mut(TRANSFORMED * len)) {
            for (i, row) in rows.clone().enumerate() {
                let (b, ty) = (row / self.tiles_h, row % self.tiles_h);
                let at = i * tiles_w;
                for r in 0..4 {
                    let iy = (2 * ty + r).wrapping_sub(self.padding[0]);
                    if iy < self.h {
                        let src = &x[((b * self.c_in + c) * self.h + iy) * self.w..][..self.w];
                        line[self.padding[1]..][..self.w].copy_from_slice(src);
                        line[..self.padding[1]].fill(0.0);
                        line[self.padding[1] + self.w..].fill(0.0);
                    } else {
                        line.fill(0.0);
                    }
                    // Row r of each patch: entries 4r … 4r + 3.
                    let [d0, d1, d2, d3] = four_rows(&mut v[4 * r * len..], len, len);
                    let (d0, d1) = (&mut d0[at..][..tiles_w], &mut d1[at..][..tiles_w]);
                    let (d2, d3) = (&mut d2[at..][..tiles_w], &mut d3[at..][..tiles_w]);
                    for tx in 0..tiles_w {
                        let q = &line[2 * tx..][..4];
                        (d0[tx], d1[tx], d2[tx], d3[tx]) = (q[0], q[1], q[2], q[3]);
                    }
                }
            }
            // Bᵀ down each column of the patches, then B along each row.
            for j in 0..4 {
                input_butterfly(four_rows(&mut v[j * len..], 4 * len, len));
            }
            for r in 0..4 {
                input_butterfly(four_rows(&mut v[4 * r * len..], len, len));
            }
        }
    }

    /// Writes `Aᵀ M A` for each tile of `m: [channels.len(), 16, len]` (the
    /// output channels `channels`, the tile rows `rows`) to its 2×2 place in
    /// the `[n, c_out, out_h, out_w]` output, cut at the output's edge. As
    /// the input's, the transform runs along rows of `len` tiles (see
    /// [`transform_output_vectorized`]).
    ///
    /// # Safety
    /// `out` points at `n · c_out · out_h · out_w` elements, and no other
    /// thread writes these channels' outputs of these tile rows.
    #[inline(always)]
    unsafe fn transform_output(
        &self,
        m: &[f32],
        rows: Range<usize>,
        channels: Range<usize>,
        out: &SendMutPtr<f32>,
    ) {
        let (tiles_w, len) = (self.tiles_w, rows.len() * self.tiles_w);
        // Aᵀ M: `[2, 4, len]`, row r and column j of each tile at 4r + j.
        let mut u = vec![0.0f32; 8 * len];
        // Aᵀ M A: `[4, len]`, the output at row r and column s of each
        // tile's 2×2 at 2r + s.
        let mut y = vec![0.0f32; 4 * len];
        let mut line = vec![0.0f32; 2 * tiles_w];
        for (k, m) in channels.zip(m.chunks_exact(TRANSFORMED * len)) {
            for j in 0..4 {
                output_butterfly(
                    m,
                    j * len,
                    4 * len,
                    two_rows(&mut u[j * len..], 4 * len, len),
                );
            }
            for r in 0..2 {
                output_butterfly(
                    &u,
                    4 * r * len,
                    len,
                    two_rows(&mut y[2 * r * len..], len, len),
                );
            }
            for (i, row) in rows.clone().enumerate() {
                let (b, ty) = (row / self.tiles_h, row % self.tiles_h);
                let at = i * tiles_w;
                for r in 0..2 {
                    let oy = 2 * ty + r;
                    if oy >= self.out_h {
                        continue;
                    }
                    let y0 = &y[2 * r * len + at..][..tiles_w];
                    let y1 = &y[(2 * r + 1) * len + at..][..tiles_w];
                    for ((pair, &y0), &y1) in line.chunks_exact_mut(2).zip(y0).zip(y1) {
                        (pair[0], pair[1]) = (y0, y1);
                    }
                    let dst = ((b * self.c_out + k) * self.out_h + oy) * self.out_w;
                    // SAFETY: row `oy` of channel `k` of image `b` lies
                    // inside `out`, and only this call writes it.
                    unsafe {
                        core::ptr::copy_nonoverlapping(line.as_ptr(), out.ptr_add(dst), self.out_w);
                    }
                }
            }
        }
    }
}

/// Four rows of `len` elements, `stride` apart, from the start of `buf`.
#[inline(always)]
fn four_rows(buf: &mut [f32], stride: usize, len: usize) -> [&mut [f32]; 4] {
    let (r0, rest) = buf.split_at_mut(stride);
    let (r1, rest) = rest.split_at_mut(stride);
    let (r2, r3) = rest.split_at_mut(stride);
    [
        &mut r0[..len],
        &mut r1[..len],
        &mut r2[..len],
        &mut r3[..len],
    ]
}

/// Two rows of `len` elements, `stride` apart, from the start of `buf`.
#[inline(always)]
fn two_rows(buf: &mut [f32], stride: usize, len: usize) -> [&mut [f32]; 2] {
    let (r0, r1) = buf.split_at_mut(stride);
    [&mut r0[..len], &mut r1[..len]]
}

/// `Bᵀ` along one axis of the 4×4 patches, lane by lane, in place:
/// `(d0, d1, d2, d3) → (d0 − d2, d1 + d2, d2 − d1, d1 − d3)`.
#[inline(always)]
fn input_butterfly([r0, r1, r2, r3]: [&mut [f32]; 4]) {
    for (((d0, d1), d2), d3) in r0.iter_mut().zip(r1).zip(r2).zip(r3) {
        (*d0, *d1, *d2, *d3) = (*d0 - *d2, *d1 + *d2, *d2 - *d1, *d1 - *d3);
    }
}

/// `Aᵀ` along one axis: the four rows of `len` lanes at `offset`, `offset
/// + stride`, … of `src`, `(m0, m1, m2, m3) → (m0 + m1 + m2, m1 − m2 − m3)`
/// into `dst`.
#[inline(always)]
fn output_butterfly(src: &[f32], offset: usize, stride: usize, [y0, y1]: [&mut [f32]; 2]) {
    let len = y0.len();
    let row = |k: usize| &src[offset + k * stride..][..len];
    let (m0, m1, m2, m3) = (row(0), row(1), row(2), row(3));
    for (t, (y0, y1)) in y0.iter_mut().zip(y1.iter_mut()).enumerate() {
        *y0 = m0[t] + m1[t] + m2[t];
        *y1 = m1[t] - m2[t] - m3[t];
    }
}

/// Defines a function that runs `$body` compiled for the widest vector
/// instructions this CPU has (AVX-512, AVX2, NEON, …, chosen at run time by
/// macerator), so the plain loops that `$body` inlines are vectorised at
/// that width rather than at the build target's baseline (SSE2 on
/// x86-64); without the `simd` feature, as compiled. A closure cannot do
/// this: it is one function shared by every width, which the compiler
/// does not inline into each.
macro_rules! vectorized {
    ($(#[$meta:meta])* unsafe fn $($rest:tt)*) => {
        vectorized!(@[unsafe] $(#[$meta])* $($rest)*);
    };
    ($(#[$meta:meta])* fn $($rest:tt)*) => {
        vectorized!(@[] $(#[$meta])* $($rest)*);
    };
    (@[$($qualifier:tt)*] $(#[$meta:meta])* $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        #[cfg(feature = "simd")]
        #[macerator::with_simd]
        // `S` picks the vector width the body is compiled for, unnamed in it.
        #[allow(clippy::extra_unused_type_parameters)]
        $($qualifier)* fn $name<S: macerator::Simd>($($arg: $ty),*) $body

        $(#[$meta])*
        #[cfg(not(feature = "simd"))]
        $($qualifier)* fn $name($($arg: $ty),*) $body
    };
}

vectorized! {
    /// [`Winograd3x3::transform_input`] in the CPU's widest vectors.
    fn transform_input_vectorized(
        geometry: &Winograd3x3,
        x: &[f32],
        rows: Range<usize>,
        channels: Range<usize>,
        v: &mut [f32],
    ) {
        geometry.transform_input(x, rows, channels, v)
    }
}

vectorized! {
    /// [`Winograd3x3::transform_output`] in the CPU's widest vectors.
    ///
    /// # Safety
    /// As [`Winograd3x3::transform_output`]'s.
    unsafe fn transform_output_vectorized(
        geometry: &Winograd3x3,
        m: &[f32],
        rows: Range<usize>,
        channels: Range<usize>,
        out: &SendMutPtr<f32>,
    ) {
        // SAFETY: as the caller promises.
        unsafe { geometry.transform_output(m, rows, channels, out) }
    }
}

/// How [`Winograd3x3::run`] shares the tiles between threads.
enum Schedule {
    /// Blocks of this many tile rows, each transformed, multiplied (16
    /// single-threaded GEMMs) and transformed back by one thread while it
    /// is in cache.
    Blocks(usize),
    /// Too few tiles for a block per thread: every tile at once, each step
    /// split between threads (the input transform by channel, the GEMMs by
    /// `ξ`, the output transform by channel), so the transformed weight is
    /// packed once rather than once per block.
    #[cfg_attr(not(feature = "rayon"), allow(dead_code))]
    Whole,
}

/// `f(0), …, f(count − 1)`: on the thread pool when `threaded`, else in
/// order on this thread.
#[cfg(feature = "rayon")]
fn for_each_index(count: usize, threaded: bool, f: impl Fn(usize) + Send + Sync) {
    use rayon::prelude::*;
    if threaded {
        (0..count).into_par_iter().for_each(f);
    } else {
        (0..count).for_each(f);
    }
}

/// `f(0), …, f(count − 1)`, in order on this thread (no thread pool).
#[cfg(not(feature = "rayon"))]
fn for_each_index(count: usize, _threaded: bool, f: impl Fn(usize)) {
    (0..count).for_each(f);
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

    /// The 3×3 stride-1 correlation of `x` by `weight` (`[c_out, c_in, 3,
    /// 3]`), summed in f64 over the definition.
    fn direct(x: &FlexTensor, weight: &FlexTensor, padding: [usize; 2]) -> Vec<f64> {
        let s = x.layout().shape();
        let (n, c_in, h, w) = (s[0], s[1], s[2], s[3]);
        let c_out = weight.layout().shape()[0];
        let (out_h, out_w) = (h + 2 * padding[0] - 2, w + 2 * padding[1] - 2);
        let (xs, ws) = (x.storage::<f32>(), weight.storage::<f32>());
        let mut y = vec![0.0f64; n * c_out * out_h * out_w];
        for b in 0..n {
            for k in 0..c_out {
                for oy in 0..out_h {
                    for ox in 0..out_w {
                        let mut sum = 0.0f64;
                        for c in 0..c_in {
                            for i in 0..3 {
                                for j in 0..3 {
                                    let iy = (oy + i).wrapping_sub(padding[0]);
                                    let ix = (ox + j).wrapping_sub(padding[1]);
                                    if iy < h && ix < w {
                                        sum += xs[((b * c_in + c) * h + iy) * w + ix] as f64
                                            * ws[((k * c_in + c) * 3 + i) * 3 + j] as f64;
                                    }
                                }
                            }
                        }
                        y[((b * c_out + k) * out_h + oy) * out_w + ox] = sum;
                    }
                }
            }
        }
        y
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

    // (x shape, c_out, padding)
    const CASES: [([usize; 4], usize, usize); 6] = [
        // Odd output (15×15: the last tile row and column cut), padding 1.
        ([2, 16, 15, 15], 20, 1),
        // No padding, even output; blocks of many tile rows.
        ([3, 17, 18, 18], 16, 0),
        // Padding 2 (the input gradient of an unpadded convolution).
        ([2, 16, 11, 13], 18, 2),
        // 2×2 outputs, one tile per image: blocks span images.
        ([70, 16, 2, 2], 16, 1),
        // A wide plane: a tile row longer than a block.
        ([1, 16, 6, 300], 16, 1),
        // One tile row: one block, its GEMMs threaded.
        ([1, 32, 2, 128], 24, 1),
    ];

    #[test]
    fn forward_matches_the_definition() {
        for (case, (xs, c_out, p)) in CASES.into_iter().enumerate() {
            let options = ConvOptions::new([1, 1], [p, p], [1, 1], 1);
            let x = tensor(xs, 3 + case as u32);
            let weight = tensor([c_out, xs[1], 3, 3], 11 + case as u32);
            let bias: Vec<f32> = (0..c_out).map(|k| k as f32 / 8.0 - 1.0).collect();
            let winograd = Winograd3x3::forward_geometry(
                x.layout().shape(),
                weight.layout().shape(),
                &options,
            )
            .unwrap_or_else(|| panic!("case {case}: no Winograd path"));
            let mut expected = direct(&x, &weight, [p, p]);
            let plane = expected.len() / (xs[0] * c_out);
            for (i, y) in expected.iter_mut().enumerate() {
                *y += bias[i / plane % c_out] as f64;
            }
            let bias = FlexTensor::new(
                Bytes::from_elems(bias),
                Layout::contiguous(Shape::from(vec![c_out])),
                DType::F32,
            );
            let got = winograd.conv2d(x, weight, Some(bias));
            assert_close(&got, &expected, case);
        }
    }

    #[test]
    fn input_grad_matches_the_definition() {
        for (case, (xs, c_out, p)) in CASES.into_iter().enumerate() {
            let options = ConvOptions::new([1, 1], [p, p], [1, 1], 1);
            let weight = tensor([c_out, xs[1], 3, 3], 5 + case as u32);
            let (out_h, out_w) = (xs[2] + 2 * p - 2, xs[3] + 2 * p - 2);
            let grad = tensor([xs[0], c_out, out_h, out_w], 23 + case as u32);
            // dx[b, c, iy, ix] = Σ_{k, i, j} grad[b, k, iy + p − i, ix + p − j] · w[k, c, i, j]
            let gs = grad.storage::<f32>();
            let ws = weight.storage::<f32>();
            let [n, c_in, h, w] = xs;
            let mut expected = vec![0.0f64; n * c_in * h * w];
            for b in 0..n {
                for c in 0..c_in {
                    for iy in 0..h {
                        for ix in 0..w {
                            let mut sum = 0.0f64;
                            for k in 0..c_out {
                                for i in 0..3 {
                                    for j in 0..3 {
                                        let oy = (iy + p).wrapping_sub(i);
                                        let ox = (ix + p).wrapping_sub(j);
                                        if oy < out_h && ox < out_w {
                                            sum += gs[((b * c_out + k) * out_h + oy) * out_w + ox]
                                                as f64
                                                * ws[((k * c_in + c) * 3 + i) * 3 + j] as f64;
                                        }
                                    }
                                }
                            }
                            expected[((b * c_in + c) * h + iy) * w + ix] = sum;
                        }
                    }
                }
            }
            let winograd = Winograd3x3::input_grad_geometry(
                grad.layout().shape(),
                weight.layout().shape(),
                &options,
            )
            .unwrap_or_else(|| panic!("case {case}: no Winograd path"));
            let got = winograd.input_grad(weight, grad);
            assert_eq!(got.layout().shape().dims::<4>(), xs, "case {case}: shape");
            assert_close(&got, &expected, case);
        }
    }

    #[test]
    fn the_backend_takes_it_where_it_pays() {
        // 288 tiles: the backend's convolution and input gradient run here.
        let (xs, c_out) = ([2, 16, 24, 24], 20);
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let x = tensor(xs, 29);
        let weight = tensor([c_out, 16, 3, 3], 31);
        let shape = |t: &FlexTensor| t.layout().shape().clone();
        assert!(Winograd3x3::for_forward(&shape(&x), &shape(&weight), &options).is_some());
        let y = Flex::conv2d(x.clone(), weight.clone(), None, options.clone());
        assert_close(&y, &direct(&x, &weight, [1, 1]), 0);
        let dx = Flex::conv2d_x_backward(x.clone(), weight.clone(), y.clone(), options.clone());
        let expected = Winograd3x3::input_grad_geometry(&shape(&y), &shape(&weight), &options)
            .map(|winograd| winograd.input_grad(weight, y))
            .expect("input gradient geometry");
        assert_eq!(dx.storage::<f32>(), expected.storage::<f32>());
    }

    #[test]
    fn applies_only_where_it_pays() {
        let shape = |s: [usize; 4]| Shape::from(s.to_vec());
        let plain = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let x = shape([8, 64, 16, 16]);
        assert!(Winograd3x3::for_forward(&x, &shape([64, 64, 3, 3]), &plain).is_some());
        // Strided, dilated, grouped, or not 3×3.
        let strided = ConvOptions::new([2, 2], [1, 1], [1, 1], 1);
        let dilated = ConvOptions::new([1, 1], [1, 1], [2, 2], 1);
        let grouped = ConvOptions::new([1, 1], [1, 1], [1, 1], 2);
        assert!(Winograd3x3::for_forward(&x, &shape([64, 64, 3, 3]), &strided).is_none());
        assert!(Winograd3x3::for_forward(&x, &shape([64, 64, 3, 3]), &dilated).is_none());
        assert!(Winograd3x3::for_forward(&x, &shape([64, 32, 3, 3]), &grouped).is_none());
        assert!(Winograd3x3::for_forward(&x, &shape([64, 64, 5, 5]), &plain).is_none());
        // Too few channels or tiles; padding beyond 2.
        assert!(Winograd3x3::for_forward(&x, &shape([8, 64, 3, 3]), &plain).is_none());
        let tiny = shape([2, 64, 20, 20]);
        assert!(Winograd3x3::for_forward(&tiny, &shape([64, 64, 3, 3]), &plain).is_none());
        let wide = ConvOptions::new([1, 1], [3, 3], [1, 1], 1);
        assert!(Winograd3x3::for_forward(&x, &shape([64, 64, 3, 3]), &wide).is_none());
        assert!(Winograd3x3::for_input_grad(&x, &shape([64, 64, 3, 3]), &wide).is_none());
    }
}

//! Splitting element-wise work between rayon's threads.
//!
//! burn-flex 0.21 runs its GEMMs and convolutions on rayon's pool but every
//! element-wise op (`add`, `mul`, `relu`, the scalar ops, the broadcast loop
//! nest of `zip.rs`) on the calling thread. In a ResNet training step those
//! ops — BatchNorm forward and backward, ReLU, the residual adds — left one
//! of two cores idle for about a fifth of the wall time. The helpers here cut
//! a long output into a few chunks per thread; short outputs stay on the
//! calling thread, where handing work to rayon would cost more than the work.

use alloc::vec::Vec;
use core::mem::MaybeUninit;

/// Outputs shorter than this run on the calling thread: 64 Ki `f32` are
/// 256 KiB, tens of microseconds of one core for an add, well above the few
/// microseconds a rayon hand-off costs.
#[cfg_attr(not(feature = "rayon"), allow(dead_code))]
pub(crate) const PARALLEL_MIN_ELEMS: usize = 64 * 1024;

/// Chunk length for `len` elements of `work` units each: about four chunks
/// per thread (so a thread slowed by the rest of the machine does not hold
/// up the others), at least a quarter of [`PARALLEL_MIN_ELEMS`] units of
/// work, and a multiple of 16 elements (a cache line of 4-byte elements).
#[cfg(feature = "rayon")]
fn chunk_len(len: usize, work: usize) -> usize {
    let chunks = 4 * rayon::current_num_threads().max(1);
    len.div_ceil(chunks)
        .max((PARALLEL_MIN_ELEMS / 4).div_ceil(work))
        .next_multiple_of(16)
}

/// Calls `f(start, chunk)` on consecutive chunks of `data`, `start` being
/// the index of the chunk's first element in `data`: on rayon's threads when
/// `data` has at least [`PARALLEL_MIN_ELEMS`] elements, else once with the
/// whole slice on the calling thread.
pub(crate) fn for_each_chunk_mut<T: Send>(data: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    for_each_chunk_mut_weighted(data, 1, f);
}

/// [`for_each_chunk_mut`] for outputs whose every element costs `work`
/// units (elements read), such as the sums of a reduction: split when
/// `data.len() * work` reaches [`PARALLEL_MIN_ELEMS`].
pub(crate) fn for_each_chunk_mut_weighted<T: Send>(
    data: &mut [T],
    work: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    #[cfg(feature = "rayon")]
    if data.len() > 1 && data.len().saturating_mul(work) >= PARALLEL_MIN_ELEMS {
        use rayon::prelude::*;
        let chunk = chunk_len(data.len(), work.max(1));
        data.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, piece)| f(i * chunk, piece));
        return;
    }
    #[cfg(not(feature = "rayon"))]
    let _ = work;
    f(0, data);
}

/// A vector of `len` elements built chunk by chunk (in parallel as
/// [`for_each_chunk_mut`] decides): `fill(start, slots)` must initialise
/// `slots` — the output positions `start..start + slots.len()` — in order
/// from the first, and return how many it wrote.
///
/// # Panics
/// If a `fill` call reports a count other than its chunk's length (then no
/// uninitialised element is ever exposed).
pub(crate) fn collect_chunks<T: Send>(
    len: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<T>]) -> usize + Sync,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(len);
    for_each_chunk_mut(&mut out.spare_capacity_mut()[..len], |start, slots| {
        let written = fill(start, slots);
        assert_eq!(
            written,
            slots.len(),
            "collect_chunks: a chunk was not filled"
        );
    });
    // SAFETY: every chunk of the first `len` slots was written in order from
    // its first slot and reported as fully written (checked above), and the
    // chunks cover `0..len`.
    unsafe { out.set_len(len) };
    out
}

/// `data[i] = op(data[i])` for every element, split as
/// [`for_each_chunk_mut`] decides.
pub(crate) fn map_in_place<T: Copy + Send>(data: &mut [T], op: impl Fn(T) -> T + Sync) {
    for_each_chunk_mut(data, |_, chunk| {
        for x in chunk {
            *x = op(*x);
        }
    });
}

/// `collect_chunks` for the common case of mapping one slice: `out[i] =
/// op(src[i])`.
pub(crate) fn map_slice<S: Sync, T: Send>(src: &[S], op: impl Fn(&S) -> T + Sync) -> Vec<T> {
    collect_chunks(src.len(), |start, slots| {
        let src = &src[start..start + slots.len()];
        for (slot, x) in slots.iter_mut().zip(src) {
            slot.write(op(x));
        }
        src.len()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn test_for_each_chunk_mut_covers_every_element_once_with_its_index() {
        for len in [
            0,
            5,
            PARALLEL_MIN_ELEMS - 1,
            PARALLEL_MIN_ELEMS,
            3 * PARALLEL_MIN_ELEMS + 17,
        ] {
            let mut data = vec![0usize; len];
            for_each_chunk_mut(&mut data, |start, chunk| {
                for (i, x) in chunk.iter_mut().enumerate() {
                    *x += start + i + 1;
                }
            });
            assert!(
                data.iter().enumerate().all(|(i, &x)| x == i + 1),
                "len {len}"
            );
        }
    }

    #[test]
    fn test_weighted_chunks_cover_short_outputs_of_long_rows() {
        // 64 outputs of 4096 elements each: split although the output is short.
        let mut data = vec![0usize; 64];
        for_each_chunk_mut_weighted(&mut data, 4096, |start, chunk| {
            for (i, x) in chunk.iter_mut().enumerate() {
                *x = start + i;
            }
        });
        assert!(data.iter().enumerate().all(|(i, &x)| x == i));
    }

    #[test]
    fn test_map_in_place_matches_serial_map() {
        for len in [0, 3, PARALLEL_MIN_ELEMS + 1, 5 * PARALLEL_MIN_ELEMS - 3] {
            let mut data: Vec<f32> = (0..len).map(|i| i as f32).collect();
            map_in_place(&mut data, |x| 2.0 * x - 1.0);
            assert!(
                data.iter()
                    .enumerate()
                    .all(|(i, &x)| x == 2.0 * i as f32 - 1.0),
                "len {len}"
            );
        }
    }

    #[test]
    fn test_map_slice_matches_serial_map() {
        for len in [0, 3, PARALLEL_MIN_ELEMS + 1, 5 * PARALLEL_MIN_ELEMS - 3] {
            let src: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let got = map_slice(&src, |&x| 2.0 * x - 1.0);
            let want: Vec<f32> = src.iter().map(|&x| 2.0 * x - 1.0).collect();
            assert_eq!(got, want, "len {len}");
        }
    }

    #[test]
    #[should_panic(expected = "a chunk was not filled")]
    fn test_collect_chunks_rejects_a_short_fill() {
        collect_chunks::<f32>(10, |_, slots| slots.len() - 1);
    }
}

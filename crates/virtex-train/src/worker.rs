//! Where a training step runs on the CPU: always on the same one of rayon's
//! worker threads ([`on_worker_thread`]).

/// Runs `work` on rayon's first worker thread (always the same one) and
/// returns its result.
///
/// The CPU backend splits its kernels between rayon's threads. Called from
/// any other thread, a training step keeps that thread busy with the serial
/// parts (autodiff bookkeeping, small ops) while the pool's threads spin
/// waiting for the next parallel part: one thread more than there are cores,
/// competing for them. On a worker, the serial parts run in the place of one
/// of the pool's threads (docs/benchmarks.md: +7% images/s on the bundled
/// config's step, 2 cores). It must be the same worker every time: burn's
/// BatchNorm keeps its running statistics per thread (`RunningState`) and
/// mixes the threads' values, so a step that moved between workers made
/// them depend on scheduling. Only the computation should run here: a
/// worker that blocks on other work queued for the pool (a data loader's
/// batch) can deadlock a one-thread pool.
pub fn on_worker_thread<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    let work = std::sync::Mutex::new(Some(work));
    rayon::broadcast(|context| {
        (context.index() == 0).then(|| {
            let work = work.lock().ok().and_then(|mut work| work.take());
            work.expect("worker 0 runs the work once")()
        })
    })
    .into_iter()
    .next()
    .flatten()
    .expect("worker 0 ran the work")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_on_the_same_rayon_worker_every_time() {
        let threads: Vec<_> = (0..32)
            .map(|i| {
                on_worker_thread(|| {
                    // Keep the pool busy in between, as a training step does.
                    let sum: u64 = rayon::join(|| i, || i + 1).0;
                    (
                        std::thread::current().id(),
                        rayon::current_thread_index(),
                        sum,
                    )
                })
            })
            .collect();
        for (i, (thread, index, sum)) in threads.iter().enumerate() {
            assert_eq!(*thread, threads[0].0, "call {i} ran on another thread");
            assert_eq!(*index, Some(0));
            assert_eq!(*sum, i as u64);
        }
    }
}

//! The background thread that produces batches ahead of the consumer, shared
//! by the COCO-format loader and the shard stream.

use std::sync::mpsc::{Receiver, sync_channel};

/// Runs `produce` on a new thread and returns the receiving end of a channel
/// that holds up to `capacity` (at least one) of its results ahead of the
/// consumer. `produce` hands each result to the `send` it is given, which
/// returns whether to go on: `false` once the receiver has been dropped or
/// after an error was sent (an error ends the stream).
pub(crate) fn prefetch<T, E, P>(capacity: usize, produce: P) -> Receiver<Result<T, E>>
where
    T: Send + 'static,
    E: Send + 'static,
    P: FnOnce(&mut dyn FnMut(Result<T, E>) -> bool) + Send + 'static,
{
    let (sender, receiver) = sync_channel(capacity.max(1));
    std::thread::spawn(move || {
        produce(&mut |result: Result<T, E>| {
            let failed = result.is_err();
            sender.send(result).is_ok() && !failed
        })
    });
    receiver
}

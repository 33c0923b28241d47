//! The background thread that produces batches ahead of the consumer, shared
//! by the COCO-format loader and the shard stream.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, sync_channel};

use crate::batch::LoaderError;

/// Runs `produce` on a new thread named `thread` and returns the receiving
/// end of a channel that holds up to `capacity` (at least one) of its results
/// ahead of the consumer. `produce` hands each result to the `send` it is
/// given, which returns whether to go on: `false` once the receiver has been
/// dropped or after an error was sent (an error ends the stream).
///
/// The thread never ends in silence: if `produce` panics (a rayon worker's
/// panic is raised again on this thread), or the thread cannot be started,
/// the last thing sent is a [`LoaderError::Panicked`] or
/// [`LoaderError::Spawn`] naming `thread`.
pub(crate) fn prefetch<T, P>(
    capacity: usize,
    thread: String,
    produce: P,
) -> Receiver<Result<T, LoaderError>>
where
    T: Send + 'static,
    P: FnOnce(&mut dyn FnMut(Result<T, LoaderError>) -> bool) + Send + 'static,
{
    let (sender, receiver) = sync_channel(capacity.max(1));
    let on_spawn_failure = sender.clone();
    let name = thread.clone();
    let spawned = std::thread::Builder::new()
        .name(thread.clone())
        .spawn(move || {
            let produced = catch_unwind(AssertUnwindSafe(|| {
                produce(&mut |result: Result<T, LoaderError>| {
                    let failed = result.is_err();
                    sender.send(result).is_ok() && !failed
                })
            }));
            if let Err(payload) = produced {
                let message = panic_message(payload.as_ref());
                // A receiver already gone wants nothing more.
                let _ = sender.send(Err(LoaderError::Panicked { thread, message }));
            }
        });
    if let Err(err) = spawned {
        let _ = on_spawn_failure.try_send(Err(LoaderError::Spawn {
            thread: name,
            message: err.to_string(),
        }));
    }
    receiver
}

/// What a panic said: its message, when it is a string.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `0..k`, then panics (on a rayon worker when `on_rayon`).
    fn panicking_after(
        k: u32,
        on_rayon: bool,
    ) -> impl FnOnce(&mut dyn FnMut(Result<u32, LoaderError>) -> bool) + Send + 'static {
        move |send| {
            for i in 0..k {
                if !send(Ok(i)) {
                    return;
                }
            }
            if on_rayon {
                rayon::join(|| (), || panic!("item {k} is broken"));
            } else {
                panic!("item {k} is broken");
            }
        }
    }

    #[test]
    fn a_panicking_producer_ends_its_stream_with_an_error_naming_the_panic() {
        for on_rayon in [false, true] {
            let receiver = prefetch(1, "test loader".into(), panicking_after(3, on_rayon));
            let items: Vec<_> = receiver.iter().collect();
            assert_eq!(items.len(), 4, "three items, then the error, then the end");
            for (i, item) in items[..3].iter().enumerate() {
                assert_eq!(*item.as_ref().unwrap(), i as u32);
            }
            let err = items[3].as_ref().unwrap_err();
            assert!(
                matches!(err, LoaderError::Panicked { thread, message }
                    if thread == "test loader" && message == "item 3 is broken"),
                "{err:?}"
            );
            assert_eq!(
                err.to_string(),
                "the test loader thread panicked: item 3 is broken"
            );
        }
    }

    #[test]
    fn a_panic_before_the_first_item_is_the_only_message() {
        let receiver = prefetch(2, "test loader".into(), panicking_after(0, true));
        let items: Vec<_> = receiver.iter().collect();
        assert!(
            matches!(items[..], [Err(LoaderError::Panicked { .. })]),
            "{items:?}"
        );
    }

    #[test]
    fn a_producer_that_ends_sends_nothing_more() {
        let receiver = prefetch(2, "test loader".into(), |send| {
            send(Ok(7));
        });
        let items: Vec<_> = receiver.iter().map(Result::unwrap).collect();
        assert_eq!(items, [7]);
    }
}

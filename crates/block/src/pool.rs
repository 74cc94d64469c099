//! Runs a function over every chunk index with a fixed number of workers, handing each result
//! to the calling thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;

/// Calls `work(state, index)` for every index in `0..count` on `threads` workers, each with its
/// own `state` from `make_state` (buffers), and `on_event(Some(result))` on the calling thread for
/// each result as it arrives. `on_event(None)` runs whenever no result came for a quarter of a
/// second, so progress keeps being reported during slow chunks.
///
/// Workers take indices in ascending order, so reads stay nearly sequential.
pub(crate) fn for_each_chunk<S, R, M, W, F>(
    count: u64,
    threads: usize,
    make_state: M,
    work: W,
    mut on_event: F,
) where
    R: Send,
    M: Fn() -> S + Sync,
    W: Fn(&mut S, u64) -> R + Sync,
    F: FnMut(Option<R>),
{
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = crossbeam_channel::bounded::<R>(threads * 2);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(count.max(1) as usize) {
            let tx = tx.clone();
            let (next, stop, make_state, work) = (&next, &stop, &make_state, &work);
            scope.spawn(move || {
                let mut state = make_state();
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    if tx.send(work(&mut state, i)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // If the caller's closure panics, the workers must not block forever on a full channel.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _guard = StopOnDrop(&stop);
        loop {
            match rx.recv_timeout(Duration::from_millis(250)) {
                Ok(r) => on_event(Some(r)),
                Err(RecvTimeoutError::Timeout) => on_event(None),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_is_handled_once() {
        for threads in [1, 2, 7] {
            let mut seen = vec![0u32; 1000];
            for_each_chunk(
                1000,
                threads,
                || (),
                |_, i| i,
                |i| {
                    if let Some(i) = i {
                        seen[i as usize] += 1;
                    }
                },
            );
            assert!(seen.iter().all(|&n| n == 1), "threads={threads}");
        }
        let mut calls = 0;
        for_each_chunk(0, 4, || (), |_, i| i, |r| calls += u32::from(r.is_some()));
        assert_eq!(calls, 0);
    }
}

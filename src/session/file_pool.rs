//! A few dedicated threads for the embedded store's blocking file work.
//!
//! tokio's blocking pool starts a new thread for every call that finds none
//! idle, up to 512. Under a burst of cache misses (every request a session
//! not cached) it grew to dozens of threads, each with its own stack and
//! glibc malloc arena, whose high water stayed resident: 83 MiB peak at a
//! million sessions, 20 MiB more than the same load on Redis. The store
//! needs no such width: redb runs one writer at a time, and a read that
//! misses the OS page cache waits on a disk that serves a few at once. So
//! the store's work goes to `FILE_THREADS` threads started with the store,
//! fed by one queue; when they are all busy, calls wait their turn in the
//! queue instead of starting threads.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crossbeam_channel::{Sender, unbounded};
use tokio::sync::oneshot;

/// Threads per store: two, so a read waiting on the disk does not stop
/// the other, and no more: each thread that allocates gets a glibc malloc
/// arena of its own, whose high water stays resident (a cold load at a
/// million sessions peaked 7 MiB lower with every thread on one arena).
pub(crate) const FILE_THREADS: usize = 2;

type Job = Box<dyn FnOnce() + Send>;

/// The store's threads; they end once this is dropped and the queue is
/// drained.
#[derive(Debug)]
pub(crate) struct FilePool {
    jobs: Sender<Job>,
}

/// Why a job gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// redb may panic on a file damaged outside it (it promises an error
    /// only after a full integrity check); the caller fails closed.
    #[error("the session store panicked reading its file (damaged?); see the log")]
    Panicked,
    /// Every thread is gone (they survive panics, so only if the process
    /// is ending).
    #[error("the session store's threads are gone")]
    Gone,
}

impl FilePool {
    /// Starts `threads` threads named `name-N`.
    pub(crate) fn start(name: &str, threads: usize) -> io::Result<FilePool> {
        let (jobs, queue) = unbounded::<Job>();
        for n in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    for job in queue {
                        // A panic ends the job, whose dropped reply tells
                        // its caller; the thread serves on.
                        if catch_unwind(AssertUnwindSafe(job)).is_err() {
                            tracing::error!("session store operation panicked (damaged file?)");
                        }
                    }
                })?;
        }
        Ok(FilePool { jobs })
    }

    /// Runs `op` on one of the threads. `op` (and what it holds) is dropped
    /// before the answer is sent, so a caller that drops the store after
    /// the answer finds nothing of it still alive.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = reply.send(op());
            }))
            .map_err(|_| PoolError::Gone)?;
        answer.await.map_err(|_| PoolError::Panicked)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::collections::HashSet;
    use std::sync::{Arc, Barrier};

    /// The jobs run on the pool's threads, at most `threads` of them at
    /// once however many are queued, and every one is answered.
    #[tokio::test]
    async fn runs_jobs_on_its_own_threads() {
        let pool = FilePool::start("test-pool", 2).unwrap();
        // Both threads must be inside a job at the same time to pass.
        let barrier = Arc::new(Barrier::new(2));
        let names: Vec<_> = (0..2)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                pool.run(move || {
                    barrier.wait();
                    std::thread::current().name().unwrap().to_owned()
                })
            })
            .collect();
        let names: HashSet<String> = futures_util::future::try_join_all(names)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(
            names,
            HashSet::from(["test-pool-0".to_owned(), "test-pool-1".to_owned()])
        );
        let many = (0..100).map(|i| pool.run(move || i * 2));
        let sum: i32 = futures_util::future::try_join_all(many)
            .await
            .unwrap()
            .into_iter()
            .sum();
        assert_eq!(sum, 9900);
    }

    /// A job that panics is an error for its caller only; the thread
    /// that ran it serves the next one.
    #[tokio::test]
    async fn a_panic_is_an_error_and_the_thread_survives() {
        let pool = FilePool::start("test-panic", 1).unwrap();
        let err = pool.run(|| -> u8 { panic!("damaged") }).await.unwrap_err();
        assert!(matches!(err, PoolError::Panicked), "{err}");
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}

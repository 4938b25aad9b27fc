//! Argon2 work, bounded. Each passcode check or hash takes about 19 MiB and
//! tens of milliseconds of a core; unbounded, a burst of guesses took the
//! server from 1 to 3 GB. Here a few threads, each with its own reused working
//! memory, do all of it; callers queue fairly (first come, first served) for at
//! most [`QUEUE_WAIT`] and are otherwise told the server is busy.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use convene_meeting::passcode::Scratch;
use tokio::sync::{oneshot, Semaphore};

/// Longest a caller waits for a hashing thread before "busy, try again".
pub const QUEUE_WAIT: Duration = Duration::from_secs(5);

type Job = Box<dyn FnOnce(&mut Scratch) + Send>;

/// The server was too busy hashing to take this one in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

pub struct Hashers {
    permits: Arc<Semaphore>,
    jobs: Mutex<mpsc::Sender<Job>>,
    queue_wait: Duration,
}

impl Hashers {
    /// Half the cores (at least one): the media workers keep the rest.
    pub fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }

    pub fn start(threads: usize, queue_wait: Duration) -> Hashers {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("convene-hash-{i}"))
                .spawn(move || {
                    let mut scratch = Scratch::default();
                    loop {
                        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        };
                        job(&mut scratch);
                    }
                })
                .expect("hashing thread starts");
        }
        Hashers {
            permits: Arc::new(Semaphore::new(threads)),
            jobs: Mutex::new(tx),
            queue_wait,
        }
    }

    /// Run `work` on a hashing thread, waiting at most the queue time for one.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Scratch) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |scratch| {
            let _ = tx.send(work(scratch));
            drop(permit); // the thread is free again once the result is out
        });
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .map_err(|_| Busy)?;
        rx.await.map_err(|_| Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_the_threads_run_at_once_and_late_callers_hear_busy() {
        let hashers = Arc::new(Hashers::start(2, Duration::from_millis(300)));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut calls = Vec::new();
        for _ in 0..8 {
            let (h, running, most) = (hashers.clone(), running.clone(), most.clone());
            calls.push(tokio::spawn(async move {
                h.run(move |_| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        let mut done = 0;
        let mut busy = 0;
        for c in calls {
            match c.await.unwrap() {
                Ok(()) => done += 1,
                Err(Busy) => busy += 1,
            }
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        // Two run at once for 200 ms each; a 300 ms queue lets about four through.
        assert!(done >= 2 && busy >= 2, "done {done}, busy {busy}");
    }
}

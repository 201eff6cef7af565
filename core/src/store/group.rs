//! Group commit: many callers' writes in one redb transaction, one fsync.
//!
//! A redb commit is durable when it returns, which costs an fsync: a few
//! milliseconds on most disks. Committing each write on its own caps a store
//! at a few hundred writes a second however many callers wait. A
//! [`GroupCommit`] thread takes the first job waiting, every other job
//! already queued behind it (up to a batch), applies them all in one write
//! transaction and answers each caller when that commit is durable: the
//! same guarantee per write, one fsync per batch.

use std::sync::Arc;
use std::sync::mpsc;

use redb::WriteTransaction;

use super::handle::DbHandle;
use tokio::sync::oneshot;

use super::StoreError;

type Job<J, R> = (J, oneshot::Sender<Result<R, StoreError>>);

/// A committer thread and the queue of jobs it commits.
pub(crate) struct GroupCommit<J, R> {
    // Both `Some` until drop, which closes the queue and waits for the
    // thread: the jobs already queued are committed, and the database is
    // free once the owner is gone.
    jobs: Option<mpsc::Sender<Job<J, R>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<J: Send + 'static, R: Send + 'static> GroupCommit<J, R> {
    /// Starts the thread. `apply` writes one batch of jobs into the
    /// transaction and returns one answer per job, in order; a batch whose
    /// `apply` or commit fails answers every job in it with the error.
    pub(crate) fn spawn(
        name: &str,
        db: Arc<DbHandle>,
        batch: usize,
        mut apply: impl FnMut(&WriteTransaction, &[J]) -> Result<Vec<R>, StoreError> + Send + 'static,
    ) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job<J, R>>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut waiting = vec![first];
                    while waiting.len() < batch {
                        match queue.try_recv() {
                            Ok(job) => waiting.push(job),
                            Err(_) => break,
                        }
                    }
                    let (jobs, answers): (Vec<J>, Vec<_>) = waiting.into_iter().unzip();
                    let committed = db.run(|db| {
                        let write = db.begin_write().map_err(failed)?;
                        let results = apply(&write, &jobs)?;
                        write.commit().map_err(failed)?;
                        Ok::<_, StoreError>(results)
                    });
                    match committed {
                        Ok(results) => {
                            for (answer, result) in answers.into_iter().zip(results) {
                                let _ = answer.send(Ok(result));
                            }
                        }
                        Err(error) => {
                            let error = match error {
                                StoreError::Embedded(message) => message,
                                other => other.to_string(),
                            };
                            for answer in answers {
                                let _ = answer.send(Err(StoreError::Embedded(error.clone())));
                            }
                        }
                    }
                }
            })
            .map_err(failed)?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Hands `job` to the thread; answers once its batch is committed.
    pub(crate) async fn submit(&self, job: J) -> Result<R, StoreError> {
        let stopped = || failed("the store's committer has stopped");
        let (answer, answered) = oneshot::channel();
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send((job, answer))
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

impl<J, R> Drop for GroupCommit<J, R> {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn failed(error: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(error.to_string())
}

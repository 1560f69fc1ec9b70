//! The event log's `write(2)` off the consume loop: a thread of its own writes each full buffer
//! while the loop renders the next one.
//!
//! Why: in `cargo bench --bench throughput` the loop thread is the bottleneck, and `write(2)` of
//! ~400 B per event into the page cache (ext4's delayed allocation per page, the copy) was 13 % of
//! its time (perf, 2026-11-30, `docs/performance.md` "step 7"). The second core had room.
//!
//! The contract with [`super::EventLog`] is small, so its guarantees stay where they were:
//! - At most one buffer is in flight. The loop hands one over only after the previous one came
//!   back ([`BackgroundWriter::wait`]), so the file receives buffers in order, and a slow disk
//!   slows the loop exactly as a blocking `write(2)` did, with one buffer of slack.
//! - A buffer comes back with how much of it reached the file and the error, if any. The event
//!   log puts a failed buffer's unwritten rest back in front of its own buffer and writes on its
//!   own thread until a write succeeds: the retry, the refusal of messages on a full buffer and
//!   the "no line twice, no line torn" rules are the synchronous path's (issue 10.7).
//! - The event log settles the buffer in flight before every flush, sync and rotation, so a
//!   committed offset still means its lines were written (and synced) first.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::LogFile;

/// Where a buffer goes: the process's stdout or the current event-log file.
#[derive(Clone)]
pub(super) enum Target {
    Stdout,
    File(Arc<dyn LogFile>),
}

impl Target {
    /// One `write(2)`: may write less than `buf`.
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Target::Stdout => io::stdout().lock().write(buf),
            Target::File(file) => file.write(buf),
        }
    }
}

/// Write `buf[*written..]` to `target`, advancing `*written` past every byte that reached it, so
/// a failed call can be resumed where it stopped (a short write may have torn a line; resuming
/// completes it). `EINTR` is retried; a write of 0 bytes is an error (`WriteZero`).
pub(super) fn write_from(target: &Target, buf: &[u8], written: &mut usize) -> io::Result<()> {
    while *written < buf.len() {
        match target.write(&buf[*written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

struct Job {
    target: Target,
    buf: Vec<u8>,
}

/// A buffer back from the writer thread: `buf[..written]` reached the target; `result` says
/// whether all of it did.
pub(super) struct Done {
    pub buf: Vec<u8>,
    pub written: usize,
    pub result: io::Result<()>,
}

/// The writer thread and the one buffer it may hold.
pub(super) struct BackgroundWriter {
    /// `None` only while dropping: closing it ends the thread.
    jobs: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    /// A buffer is with the writer thread.
    pub in_flight: bool,
    /// An empty buffer to render into while the other one is written.
    pub spare: Vec<u8>,
}

impl BackgroundWriter {
    pub fn start(spare: Vec<u8>) -> io::Result<Self> {
        // Capacity 1 and at most one job in flight: `send` never blocks.
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(1);
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cdcmon-eventlog".into())
            .spawn(move || {
                for Job { target, buf } in job_rx {
                    let mut written = 0;
                    let result = write_from(&target, &buf, &mut written);
                    if done_tx
                        .send(Done {
                            buf,
                            written,
                            result,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            })?;
        Ok(BackgroundWriter {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            in_flight: false,
            spare,
        })
    }

    /// Hand `buf` to the writer thread. The caller has waited for the previous one. If the
    /// thread is gone, the buffer comes back (`Err`) for the caller to write itself.
    pub fn send(&mut self, target: Target, buf: Vec<u8>) -> Result<(), Vec<u8>> {
        debug_assert!(!self.in_flight, "one buffer in flight at most");
        let Some(jobs) = &self.jobs else {
            return Err(buf);
        };
        match jobs.send(Job { target, buf }) {
            Ok(()) => {
                self.in_flight = true;
                Ok(())
            }
            Err(mpsc::SendError(job)) => Err(job.buf),
        }
    }

    /// Wait for the buffer in flight, if there is one. `Some(Err)`: the writer thread ended
    /// with the buffer (it panicked); what it had written is unknown.
    pub fn wait(&mut self) -> Option<Result<Done, io::Error>> {
        if !self.in_flight {
            return None;
        }
        self.in_flight = false;
        Some(self.done.recv().map_err(|_| {
            io::Error::other("the event-log writer thread ended with a buffer in flight")
        }))
    }
}

impl Drop for BackgroundWriter {
    /// Close the job channel and let the thread finish the write it may be in, so no line is
    /// left half-written by the process's own exit.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

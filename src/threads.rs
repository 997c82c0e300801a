//! Named worker threads, all joined at exit.
//!
//! A panic in any worker stops the node (through [`Shutdown`]) instead of
//! leaving it half-alive, and is reported when the thread is joined.

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use crate::shutdown::{Cause, Never, Shutdown};

/// A thread that wakes this long after the deadline it slept to was not
/// running meanwhile (SIGSTOP, a suspended host): the router and the
/// writers do not count that time against peers.
pub const OVERSLEPT: Duration = Duration::from_secs(1);

/// Stack for connection and service threads: they hold no big arrays, and a
/// node with hundreds of peers should not reserve megabytes for each.
pub const STACK_SIZE: usize = 256 * 1024;

pub struct Threads {
    shutdown: Arc<Shutdown>,
    // Mutex because connection threads spawn threads too.
    handles: Mutex<Vec<JoinHandle<()>>>,
    // Every worker holds a clone; when the last one is dropped every worker
    // has finished, which `join_all` can wait for with a deadline.
    alive_tx: Mutex<Option<Sender<Never>>>,
    alive_rx: Receiver<Never>,
}

impl Threads {
    pub fn new(shutdown: Arc<Shutdown>) -> Arc<Self> {
        let (alive_tx, alive_rx) = bounded(0);
        Arc::new(Threads {
            shutdown,
            handles: Mutex::new(Vec::new()),
            alive_tx: Mutex::new(Some(alive_tx)),
            alive_rx,
        })
    }

    /// Starts a named worker that `join_all` waits for.
    pub fn spawn(&self, name: String, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let alive = self.alive_tx.lock().clone();
        let handle = self.start(name, move || {
            let _alive = alive;
            f()
        })?;
        let mut handles = self.handles.lock();
        reap_finished(&mut handles);
        handles.push(handle);
        Ok(())
    }

    /// Starts a named thread that nobody waits for: the stdin reader, which
    /// may sit in a `read` that nothing portable can interrupt.
    pub fn spawn_detached(
        &self,
        name: String,
        f: impl FnOnce() + Send + 'static,
    ) -> io::Result<()> {
        self.start(name, f).map(drop)
    }

    fn start(&self, name: String, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
        let shutdown = self.shutdown.clone();
        thread::Builder::new()
            .name(name)
            .stack_size(STACK_SIZE)
            .spawn(move || {
                let _guard = PanicGuard(shutdown);
                f()
            })
    }

    /// Waits until every worker has finished or `deadline` passes, and joins
    /// the finished ones. Returns the names of those still running and
    /// whether any of them panicked.
    pub fn join_all(&self, deadline: Instant) -> (Vec<String>, bool) {
        self.alive_tx.lock().take();
        if let Err(RecvTimeoutError::Timeout) = self.alive_rx.recv_deadline(deadline) {
            log::debug!("some threads are still busy at exit");
        }
        let mut panicked = false;
        let mut running = Vec::new();
        for handle in self.handles.lock().drain(..) {
            if handle.is_finished() {
                panicked |= join(handle);
            } else {
                running.push(handle.thread().name().unwrap_or("?").to_owned());
            }
        }
        (running, panicked)
    }
}

fn reap_finished(handles: &mut Vec<JoinHandle<()>>) {
    let mut i = 0;
    while i < handles.len() {
        if handles[i].is_finished() {
            join(handles.swap_remove(i));
        } else {
            i += 1;
        }
    }
}

/// Joins a finished thread; true if it panicked.
fn join(handle: JoinHandle<()>) -> bool {
    let name = handle.thread().name().unwrap_or("?").to_owned();
    match handle.join() {
        Ok(()) => false,
        Err(_) => {
            log::error!("internal error: thread {name} panicked");
            true
        }
    }
}

struct PanicGuard(Arc<Shutdown>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.trigger(Cause::Fatal);
        }
    }
}

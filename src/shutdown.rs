//! One trigger, many listeners: the node-wide signal to stop.
//!
//! Listeners hold a channel receiver whose sender is dropped when the trigger
//! fires, so `select!` on it wakes every loop at once (the crossbeam idiom:
//! dropping the last `Sender` is itself the broadcast).

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;

/// Why the node stops. The first cause wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Ctrl-C or SIGTERM: flush for at most about two seconds, then go.
    Signal,
    /// stdin ended under `--exit-on-eof`: deliver everything, then go.
    StdinEof,
    /// stdout was closed (`peercat | head`): nobody reads us any more.
    StdoutClosed,
    /// `--connect-timeout` passed without enough peers.
    NoPeers,
    /// A worker thread panicked: a bug.
    Fatal,
}

/// A message that can never be sent: the channels only ever disconnect.
pub enum Never {}

pub struct Shutdown {
    cause: Mutex<Option<Cause>>,
    // Mutex because any thread (the Ctrl-C handler among them) may fire them.
    stop_tx: Mutex<Option<Sender<Never>>>,
    hurry_tx: Mutex<Option<Sender<Never>>>,
    stop_rx: Receiver<Never>,
    hurry_rx: Receiver<Never>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (stop_tx, stop_rx) = bounded(0);
        let (hurry_tx, hurry_rx) = bounded(0);
        Shutdown {
            cause: Mutex::new(None),
            stop_tx: Mutex::new(Some(stop_tx)),
            hurry_tx: Mutex::new(Some(hurry_tx)),
            stop_rx,
            hurry_rx,
        }
    }
}

impl Shutdown {
    /// Fires the trigger. Returns false if it had already fired; a signal
    /// still makes a slower shutdown hurry.
    ///
    /// The cause and the stop come first, the hurry last: a thread that
    /// sees the hurry then finds the stop asked for too (the router takes
    /// the stop up first; with the hurry seen before the cause was set,
    /// its deadline ran out while the stop waited for acknowledgements,
    /// and the node left with no goodbye: attack43 F2).
    pub fn trigger(&self, cause: Cause) -> bool {
        let first = {
            let mut current = self.cause.lock();
            let first = current.is_none();
            if first {
                *current = Some(cause);
            }
            first
        };
        if first {
            self.stop_tx.lock().take();
        }
        if matches!(cause, Cause::Signal | Cause::NoPeers | Cause::Fatal) {
            self.hurry_tx.lock().take();
        }
        first
    }

    pub fn cause(&self) -> Option<Cause> {
        *self.cause.lock()
    }

    pub fn is_triggered(&self) -> bool {
        self.cause.lock().is_some()
    }

    /// Disconnects when the node starts to stop, whatever the cause.
    pub fn stopping(&self) -> Receiver<Never> {
        self.stop_rx.clone()
    }

    /// Disconnects when stopping must be quick: a signal arrived.
    pub fn hurrying(&self) -> Receiver<Never> {
        self.hurry_rx.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_cause_wins_and_everyone_hears_it() {
        let s = Shutdown::default();
        let (a, b) = (s.stopping(), s.stopping());
        assert!(matches!(
            a.try_recv(),
            Err(crossbeam_channel::TryRecvError::Empty)
        ));
        assert!(s.trigger(Cause::StdinEof));
        assert!(!s.trigger(Cause::Signal));
        assert_eq!(s.cause(), Some(Cause::StdinEof));
        assert!(a.recv().is_err() && b.recv().is_err());
        // The later signal still asks for haste.
        assert!(s.hurrying().recv().is_err());
    }
}

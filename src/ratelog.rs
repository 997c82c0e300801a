//! Warnings a stranger can trigger, rate-limited per kind and source.
//!
//! A stranger can make a node warn once per socket or per frame (a refused
//! connection, a failed handshake); a flood of those would flood the log.
//! So the first warning of a kind from a source is logged, the rest within
//! [`WINDOW`] are only counted, and once the window is over one line says
//! how many there were (`523 more in the last 10 s, not logged one by
//! one`): a warning once they are [`FLOOD`] or more, else at info. That line is
//! written when the next rate-limited warning of any kind is considered, or
//! at [`flush`], since nothing here runs a timer.
//!
//! Memory and lines are bounded: at most [`MAX_SOURCES`] (kind, source)
//! pairs are tracked at once; beyond that, warnings of a kind from
//! untracked sources share one entry ("other sources"), so a stranger
//! cycling through addresses can neither grow the table nor get a line per
//! address: a window logs at most `MAX_SOURCES` lines plus one per kind.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long one logged warning stands for the others like it.
pub const WINDOW: Duration = Duration::from_secs(10);
/// How many (kind, source) pairs are tracked at once, each with a line of
/// its own per window. Small: it bounds the lines a flood from many
/// addresses logs (1,000 connections from 250 addresses logged 389 lines
/// with 1,024), and a few sources named are enough to tell an attack.
pub const MAX_SOURCES: usize = 16;
/// Held-back lines from here on are a flood: their count is a warning.
/// Fewer are a few more of what was logged once, and may have been
/// logged at info (a member probing a dead member's address closes a
/// connection before a byte; attack40 F3 saw its count as a warning).
pub const FLOOD: u64 = 10;

/// The unit a stranger is counted by, here and for the handshake limit per
/// address: an IPv4 address, or an IPv6 /64 (one host usually holds a whole
/// /64, so counting single IPv6 addresses would bound nothing). An
/// IPv4-mapped IPv6 address counts as its IPv4 address.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) if !v6.is_loopback() => {
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128)))
        }
        other => other,
    }
}

/// A source as [`source_of`] made it, for a log line: `10.0.0.1`,
/// `2001:db8::/64`.
pub fn describe_source(ip: IpAddr) -> String {
    match source_of(ip) {
        IpAddr::V6(v6) if !v6.is_loopback() => format!("{v6}/64"),
        other => other.to_string(),
    }
}

/// Where a warning came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Ip(IpAddr),
    /// Any source beyond [`MAX_SOURCES`].
    Others,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Ip(ip) => write!(f, "{}", describe_source(*ip)),
            Source::Others => write!(f, "other sources"),
        }
    }
}

/// The count of warnings held back during one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub kind: &'static str,
    pub source: Source,
    pub suppressed: u64,
    pub window: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Most kinds are things a source did to us ("refused connections
        // from 10.0.0.1"); a kind ending in " to" is something we did
        // toward it ("messages too big to send to 10.0.0.1").
        let toward = if self.kind.ends_with(" to") {
            " "
        } else {
            " from "
        };
        write!(
            f,
            "{}{toward}{}: {} more in the last {} s, not logged one by one",
            self.kind,
            self.source,
            self.suppressed,
            self.window.as_secs()
        )
    }
}

impl Summary {
    /// A warning for a flood ([`FLOOD`] or more held back), else info.
    pub fn level(&self) -> log::Level {
        match self.suppressed >= FLOOD {
            true => log::Level::Warn,
            false => log::Level::Info,
        }
    }
}

struct Entry {
    since: Instant,
    suppressed: u64,
}

/// The pure limiter: the caller supplies the clock.
pub struct RateLimiter {
    window: Duration,
    capacity: usize,
    entries: HashMap<(&'static str, Source), Entry>,
}

impl RateLimiter {
    pub fn new(window: Duration, capacity: usize) -> Self {
        RateLimiter {
            window,
            capacity,
            entries: HashMap::new(),
        }
    }

    /// Whether a warning of `kind` from `from` at `now` should be logged,
    /// and the summaries of windows that ended before `now`.
    pub fn check(
        &mut self,
        kind: &'static str,
        from: IpAddr,
        now: Instant,
    ) -> (bool, Vec<Summary>) {
        let ended = self.expire(now);
        let mut key = (kind, Source::Ip(source_of(from)));
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            key = (kind, Source::Others);
        }
        let log = match self.entries.get_mut(&key) {
            Some(entry) => {
                entry.suppressed += 1;
                false
            }
            None => {
                let entry = Entry {
                    since: now,
                    suppressed: 0,
                };
                self.entries.insert(key, entry);
                true
            }
        };
        (log, ended)
    }

    /// Forgets every window that has ended by `now`; returns the counts of
    /// those that held warnings back.
    pub fn expire(&mut self, now: Instant) -> Vec<Summary> {
        let window = self.window;
        let mut ended = Vec::new();
        self.entries.retain(|&(kind, source), entry| {
            let open = now.saturating_duration_since(entry.since) < window;
            if !open && entry.suppressed > 0 {
                ended.push(Summary {
                    kind,
                    source,
                    suppressed: entry.suppressed,
                    window,
                });
            }
            open
        });
        ended
    }

    /// How many (kind, source) pairs are tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Lines of one kind, whatever their source, logged at most `limit` per
/// [`WINDOW`]; the rest are counted, and one line says how many once the
/// window is over ([`Burst::roll`], called by the router's timer) or at
/// exit ([`Burst::flush`]). For lines each a legitimate event, too many
/// only from a stranger: a peer up per completed handshake, in an open
/// group (attack44 F3: 773 lines in 8 s from one stranger's flood).
#[derive(Debug)]
pub struct Burst {
    /// Read "N more KIND in the last 10 s".
    kind: &'static str,
    limit: u64,
    since: Option<Instant>,
    shown: u64,
    held: u64,
}

impl Burst {
    pub const fn new(kind: &'static str, limit: u64) -> Self {
        Burst {
            kind,
            limit,
            since: None,
            shown: 0,
            held: 0,
        }
    }

    /// Whether a line at `now` is logged (else it is counted).
    pub fn admit(&mut self, now: Instant) -> bool {
        self.roll(now);
        self.since.get_or_insert(now);
        if self.shown < self.limit {
            self.shown += 1;
            return true;
        }
        self.held += 1;
        false
    }

    /// Ends the window if it is over by `now`, logging its count.
    pub fn roll(&mut self, now: Instant) {
        if self
            .since
            .is_some_and(|at| now.saturating_duration_since(at) >= WINDOW)
        {
            self.flush();
        }
    }

    /// Logs the count held back so far, and starts a new window.
    pub fn flush(&mut self) {
        if let Some(line) = self.summary() {
            let level = match self.held >= FLOOD {
                true => log::Level::Warn,
                false => log::Level::Info,
            };
            log::log!(level, "{line}");
        }
        self.since = None;
        self.shown = 0;
        self.held = 0;
    }

    /// The line for what the window held back, if anything.
    fn summary(&self) -> Option<String> {
        (self.held > 0).then(|| {
            format!(
                "{} more {} in the last {} s, not logged one by one",
                self.held,
                self.kind,
                WINDOW.as_secs()
            )
        })
    }
}

/// The node's limiter. A process runs one node, and warnings come from
/// many threads. Mutex: every thread that warns checks and updates it.
static LIMITER: Mutex<Option<RateLimiter>> = parking_lot::const_mutex(None);

/// Logs `message()` as a warning unless a warning of `kind` from `from` was
/// logged within the last [`WINDOW`]; then it is only counted. `kind` is a
/// short phrase for the summary line, e.g. "refused connections" (read
/// "refused connections from SOURCE"), or, for what we did toward the
/// source, one ending in " to" ("messages too big to send to SOURCE").
pub fn warn(kind: &'static str, from: IpAddr, message: impl FnOnce() -> String) {
    log(log::Level::Warn, kind, from, message)
}

/// [`warn`] at another level; the summary of what was held back is a
/// warning if it reports a flood ([`Summary::level`]).
pub fn log(level: log::Level, kind: &'static str, from: IpAddr, message: impl FnOnce() -> String) {
    let (show, ended) = {
        let mut limiter = LIMITER.lock();
        limiter
            .get_or_insert_with(|| RateLimiter::new(WINDOW, MAX_SOURCES))
            .check(kind, from, Instant::now())
    };
    // Logged outside the lock: a slow log must not hold other threads.
    log_summaries(ended);
    if show {
        log::log!(level, "{}", message());
    }
}

/// One line per window that held warnings back ([`Summary::level`]).
fn log_summaries(ended: Vec<Summary>) {
    for summary in ended {
        log::log!(summary.level(), "{summary}");
    }
}

/// Logs the counts of windows that have ended.
pub fn flush() {
    let ended = match LIMITER.lock().as_mut() {
        Some(limiter) => limiter.expire(Instant::now()),
        None => return,
    };
    log_summaries(ended);
}

/// Logs every count held back so far, windows still open included: for
/// the end of the run.
pub fn flush_all() {
    let ended = match LIMITER.lock().as_mut() {
        Some(limiter) => limiter.expire(Instant::now() + WINDOW),
        None => return,
    };
    log_summaries(ended);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_burst_logs_its_limit_per_window_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut burst = Burst::new("peers up", 3);
        let shown: Vec<bool> = (0..5)
            .map(|i| burst.admit(t0 + Duration::from_millis(i)))
            .collect();
        assert_eq!(shown, [true, true, true, false, false]);
        assert_eq!(
            burst.summary().as_deref(),
            Some("2 more peers up in the last 10 s, not logged one by one")
        );
        burst.roll(t0 + WINDOW - Duration::from_millis(1));
        assert!(!burst.admit(t0 + WINDOW - Duration::from_millis(1)));
        // A new window: logged again, nothing held.
        assert!(burst.admit(t0 + WINDOW));
        assert_eq!(burst.summary(), None);
    }

    #[test]
    fn the_first_of_a_kind_from_a_source_is_logged_the_rest_counted() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(WINDOW, 16);
        assert_eq!(rl.check("refused", ip(1), t0), (true, vec![]));
        for i in 1..=523 {
            let (log, ended) = rl.check("refused", ip(1), t0 + Duration::from_millis(i));
            assert!(!log && ended.is_empty());
        }
        // Another kind, another source: logged.
        assert!(rl.check("handshake", ip(1), t0).0);
        assert!(rl.check("refused", ip(2), t0).0);
        // After the window: the count, and the next one is logged again.
        let (log, ended) = rl.check("refused", ip(1), t0 + WINDOW);
        assert!(log);
        assert_eq!(
            ended,
            vec![Summary {
                kind: "refused",
                source: Source::Ip(ip(1)),
                suppressed: 523,
                window: WINDOW,
            }],
            "only windows that held something back are summarised"
        );
        assert_eq!(
            ended[0].to_string(),
            "refused from 10.0.0.1: 523 more in the last 10 s, not logged one by one"
        );
    }

    #[test]
    fn a_summary_of_what_we_did_toward_a_source_does_not_say_it_came_from_it() {
        let summary = Summary {
            kind: "messages too big to send to",
            source: Source::Ip(ip(1)),
            suppressed: 10,
            window: WINDOW,
        };
        assert_eq!(
            summary.to_string(),
            "messages too big to send to 10.0.0.1: 10 more in the last 10 s, not logged one by one"
        );
    }

    #[test]
    fn a_stranger_cycling_addresses_cannot_grow_the_table() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(WINDOW, 8);
        let logged = (0..=255u8)
            .filter(|&last| rl.check("refused", ip(last), t0).0)
            .count();
        // Eight sources get their own line, all the others share one.
        assert_eq!(logged, 9);
        assert!(rl.len() <= 9, "{} entries", rl.len());
        let ended = rl.expire(t0 + WINDOW);
        assert_eq!(
            ended,
            vec![Summary {
                kind: "refused",
                source: Source::Others,
                suppressed: 256 - 9,
                window: WINDOW,
            }]
        );
        assert!(rl.is_empty(), "ended windows are forgotten");
    }

    #[test]
    fn a_flood_from_many_addresses_logs_a_bounded_number_of_lines() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(WINDOW, MAX_SOURCES);
        let kinds = ["failed handshakes", "failed connections", "refused"];
        let mut logged = 0;
        for n in 0..1000u32 {
            let from = IpAddr::from((0x0a00_0000 + n).to_be_bytes());
            let at = t0 + Duration::from_millis(n.into());
            for kind in kinds {
                logged += usize::from(rl.check(kind, from, at).0);
            }
        }
        // A few dozen lines per window, whatever the number of addresses.
        assert_eq!(logged, MAX_SOURCES + kinds.len());
        assert!(
            logged <= 32,
            "3,000 warnings from 1,000 addresses logged {logged} lines"
        );
        assert!(logged > kinds.len(), "some sources are still named");
    }

    #[test]
    fn an_ipv6_source_is_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_of(a), source_of(b));
        assert_ne!(source_of(a), source_of(other));
        assert_eq!(describe_source(a), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(source_of(mapped), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(describe_source("::1".parse().unwrap()), "::1");
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(WINDOW, 8);
        assert!(rl.check("refused", a, t0).0);
        assert!(!rl.check("refused", b, t0).0, "same /64, same source");
    }

    #[test]
    fn a_quiet_source_is_logged_every_time() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(WINDOW, 8);
        for n in 0..5u32 {
            let (log, ended) = rl.check("handshake", ip(1), t0 + WINDOW * n);
            assert!(log && ended.is_empty(), "warning {n}");
        }
    }
}

//! The node's books: what each peer got from us, the one-line summary at
//! exit, and the `--stats` lines.
//!
//! A message counts as *delivered* to a peer only once the peer has
//! confirmed reading it (a PONG to a PING sent after it); written but
//! unconfirmed, lost with a broken connection, and too big for the peer all
//! count as *missed*, and anything missed makes `--exit-on-eof` exit 3.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::event::{Ending, PeerInfo};
use crate::frame::NodeId;
use crate::outbox::Ledger;

/// Peers named one by one in the exit summary; the rest are summed up.
const SUMMARY_PEERS: usize = 32;
/// Peers whose deliveries are counted one by one; later ones share a record,
/// so a node that churns through peers keeps bounded books.
const MAX_RECORDS: usize = 1024;

/// What one peer got from us, over all its connections.
struct Delivery {
    name: Arc<str>,
    addr: SocketAddr,
    /// Written to its socket, and confirmed read.
    delivered: u64,
    /// Written, but the connection ended before the peer confirmed them.
    unconfirmed: u64,
    /// Never written: dropped with a broken connection.
    lost: u64,
    /// Over its `--max-frame`, left out.
    too_big: u64,
    /// How its last connection that missed something ended.
    broken: Option<Ending>,
}

impl Delivery {
    fn new(name: Arc<str>, addr: SocketAddr) -> Self {
        Delivery {
            name,
            addr,
            delivered: 0,
            unconfirmed: 0,
            lost: 0,
            too_big: 0,
            broken: None,
        }
    }

    fn missed(&self) -> u64 {
        self.unconfirmed + self.lost + self.too_big
    }
}

/// Running totals, for `--stats`.
#[derive(Default, Clone, Copy)]
pub struct Totals {
    pub msgs_in: u64,
    pub bytes_in: u64,
    pub msgs_out: u64,
    pub bytes_out: u64,
    pub missed: u64,
}

/// What one connection's outbox says it did, when it is over.
pub struct Settled<'a> {
    pub info: &'a PeerInfo,
    pub ledger: Ledger,
    /// Messages the peer confirmed reading.
    pub confirmed: u64,
    pub too_big: u64,
    pub ending: &'a Ending,
}

pub struct Books {
    deliveries: Vec<(NodeId, Delivery)>,
    /// Peers beyond MAX_RECORDS, summed up.
    others: Delivery,
    /// Finished connections' traffic, plus what came in.
    pub totals: Totals,
    /// The totals at the last `--stats` line.
    last_stats: Totals,
    pub lines_read: u64,
    /// Received messages dropped as repeats.
    pub seq_dropped: u64,
}

impl Default for Books {
    fn default() -> Self {
        Books {
            deliveries: Vec::new(),
            others: Delivery::new("other peers".into(), SocketAddr::from(([0, 0, 0, 0], 0))),
            totals: Totals::default(),
            last_stats: Totals::default(),
            lines_read: 0,
            seq_dropped: 0,
        }
    }
}

impl Books {
    /// Adds a finished connection to its node's record.
    pub fn settle(&mut self, c: Settled<'_>) {
        let ledger = c.ledger;
        if ledger.queued == 0 && c.too_big == 0 {
            return; // nothing was due to it
        }
        let confirmed = c.confirmed.min(ledger.written);
        let record = self.record(c.info);
        record.delivered += confirmed;
        record.unconfirmed += ledger.written - confirmed;
        record.lost += ledger.dropped + ledger.pending();
        record.too_big += c.too_big;
        if confirmed < ledger.written || ledger.dropped > 0 {
            record.broken = Some(c.ending.clone());
        }
        self.totals.msgs_out += ledger.written;
        self.totals.bytes_out += ledger.written_bytes;
        self.totals.missed += ledger.written - confirmed + ledger.dropped;
    }

    fn record(&mut self, info: &PeerInfo) -> &mut Delivery {
        let at = self
            .deliveries
            .iter()
            .position(|(id, _)| *id == info.node_id);
        match at {
            Some(at) => &mut self.deliveries[at].1,
            None if self.deliveries.len() >= MAX_RECORDS => &mut self.others,
            None => {
                let record = Delivery::new(info.name.clone(), info.addr);
                self.deliveries.push((info.node_id, record));
                &mut self.deliveries.last_mut().expect("just pushed").1
            }
        }
    }

    /// Messages that were meant for a peer and never queued for any of its
    /// connections (its connection closed, and none replaced it).
    pub fn lost(&mut self, info: &PeerInfo, msgs: u64, too_big: u64) {
        if msgs == 0 && too_big == 0 {
            return;
        }
        let record = self.record(info);
        record.lost += msgs;
        record.too_big += too_big;
        record.broken = Some(Ending::Io(
            "it closed while lines were on their way, and no connection replaced it".to_owned(),
        ));
        self.totals.missed += msgs;
    }

    /// Whether any peer missed any message.
    pub fn any_missed(&self) -> bool {
        self.deliveries.iter().any(|(_, d)| d.missed() > 0) || self.others.missed() > 0
    }

    /// One line: what was read, what each peer got and missed, what came in.
    pub fn summary(&self, skipped: u64, unsent: u64) -> String {
        let mut read = format!(
            "summary: read {} from stdin",
            plural(self.lines_read, "line")
        );
        if skipped > 0 {
            read += &format!(" ({skipped} more skipped as too long)");
        }
        if unsent > 0 {
            read += &format!(" ({unsent} of them reached no peer)");
        }
        let mut parts = vec![read];
        let (named, rest) = self
            .deliveries
            .split_at(self.deliveries.len().min(SUMMARY_PEERS));
        parts.extend(named.iter().map(|(_, d)| describe(d)));
        if !rest.is_empty() || self.others.delivered + self.others.missed() > 0 {
            let missed = rest.iter().map(|(_, d)| d.missed()).sum::<u64>() + self.others.missed();
            parts.push(format!(
                "the other peers missed {}",
                plural(missed, "message")
            ));
        }
        let mut received = format!("received {}", plural(self.totals.msgs_in, "message"));
        if self.seq_dropped > 0 {
            received += &format!(
                " ({} dropped as repeats)",
                plural(self.seq_dropped, "message")
            );
        }
        parts.push(received);
        parts.join("; ")
    }

    /// The `--stats` line for the `every` that just passed; `now` are the
    /// totals including the live connections.
    pub fn stats_line(
        &mut self,
        now: Totals,
        every: Duration,
        live: usize,
        deepest: usize,
    ) -> String {
        let last = std::mem::replace(&mut self.last_stats, now);
        let secs = every.as_secs_f64();
        let rate = |n: u64, m: u64| n.saturating_sub(m) as f64 / secs;
        format!(
            "stats: {} up; in {:.0} msg/s, {}/s; out {:.0} msg/s, {}/s; deepest queue {}; missed {}",
            plural(live as u64, "peer"),
            rate(now.msgs_in, last.msgs_in),
            human_bytes(rate(now.bytes_in, last.bytes_in)),
            rate(now.msgs_out, last.msgs_out),
            human_bytes(rate(now.bytes_out, last.bytes_out)),
            human_bytes(deepest as f64),
            now.missed
        )
    }

    /// The `--stats` totals at exit.
    pub fn totals_line(&self) -> String {
        let t = self.totals;
        format!(
            "stats: totals: in {} ({}), out {} ({}), missed {}",
            plural(t.msgs_in, "message"),
            human_bytes(t.bytes_in as f64),
            plural(t.msgs_out, "message"),
            human_bytes(t.bytes_out as f64),
            t.missed
        )
    }
}

/// "b (127.0.0.1:7118): 10 messages delivered, 5 lost (stalled: ...)".
fn describe(d: &Delivery) -> String {
    let mut text = format!(
        "{} ({}): {} delivered",
        d.name,
        d.addr,
        plural(d.delivered, "message")
    );
    if d.unconfirmed > 0 {
        text += &format!(", {} written but not confirmed", d.unconfirmed);
    }
    if d.lost > 0 {
        text += &format!(", {} lost", d.lost);
    }
    if d.too_big > 0 {
        text += &format!(", {} too big for it", d.too_big);
    }
    if let Some(ending) = &d.broken {
        text += &format!(" ({ending})");
    }
    text
}

/// "1 message", "2 messages".
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Bytes for people: "512 B", "1.5 KiB", "12.0 MiB".
fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Direction;

    #[test]
    fn counts_read_well() {
        assert_eq!(plural(0, "message"), "0 messages");
        assert_eq!(plural(1, "message"), "1 message");
        assert_eq!(plural(2, "line"), "2 lines");
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(12.0 * 1024.0 * 1024.0), "12.0 MiB");
    }

    fn info(name: &str, id: NodeId) -> PeerInfo {
        PeerInfo {
            conn: id,
            node_id: id,
            name: name.into(),
            addr: "127.0.0.1:7119".parse().unwrap(),
            direction: Direction::In,
            listen_port: 7119,
            max_frame: 100,
            keepalive: Duration::from_secs(5),
        }
    }

    fn ledger(queued: u64, written: u64, dropped: u64) -> Ledger {
        Ledger {
            queued,
            written,
            written_bytes: written * 10,
            dropped,
        }
    }

    #[test]
    fn the_summary_names_what_each_peer_missed_and_why() {
        let mut books = Books {
            lines_read: 1000,
            ..Books::default()
        };
        let stalled = Ending::Stalled(Duration::from_secs(2));
        let polite = Ending::Goodbye("shutting down".into());
        books.settle(Settled {
            info: &info("b", 1),
            ledger: ledger(1000, 1000, 0),
            confirmed: 1000,
            too_big: 0,
            ending: &polite,
        });
        books.settle(Settled {
            info: &info("c", 2),
            ledger: ledger(1000, 600, 400),
            confirmed: 550,
            too_big: 0,
            ending: &stalled,
        });
        books.settle(Settled {
            info: &info("idle", 3),
            ledger: ledger(0, 0, 0),
            confirmed: 0,
            too_big: 0,
            ending: &polite,
        });
        assert!(books.any_missed());
        assert_eq!(
            books.summary(0, 0),
            "summary: read 1000 lines from stdin; \
             b (127.0.0.1:7119): 1000 messages delivered; \
             c (127.0.0.1:7119): 550 messages delivered, 50 written but not confirmed, \
             400 lost (stalled: accepted no data for 2s (--stall-timeout)); \
             received 0 messages"
        );
    }

    #[test]
    fn one_of_each_reads_in_the_singular() {
        let mut books = Books {
            lines_read: 1,
            ..Books::default()
        };
        books.totals.msgs_in = 1;
        books.settle(Settled {
            info: &info("b", 1),
            ledger: ledger(1, 1, 0),
            confirmed: 1,
            too_big: 0,
            ending: &Ending::Stopping,
        });
        assert!(!books.any_missed());
        assert_eq!(
            books.summary(0, 0),
            "summary: read 1 line from stdin; b (127.0.0.1:7119): 1 message delivered; \
             received 1 message"
        );
    }

    #[test]
    fn the_books_stay_bounded_however_many_peers_come_and_go() {
        let mut books = Books::default();
        for id in 0..(MAX_RECORDS as u64 + 500) {
            books.settle(Settled {
                info: &info("churn", id),
                ledger: ledger(2, 1, 1),
                confirmed: 1,
                too_big: 0,
                ending: &Ending::Reset,
            });
        }
        assert_eq!(books.deliveries.len(), MAX_RECORDS);
        assert_eq!(books.others.lost, 500);
        assert!(books
            .summary(0, 0)
            .contains("the other peers missed 1492 messages"));
    }
}

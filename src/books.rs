//! The node's books: what each member of the group got of our lines, the
//! one-line summary at exit, and the `--stats` lines.
//!
//! A line counts as *delivered* to a member once the member has
//! acknowledged it through the mesh (its STATUS says it delivered every
//! line of ours up to that one). The mesh owes a line to the members it
//! knew when the line was read; what a member did not acknowledge it
//! *missed*, and anything missed makes `--exit-on-eof` exit 3. Of that,
//! *lost* is only what it will provably never print (it skipped it as a
//! gap, or it came after it); the rest is *not acknowledged*: a member that
//! went down may still have printed it (stopped, cut, then resumed, it
//! prints what its buffers held).

use std::time::Duration;

use crate::mesh::MemberBooks;

/// Members named one by one in the exit summary; the rest are summed up.
const SUMMARY_MEMBERS: usize = 32;

/// Running totals, for `--stats`.
#[derive(Default, Clone, Copy)]
pub struct Totals {
    pub msgs_in: u64,
    pub bytes_in: u64,
    pub msgs_out: u64,
    pub bytes_out: u64,
    pub missed: u64,
}

#[derive(Default)]
pub struct Books {
    /// Finished connections' traffic, plus what came in.
    pub totals: Totals,
    /// The totals at the last `--stats` line.
    last_stats: Totals,
    pub lines_read: u64,
    /// Messages delivered to us (printed).
    pub delivered: u64,
    /// Messages of other members provably lost to us (`gap` events).
    pub gaps: u64,
}

/// What one member missed of the lines owed to it.
pub fn missed(member: &MemberBooks) -> u64 {
    let owed = member.owed.end.saturating_sub(member.owed.start);
    owed.saturating_sub(member.delivered)
}

impl Books {
    /// One line: what was read, what each member got and missed, what came in.
    pub fn summary(&self, members: &[MemberBooks], skipped: u64, unsent: u64) -> String {
        let mut read = format!(
            "summary: read {} from stdin",
            plural(self.lines_read, "line")
        );
        if skipped > 0 {
            read += &format!(" ({skipped} more skipped as too long)");
        }
        if unsent > 0 {
            read += &format!(" ({unsent} of them never sent)");
        }
        let mut parts = vec![read];
        let (named, rest) = members.split_at(members.len().min(SUMMARY_MEMBERS));
        parts.extend(named.iter().map(describe));
        if !rest.is_empty() {
            let missed: u64 = rest.iter().map(missed).sum();
            parts.push(format!(
                "{} other members missed {}",
                rest.len(),
                plural(missed, "line")
            ));
        }
        let mut received = format!("received {}", plural(self.delivered, "message"));
        if self.gaps > 0 {
            received += &format!(
                " ({} lost to this node: see the \"lost ... from\" warnings)",
                self.gaps
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
        members: usize,
        deepest: usize,
    ) -> String {
        let last = std::mem::replace(&mut self.last_stats, now);
        let secs = every.as_secs_f64();
        let rate = |n: u64, m: u64| n.saturating_sub(m) as f64 / secs;
        format!(
            "stats: {} up, {} known; in {:.0} msg/s, {}/s; out {:.0} msg/s, {}/s; deepest queue {}; missed {}",
            plural(live as u64, "peer"),
            plural(members as u64, "member"),
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

/// "to b (00000000000000ab): 10 lines delivered, 5 lost (member down: ...)".
fn describe(m: &MemberBooks) -> String {
    let mut text = format!(
        "to {} ({:016x}): {} delivered",
        m.name,
        m.id,
        plural(m.delivered, "line")
    );
    let missed = missed(m);
    // Lost: it skipped them as a gap, or they came before its first line
    // (its acknowledgement says so). The rest may still come, or may have
    // been printed after it went down: never claimed lost.
    let lost = m.lost.min(missed);
    if lost > 0 {
        text += &format!(", {lost} lost");
    }
    if missed > lost {
        text += &format!(", {} not acknowledged", missed - lost);
    }
    // So that what it got, lost and missed adds up to the lines sent.
    if m.before_up > 0 {
        text += &format!(", {} more sent before it joined", m.before_up);
        if m.printed_before_up > 0 {
            text += &format!(" ({} of them printed)", m.printed_before_up);
        }
    }
    if m.after_down > 0 {
        text += &format!(", {} more sent after it went down", m.after_down);
    }
    if let Some(reason) = &m.down {
        text += &format!(" (member down: {reason})");
    } else if m.stalled && missed > 0 {
        text += " (stalled: it acknowledged none of them for 2 x --stall-timeout)";
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

    #[test]
    fn counts_read_well() {
        assert_eq!(plural(0, "message"), "0 messages");
        assert_eq!(plural(1, "message"), "1 message");
        assert_eq!(plural(2, "line"), "2 lines");
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(12.0 * 1024.0 * 1024.0), "12.0 MiB");
    }

    fn member(name: &str, id: u64, owed: std::ops::Range<u64>, delivered: u64) -> MemberBooks {
        MemberBooks {
            id,
            name: name.to_owned(),
            owed,
            delivered,
            lost: 0,
            down: None,
            stalled: false,
            before_up: 0,
            printed_before_up: 0,
            after_down: 0,
        }
    }

    #[test]
    fn the_summary_names_each_member_and_what_it_missed_and_why() {
        let books = Books {
            lines_read: 1000,
            delivered: 17,
            ..Books::default()
        };
        let mut c = member("c", 0xc, 1..1001, 550);
        c.lost = 50;
        c.down = Some("cut: accepted nothing for 2s".to_owned());
        let mut l = member("l", 0xe, 11..901, 890);
        (l.before_up, l.printed_before_up, l.after_down) = (10, 4, 100);
        l.down = Some("left".to_owned());
        let members = [
            member("b", 0xb, 1..1001, 1000),
            c,
            member("idle", 0xd, 1..1, 0),
            l,
        ];
        assert_eq!(members.iter().map(missed).sum::<u64>(), 450);
        assert_eq!(
            books.summary(&members, 0, 0),
            "summary: read 1000 lines from stdin; \
             to b (000000000000000b): 1000 lines delivered; \
             to c (000000000000000c): 550 lines delivered, 50 lost, 400 not acknowledged \
             (member down: cut: accepted nothing for 2s); \
             to idle (000000000000000d): 0 lines delivered; \
             to l (000000000000000e): 890 lines delivered, 10 more sent before it joined \
             (4 of them printed), 100 more sent after it went down \
             (member down: left); \
             received 17 messages"
        );
    }

    #[test]
    fn lines_a_live_member_skipped_read_as_lost_the_rest_as_not_acknowledged() {
        let mut b = member("b", 0xb, 1..11, 6);
        b.lost = 3;
        let text = Books::default().summary(&[b], 0, 0);
        assert!(
            text.contains(
                "to b (000000000000000b): 6 lines delivered, 3 lost, 1 not acknowledged;"
            ),
            "{text}"
        );
    }

    #[test]
    fn one_of_each_reads_in_the_singular() {
        let books = Books {
            lines_read: 1,
            delivered: 1,
            ..Books::default()
        };
        assert_eq!(
            books.summary(&[member("b", 1, 1..2, 1)], 0, 0),
            "summary: read 1 line from stdin; to b (0000000000000001): 1 line delivered; \
             received 1 message"
        );
    }

    #[test]
    fn many_members_are_summed_up_after_the_first_ones() {
        let members: Vec<MemberBooks> = (0..40).map(|i| member("m", i, 1..11, 9)).collect();
        let text = Books::default().summary(&members, 2, 3);
        assert!(
            text.contains("(2 more skipped as too long) (3 of them never sent)"),
            "{text}"
        );
        assert!(text.contains("; 8 other members missed 8 lines;"), "{text}");
        assert_eq!(text.matches("to m (").count(), SUMMARY_MEMBERS);
    }
}

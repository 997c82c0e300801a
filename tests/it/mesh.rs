//! The group (issue 7): real nodes on 127.0.0.1 forming a mesh. Every line
//! reaches every member exactly once, in order per origin, along any
//! topology; TTL and `--no-relay` cut where they should; a full-speed ring
//! neither deadlocks nor loses; a killed relay, a stopped member, a refused
//! dialer and a restart from the peer cache each end as the issue says.
//!
//! Payloads are line numbers (`Input::Numbered`), so each node's stdout is
//! checked as it arrives: per origin 1, 2, 3, ... with no repeat and no
//! hole (`support::Printed`). Senders start with `--wait-members`, so no
//! line is read before the group is known. These tests start many
//! processes: they take turns (`one_at_a_time`) rather than crowd the
//! machine's cores together.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use crate::support::{
    numbered_lines, padded_lines, tail, Fmt, Group, Input, JVal, Json, Member, Printed, Spec,
    TempDir, DEADLINE,
};

/// Long enough for 20 debug-build nodes on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(90);

static TURN: Mutex<()> = Mutex::new(());

/// One mesh test at a time: each starts up to 20 processes.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    TURN.lock()
}

fn all(n: usize) -> Vec<usize> {
    (0..n).collect()
}

/// Node names `prefix0`, `prefix1`, ...
fn name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i}")
}

/// Every msg each node of `g` kept, checked against the rules every
/// topology shares: never its own lines; per origin one id, 16 lowercase
/// hex digits, the seqs consecutive with the line numbers; hops within
/// 1..=ttl. Returns per node (by index) the origin ids by name.
fn check_msgs_common(g: &Group, ttl: u64) -> Vec<BTreeMap<String, String>> {
    let mut ids = Vec::new();
    for m in &g.nodes {
        let mut origin_of: BTreeMap<String, String> = BTreeMap::new();
        let mut offsets: BTreeMap<String, i128> = BTreeMap::new();
        m.out.with(|p| {
            for (k, msg) in p.msgs.iter().enumerate() {
                assert_ne!(msg.from, m.name, "{} printed its own line {k}", m.name);
                assert!(
                    msg.origin.len() == 16
                        && msg
                            .origin
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                    "{}: origin {:?} is not 16 lowercase hex digits",
                    m.name,
                    msg.origin
                );
                let id = origin_of
                    .entry(msg.from.clone())
                    .or_insert(msg.origin.clone());
                assert_eq!(
                    *id, msg.origin,
                    "{}: {} came with two origin ids",
                    m.name, msg.from
                );
                let line: u64 = String::from_utf8_lossy(&msg.data)
                    .split(' ')
                    .next()
                    .and_then(|w| w.parse().ok())
                    .unwrap_or_else(|| panic!("{}: not a numbered line: {msg:?}", m.name));
                // seq - line is the same for every line of one origin.
                let offset = i128::from(msg.seq) - i128::from(line);
                let base = *offsets.entry(msg.from.clone()).or_insert(offset);
                assert_eq!(
                    offset, base,
                    "{}: line {line} of {} has seq {} (seq - line was {base} before)",
                    m.name, msg.from, msg.seq
                );
                assert!(
                    (1..=ttl).contains(&msg.hops),
                    "{}: line {line} of {} crossed {} links (ttl {ttl})",
                    m.name,
                    msg.from,
                    msg.hops
                );
            }
        });
        ids.push(origin_of);
    }
    // Every node knows an origin by the same id.
    let mut global: BTreeMap<String, String> = BTreeMap::new();
    for (i, per) in ids.iter().enumerate() {
        for (from, id) in per {
            let known = global.entry(from.clone()).or_insert(id.clone());
            assert_eq!(known, id, "{} knows {from} by another id", g.nodes[i].name);
        }
    }
    ids
}

/// Each node printed exactly `lines` lines from each other node and none
/// from anyone else (checked after completion; the running check already
/// refused repeats and holes), and saw no member leave and no gap.
fn assert_exactly(g: &Group, lines: u64) {
    let names = g.names();
    for m in &g.nodes {
        m.out.with(|p| {
            let others: BTreeSet<&str> = names
                .iter()
                .filter(|n| **n != m.name)
                .map(String::as_str)
                .collect();
            let got: BTreeSet<&str> = p.per_origin.keys().map(String::as_str).collect();
            assert_eq!(
                got, others,
                "{} printed lines from the wrong origins",
                m.name
            );
            for o in &others {
                assert_eq!(p.count_from(o), lines, "{} printed from {o}", m.name);
            }
            assert!(p.errors.is_empty(), "{}: {:?}", m.name, p.errors);
            // Nobody left, nothing was lost: no member_down, no gap.
            for kind in ["member_down", "gap"] {
                let seen: Vec<String> = p.events_of(kind).iter().map(|e| e.to_string()).collect();
                assert!(seen.is_empty(), "{}: {seen:?}", m.name);
            }
        });
    }
}

/// Checks member_up: one per other member, never itself, with the ids the
/// msgs carried.
fn assert_member_ups(g: &Group, ids: &[BTreeMap<String, String>]) {
    let names = g.names();
    for (i, m) in g.nodes.iter().enumerate() {
        m.out.with(|p| {
            let ups = p.events_of("member_up");
            let mut seen = BTreeSet::new();
            for up in ups {
                let name = up.str("name").unwrap_or("?").to_owned();
                assert_ne!(
                    name, m.name,
                    "{} announced itself as a member: {up}",
                    m.name
                );
                assert!(
                    names.contains(&name),
                    "{}: member_up for a stranger: {up}",
                    m.name
                );
                assert!(
                    seen.insert(name.clone()),
                    "{}: two member_up for {name}",
                    m.name
                );
                if let Some(id) = ids[i].get(&name) {
                    assert_eq!(up.str("id"), Some(id.as_str()), "{}: {up}", m.name);
                }
            }
            assert_eq!(
                seen.len(),
                names.len() - 1,
                "{}: member_up for {seen:?}",
                m.name
            );
        });
    }
}

#[test]
fn a_chain_of_six_relays_every_line_once_in_order_with_hops_counted() {
    let _turn = one_at_a_time();
    const N: usize = 6;
    let specs = (0..N)
        .map(|i| {
            let s = Spec::new(name("c", i))
                .args(&["--degree", "1", "--wait-members", "5"])
                .input(Input::Numbered(1000));
            if i > 0 {
                s.dial(i - 1)
            } else {
                s
            }
        })
        .collect();
    let g = Group::start("chain6", specs, Fmt::Json);
    g.wait_complete(&all(N), &all(N), 1000, LONG);
    assert_exactly(&g, 1000);
    let ids = check_msgs_common(&g, 16);
    assert_member_ups(&g, &ids);
    // On a chain a line from j reaches i across |i-j| links, through the
    // neighbour on j's side.
    for (i, m) in g.nodes.iter().enumerate() {
        m.out.with(|p| {
            for msg in &p.msgs {
                let j: usize = msg.from[1..].parse().unwrap();
                assert_eq!(msg.hops, i.abs_diff(j) as u64, "{}: {msg:?}", m.name);
                let via = if j < i { i - 1 } else { i + 1 };
                assert_eq!(msg.via, name("c", via), "{}: {msg:?}", m.name);
            }
        });
    }
}

#[test]
fn a_ring_of_six_delivers_every_line_once_in_order() {
    let _turn = one_at_a_time();
    const N: usize = 6;
    // --degree 1: two ring links each is not above 2 x degree (none is
    // closed), and a node with a link never dials another: the ring stays
    // a ring, so every line arrives twice, once each way round.
    let specs = (0..N)
        .map(|i| {
            Spec::new(name("r", i))
                .args(&["--degree", "1", "--wait-members", "5"])
                .input(Input::Numbered(1000))
                .dial((i + N - 1) % N)
        })
        .collect();
    let g = Group::start("ring6", specs, Fmt::Json);
    g.wait_complete(&all(N), &all(N), 1000, LONG);
    assert_exactly(&g, 1000);
    let ids = check_msgs_common(&g, 16);
    assert_member_ups(&g, &ids);
    for (i, m) in g.nodes.iter().enumerate() {
        let neighbours = [name("r", (i + 1) % N), name("r", (i + N - 1) % N)];
        m.out.with(|p| {
            for msg in &p.msgs {
                assert!(neighbours.contains(&msg.via), "{}: {msg:?}", m.name);
                assert!(msg.hops <= 5, "{}: {msg:?}", m.name);
            }
        });
    }
}

#[test]
fn a_star_delivers_every_line_once_in_order_through_its_centre() {
    let _turn = one_at_a_time();
    const N: usize = 6;
    let specs = (0..N)
        .map(|i| {
            if i == 0 {
                Spec::new("s0")
                    .args(&["--degree", "5", "--wait-members", "5"])
                    .input(Input::Numbered(1000))
            } else {
                Spec::new(name("s", i))
                    .args(&["--degree", "1", "--wait-members", "5"])
                    .input(Input::Numbered(1000))
                    .dial(0)
            }
        })
        .collect();
    let g = Group::start("star", specs, Fmt::Json);
    g.wait_complete(&all(N), &all(N), 1000, LONG);
    assert_exactly(&g, 1000);
    let ids = check_msgs_common(&g, 16);
    assert_member_ups(&g, &ids);
    for (i, m) in g.nodes.iter().enumerate() {
        m.out.with(|p| {
            for msg in &p.msgs {
                let (hops, via) = match (i, msg.from.as_str()) {
                    (0, from) => (1, from.to_owned()),
                    (_, "s0") => (1, "s0".to_owned()),
                    _ => (2, "s0".to_owned()),
                };
                assert_eq!((msg.hops, &msg.via), (hops, &via), "{}: {msg:?}", m.name);
            }
        });
    }
}

#[test]
fn twenty_nodes_started_at_once_through_one_seed_become_one_group() {
    let _turn = one_at_a_time();
    const N: usize = 20;
    let specs = (0..N)
        .map(|i| {
            let s = Spec::new(name("n", i))
                .args(&["--degree", "3", "--wait-members", "19"])
                .input(Input::Numbered(1000));
            if i > 0 {
                s.dial(0)
            } else {
                s
            }
        })
        .collect();
    let started = Instant::now();
    let g = Group::start("twenty", specs, Fmt::Json);
    g.wait_complete(&all(N), &all(N), 1000, Duration::from_secs(150));
    eprintln!(
        "20 nodes: every line everywhere after {:?}",
        started.elapsed()
    );
    assert_exactly(&g, 1000);
    let ids = check_msgs_common(&g, 16);
    assert_member_ups(&g, &ids);
}

/// Nodes in a chain, `--degree 1`: a - b - c (- d), a sending first.
/// c and d log every frame (`-vv`), for the checks on what crossed a link.
fn chain_of(names: &[&str], tag: &str, a_args: &[&str], b_args: &[&str]) -> Group {
    let mut specs = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let mut s = Spec::new(*n).args(&["--degree", "1"]);
        if i > 0 {
            s = s.dial(i - 1);
        }
        s = match i {
            0 => s.args(a_args),
            1 => s.args(b_args),
            _ => s.args(&["-vv"]),
        };
        specs.push(s);
    }
    Group::start(tag, specs, Fmt::Json)
}

/// Sends lines 1..=5 from `from` once it knows `members` others, and waits
/// until `to` printed them. Returns the origin id they came with.
fn send_five(g: &mut Group, from: usize, members: usize, to: &[usize]) -> String {
    g.wait_members(&[from], members, DEADLINE);
    g.nodes[from].send(&numbered_lines(1, 5));
    g.wait_complete(to, &[from], 5, DEADLINE);
    let name = g.nodes[from].name.clone();
    origin_of(g, to[0], &name)
}

/// The origin id node `at` printed lines of `name` with.
fn origin_of(g: &Group, at: usize, name: &str) -> String {
    g.nodes[at].out.with(|p| {
        p.msgs
            .iter()
            .find(|m| m.from == name)
            .unwrap_or_else(|| panic!("no line of {name} at {}", g.nodes[at].name))
            .origin
            .clone()
    })
}

/// Proves that node `to` never received a MSG frame of origin `absent`:
/// `marker` (an origin id) sent line 1 on the same link after it printed
/// every line of `absent` it had, so any copy it forwarded of those lines
/// was read before the marker's frame; the frame log (`-vv`) is written in
/// the order frames were read. (Delivery order across origins proves
/// nothing: a node may hold back an origin it does not know yet.)
fn assert_no_frames(m: &Member, absent: &str, marker: &str) {
    m.wait_log(&format!("<- message {marker}/"));
    let log = m.log_text();
    let before_marker = &log[..log.find(&format!("<- message {marker}/")).unwrap()];
    assert!(
        !before_marker.contains(&format!("<- message {absent}/")),
        "{} received frames of origin {absent}:\n{}",
        m.name,
        tail(&log, 40)
    );
    m.out.with(|p| {
        assert!(
            p.msgs.iter().all(|msg| msg.origin != absent),
            "{} printed {absent}'s lines",
            m.name
        )
    });
}

#[test]
fn ttl_bounds_the_links_a_message_crosses() {
    let _turn = one_at_a_time();
    // a - b - c, then d joins at c once c knows a: d, 3 links from a, is
    // beyond a's --ttl 2, so it never gets a's lines and a is no member
    // for it, even through the STATUS c hands a new neighbour.
    let mut g = chain_of(&["a", "b", "c"], "ttl", &["--ttl", "2"], &[]);
    g.wait_members(&[2], 2, DEADLINE);
    let d = Group::extra(
        "d",
        &["-vv".into(), "--degree".into(), "1".into(), g.addr(2)],
        Fmt::Json,
    );
    g.wait_members(&[2], 3, DEADLINE);
    // a's lines reach b in 1 hop and c in 2; c must not pass them on.
    let a = send_five(&mut g, 0, 2, &[1, 2]);
    for (i, hops) in [(1, 1), (2, 2)] {
        g.nodes[i].out.with(|p| {
            for msg in p.msgs.iter().filter(|m| m.from == "a") {
                assert_eq!(msg.hops, hops, "{}: {msg:?}", g.nodes[i].name);
            }
        });
    }
    g.nodes[2].send(b"1\n");
    assert!(
        d.out.wait_until(DEADLINE, |p| p.count_from("c") == 1),
        "d did not get c's line\n{}",
        tail(&d.log_text(), 30)
    );
    let c = d.out.with(|p| {
        let line = p.msgs.iter().find(|m| m.from == "c");
        line.expect("c's line").origin.clone()
    });
    assert_no_frames(&d, &a, &c);
    d.out.with(|p| {
        let ups: Vec<String> = p
            .events_of("member_up")
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(
            !ups.iter().any(|e| e.contains(&a)),
            "d counts a as a member though a is beyond a's ttl: {ups:?}"
        );
    });
}

#[test]
fn a_no_relay_node_delivers_but_forwards_nothing() {
    let _turn = one_at_a_time();
    let mut g = chain_of(&["a", "b", "c", "d"], "norelay", &[], &["--no-relay"]);
    // b delivers a's lines but must not pass them to c.
    let a = send_five(&mut g, 0, 1, &[1]);
    // Only once c is b's neighbour is b's next line owed to it.
    let b_knows_c = g.nodes[1]
        .out
        .wait_until(DEADLINE, |p| p.live_members().contains("c"));
    assert!(b_knows_c, "b never saw c\n{}", g.report());
    g.nodes[1].send(b"1\n");
    g.wait_complete(&[2], &[1], 1, DEADLINE);
    let b = origin_of(&g, 2, "b");
    assert_no_frames(&g.nodes[2], &a, &b);
}

/// Four nodes started at once, each naming all the others: every pair
/// dials both ways, and the tie-breaks leave each side, for a moment, with
/// another link in its mesh. Every line still arrives once, in order, with
/// no gap. (Attack finding 1: in 10-25 % of runs one node got none of one
/// sender's lines, silently.) A few rounds, to take many tie-break orders.
/// On this machine the old build passed these rounds too (the losses hung
/// on timing): the failures are pinned down by
/// `delivery::lines_on_the_link_kept_in_a_mutual_dial_are_delivered_not_dropped`
/// and the mesh unit tests on miss entries; this is the end-to-end check.
#[test]
fn nodes_all_naming_each_other_lose_nothing_in_the_mutual_dials() {
    let _turn = one_at_a_time();
    let mut mutual_dials = 0;
    for round in 0..4 {
        let specs = (0..4)
            .map(|i| {
                let mut s = Spec::new(name("m", i)).args(&["--wait-members", "3"]);
                for j in (0..4).filter(|&j| j != i) {
                    s = s.dial(j);
                }
                s.input(Input::Numbered(50))
            })
            .collect();
        let g = Group::start(&format!("mutual{round}"), specs, Fmt::Json);
        g.wait_complete(&all(4), &all(4), 50, DEADLINE);
        assert_exactly(&g, 50);
        // A mutual dial's tie-break refuses nothing (attack46 F4: the
        // dialer whose connection lost it warned "refused the connection";
        // the other end said at info that it "ended before it was a peer:
        // refused the connection: duplicate connection").
        for n in &g.nodes {
            let log = n.log_text();
            let told = log
                .lines()
                .filter(|l| {
                    l.contains("[WARN]") && l.contains("refused the connection")
                        || l.contains("refused the connection: duplicate connection")
                })
                .count();
            assert_eq!(told, 0, "{log}");
        }
        mutual_dials += g
            .nodes
            .iter()
            .map(|n| n.count_log("two connections to"))
            .sum::<usize>();
    }
    // Otherwise the check above checked nothing.
    assert!(mutual_dials > 0, "no mutual dial in 4 rounds");
}

/// n0 - n1 - n2 (--no-relay) - n3, n3 joining once n2 knows n0: a leaf
/// passes nothing on, neither lines (not even as answers to REPAIR) nor
/// STATUS, so n3, which reaches the group only through the leaf, is owed
/// nothing by n0 and never counts it as a member; hops are right at n1
/// and n2. (Attack finding 4: n3 printed n0's line, by repair, "hops 2".)
#[test]
fn a_no_relay_leaf_passes_nothing_on_not_even_by_repair() {
    let _turn = one_at_a_time();
    let quick = ["--degree", "1", "--keepalive", "1"];
    let specs = vec![
        Spec::new("n0").args(&quick),
        Spec::new("n1").args(&quick).dial(0),
        Spec::new("n2").args(&quick).args(&["--no-relay"]).dial(1),
    ];
    let mut g = Group::start("leaf", specs, Fmt::Json);
    g.wait_members(&[2], 2, DEADLINE);
    let mut args: Vec<String> = quick.iter().map(|a| a.to_string()).collect();
    args.extend(["-vv".to_owned(), g.addr(2)]);
    let n3 = Group::extra("n3", &args, Fmt::Json);
    g.wait_members(&[2], 3, DEADLINE);
    let n0 = send_five(&mut g, 0, 2, &[1, 2]);
    for (i, hops) in [(1, 1), (2, 2)] {
        g.nodes[i].out.with(|p| {
            for msg in p.msgs.iter().filter(|m| m.from == "n0") {
                assert_eq!(msg.hops, hops, "{}: {msg:?}", g.nodes[i].name);
            }
        });
    }
    g.nodes[2].send(b"1\n");
    assert!(
        n3.out.wait_until(DEADLINE, |p| p.count_from("n2") == 1),
        "n3 did not get n2's line\n{}",
        tail(&n3.log_text(), 30)
    );
    let n2 = n3.out.with(|p| {
        let line = p.msgs.iter().find(|m| m.from == "n2").expect("n2's line");
        assert_eq!(line.hops, 1);
        line.origin.clone()
    });
    assert_no_frames(&n3, &n0, &n2);
    let members = n3.out.with(|p| p.live_members());
    assert_eq!(
        members,
        BTreeSet::from(["n2".to_owned()]),
        "n3 reaches only the leaf"
    );
    let n0_members = g.nodes[0].out.with(|p| p.live_members());
    assert!(!n0_members.contains("n3"), "{n0_members:?}");
}

#[test]
fn a_ring_of_five_all_sending_200000_lines_at_once_completes_without_loss_or_cuts() {
    let _turn = one_at_a_time();
    const N: usize = 5;
    const LINES: u64 = 200_000;
    // A pure ring (see the ring of six): the cycle is the deadlock risk.
    let specs = (0..N)
        .map(|i| {
            Spec::new(name("f", i))
                .args(&["--degree", "1", "--wait-members", "4"])
                .input(Input::Numbered(LINES))
                .dial((i + N - 1) % N)
        })
        .collect();
    let started = Instant::now();
    let g = Group::start("flood5", specs, Fmt::Tagged);
    g.wait_complete(&all(N), &all(N), LINES, Duration::from_secs(240));
    eprintln!(
        "ring of 5, 200,000 lines each: done after {:?}",
        started.elapsed()
    );
    assert_exactly(&g, LINES);
    for m in &g.nodes {
        let log = m.log_text();
        for bad in ["peer down: ", "member down: ", "lost ", "accepted nothing"] {
            assert!(
                !log.contains(bad),
                "{} logged {bad:?} during the flood:\n{}",
                m.name,
                tail(&log, 40)
            );
        }
    }
}

/// The part of a summary line about `who`, and the number of lines it
/// says `who` missed there: lost plus not acknowledged (0 when neither).
fn missed_in_summary(summary: &str, who: &str) -> Option<u64> {
    let part = summary
        .split(';')
        .find(|p| p.contains(&format!(" {who} (")))?;
    let words: Vec<&str> = part
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .collect();
    let counted = |at: usize| at.checked_sub(1).and_then(|n| words[n].parse::<u64>().ok());
    let missed = (0..words.len())
        .filter(|&at| {
            words[at] == "lost"
                || (words[at] == "not" && words.get(at + 1) == Some(&"acknowledged"))
        })
        .filter_map(counted)
        .sum();
    Some(missed)
}

#[test]
fn a_killed_relay_is_routed_around_and_exit_on_eof_senders_exit_3_naming_it() {
    let _turn = one_at_a_time();
    // Relays r0..r3 in a ring; sender s0 dials r0 and r2, s1 dials r1 and
    // r3. Without r2 the graph is still connected (s0-r0-r1-s1, r3).
    let ka = ["--keepalive", "1"];
    let mut specs: Vec<Spec> = (0..4)
        .map(|i| {
            Spec::new(name("r", i))
                .args(&ka)
                .args(&["--degree", "2"])
                .input(Input::Empty)
                .dial((i + 3) % 4)
        })
        .collect();
    for (s, dials) in [("s0", [0, 2]), ("s1", [1, 3])] {
        specs.push(
            Spec::new(s)
                .args(&ka)
                .args(&["--degree", "2", "--wait-members", "5", "--exit-on-eof"])
                .dial(dials[0])
                .dial(dials[1]),
        );
    }
    let mut g = Group::start("killrelay", specs, Fmt::Json);
    let (s0, s1, r2) = (4, 5, 2);
    let everyone = all(6);
    let survivors = [0, 1, 3, 4, 5];
    g.wait_members(&everyone, 5, LONG);
    // Part 1 reaches everyone, r2 included.
    for s in [s0, s1] {
        g.nodes[s].send(&numbered_lines(1, 200));
    }
    g.wait_complete(&everyone, &[s0, s1], 200, LONG);
    // Part 2 is read while r2 is still a member (frozen, so it is owed
    // lines it never gets), then r2 is killed.
    g.nodes[r2].signal("STOP");
    for s in [s0, s1] {
        g.nodes[s].send(&numbered_lines(201, 400));
    }
    g.wait_complete(&survivors, &[s0, s1], 400, LONG);
    g.nodes[r2].signal("KILL");
    // Part 3 goes around the hole.
    for s in [s0, s1] {
        g.nodes[s].send(&numbered_lines(401, 600));
    }
    g.wait_complete(&survivors, &[s0, s1], 600, LONG);
    for s in [s0, s1] {
        g.nodes[s].close_stdin();
        let status = g.nodes[s].expect_exit(LONG);
        let m = &g.nodes[s];
        let log = m.log_text();
        assert_eq!(
            status.code(),
            Some(3),
            "{} exit: {status}; log:\n{}",
            m.name,
            tail(&log, 30)
        );
        let summary = m.wait_log("summary");
        let lost = missed_in_summary(&summary, "r2");
        assert!(
            lost.is_some_and(|n| n > 0),
            "{}'s summary does not name r2 as missing lines: {summary}",
            m.name
        );
        let other_sender = if s == s0 { "s1" } else { "s0" };
        for other in ["r0", "r1", "r3", other_sender] {
            assert_eq!(
                missed_in_summary(&summary, other).unwrap_or(0),
                0,
                "{}'s summary: {summary}",
                m.name
            );
        }
    }
}

#[test]
fn a_ring_all_leaving_at_the_end_of_stdin_exits_0_everywhere_with_every_line_acknowledged() {
    let _turn = one_at_a_time();
    // Every node sends and leaves at the end of its stdin. A node whose own
    // lines were acknowledged left while others' lines were still on their
    // way to it: it printed them, but its leaving STATUS had acknowledged
    // none, and their senders exited 3 ("N not acknowledged (member down:
    // left)"; 4 of 6 nodes in one run). Now it leaves once it printed what
    // it knows was sent, with final acknowledgements, and nodes that left
    // keep relaying while others are about to leave. The race is a matter
    // of timing: a few rounds.
    const N: usize = 6;
    const LINES: u64 = 20_000;
    const ROUNDS: usize = 3;
    for round in 0..ROUNDS {
        let specs = (0..N)
            .map(|i| {
                Spec::new(name("e", i))
                    .args(&["--degree", "2", "--wait-members", "5", "--exit-on-eof"])
                    .input(Input::Numbered(LINES))
                    .dial((i + N - 1) % N)
            })
            .collect();
        let mut g = Group::start(&format!("ringeof{round}"), specs, Fmt::Json);
        let mut codes = Vec::new();
        for m in &mut g.nodes {
            codes.push(m.expect_exit(LONG).code());
        }
        g.wait_complete(&all(N), &all(N), LINES, DEADLINE);
        let summaries: Vec<String> = g.nodes.iter().map(|m| m.wait_log("summary")).collect();
        assert!(
            codes.iter().all(|c| *c == Some(0)),
            "round {round}: exit codes {codes:?}; summaries:\n{}",
            summaries.join("\n")
        );
        for (m, summary) in g.nodes.iter().zip(&summaries) {
            for other in g.names().iter().filter(|o| **o != m.name) {
                assert_eq!(
                    missed_in_summary(summary, other),
                    Some(0),
                    "round {round}, {}: {summary}",
                    m.name
                );
            }
        }
    }
}

#[test]
fn a_stopped_member_is_cut_after_the_stall_timeout_and_the_rest_finish() {
    let _turn = one_at_a_time();
    // A star: m in the middle, senders s0..s2 and z around it. z freezes
    // (SIGSTOP) just before the senders start. The window (256 KiB) stops
    // each sender long before z's socket buffers fill, so no write of m's
    // ever blocks: only the PING m sends after its messages, which a
    // stopped z never answers, can show that z reads nothing. Keepalive is
    // 30 s, so z's STATUS falling silent (90 s) cannot be what drops it.
    const LINES: u64 = 2000;
    const STALL: Duration = Duration::from_secs(2);
    let common = [
        "--stall-timeout",
        "2",
        "--keepalive",
        "30",
        "--window",
        "256K",
        "--max-frame",
        "200K",
    ];
    let mut specs = vec![Spec::new("m")
        .args(&common)
        .args(&["--degree", "4"])
        .input(Input::Empty)];
    for i in 0..3 {
        specs.push(
            Spec::new(name("s", i))
                .args(&common)
                .args(&["--degree", "1", "--wait-members", "4", "--exit-on-eof"])
                .dial(0),
        );
    }
    specs.push(
        Spec::new("z")
            .args(&common)
            .args(&["--degree", "1", "--max-peers", "1"])
            .input(Input::Empty)
            .dial(0),
    );
    let mut g = Group::start("stopped", specs, Fmt::JsonCounted);
    let z = 4;
    let (senders, rest) = ([1, 2, 3], [0, 1, 2, 3]);
    g.wait_members(&all(5), 4, LONG);
    g.nodes[z].signal("STOP");
    let stopped = Instant::now();
    for i in senders {
        g.nodes[i].send(&padded_lines(1, LINES, 100));
    }
    // Everyone else hears that z is gone, as a cut, within the stall
    // timeout and a margin for the PING (sent within 100 ms of the first
    // messages), the DOWN's flood and a loaded machine.
    for &i in &rest {
        let m = &g.nodes[i];
        let down = m.out.wait_until(LONG, |p| {
            p.events_of("member_down")
                .iter()
                .any(|e| e.str("name") == Some("z"))
        });
        assert!(down, "{} never saw z go down\n{}", m.name, g.report());
    }
    let took = stopped.elapsed();
    assert!(
        took <= STALL + Duration::from_secs(5),
        "z was dropped only after {took:?}, not within --stall-timeout ({STALL:?}) and a margin"
    );
    assert!(
        took >= STALL,
        "z was dropped after {took:?}, before --stall-timeout"
    );
    for &i in &rest {
        g.nodes[i].out.with(|p| {
            let down = p.events_of("member_down");
            let reason = down
                .iter()
                .find(|e| e.str("name") == Some("z"))
                .unwrap()
                .str("reason");
            assert!(
                reason.is_some_and(|r| r.contains("cut: accepted nothing for 2s")),
                "{}'s member_down for z: {reason:?}",
                g.nodes[i].name
            );
        });
    }
    // m's log says why it cut z (waited for: the log thread may write the
    // line after the member_down event reached stdout).
    g.nodes[0].wait_log("read none of our messages for 2s");
    // The rest get everything, and each sender exits 3 naming z alone.
    g.wait_complete(&rest, &senders, LINES, LONG);
    for i in senders {
        g.nodes[i].close_stdin();
        let status = g.nodes[i].expect_exit(LONG);
        let m = &g.nodes[i];
        assert_eq!(status.code(), Some(3), "{} exit: {status}", m.name);
        let summary = m.wait_log("summary");
        assert!(
            missed_in_summary(&summary, "z").is_some_and(|n| n > 0),
            "{}'s summary does not name z as missing lines: {summary}",
            m.name
        );
        for other in ["m", "s0", "s1", "s2"].iter().filter(|&&o| o != m.name) {
            assert_eq!(
                missed_in_summary(&summary, other).unwrap_or(0),
                0,
                "{}'s summary: {summary}",
                m.name
            );
        }
    }
    for &i in &rest {
        let m = &g.nodes[i];
        m.out.with(|p| {
            let others: Vec<String> = p
                .events_of("member_down")
                .iter()
                .filter(|e| !matches!(e.str("name"), Some("z" | "s0" | "s1" | "s2")))
                .map(|e| e.to_string())
                .collect();
            assert!(others.is_empty(), "{}: {others:?}", m.name);
        });
    }
    g.nodes[z].signal("CONT");
}

#[test]
fn a_node_at_max_peers_refuses_and_the_dialer_joins_through_the_alternatives() {
    let _turn = one_at_a_time();
    let specs = vec![
        Spec::new("x").args(&["--degree", "1", "--max-peers", "1"]),
        Spec::new("y")
            .args(&["--degree", "1"])
            .input(Input::Empty)
            .dial(0),
    ];
    let mut g = Group::start("refused", specs, Fmt::Json);
    g.wait_members(&[0, 1], 1, LONG);
    // w knows only x, which is full.
    let w = Group::extra("w", &["--degree".into(), "1".into(), g.addr(0)], Fmt::Json);
    w.wait_log("peer limit reached");
    let joined = w.out.wait_until(LONG, |p| p.live_members().len() >= 2);
    assert!(
        joined,
        "w did not join: {:?}\n{}",
        w.out.with(|p| p.live_members()),
        tail(&w.log_text(), 30)
    );
    g.wait_members(&[0], 2, LONG);
    g.nodes[0].send(b"1\n");
    let got = w.out.wait_until(LONG, |p| p.count_from("x") == 1);
    assert!(got, "x's line did not reach w\n{}", tail(&w.log_text(), 30));
    w.out.with(|p| {
        let msg = p.msgs.iter().find(|m| m.from == "x").unwrap();
        assert_eq!((msg.hops, msg.via.as_str()), (2, "y"), "{msg:?}");
    });
}

#[test]
fn a_node_restarted_with_its_peer_cache_and_no_peer_rejoins() {
    let _turn = one_at_a_time();
    let dir = TempDir::new("cache");
    let cache = dir.path("c.peers").to_string_lossy().into_owned();
    let specs = vec![
        Spec::new("a").args(&["--degree", "2"]),
        Spec::new("b")
            .args(&["--degree", "2"])
            .input(Input::Empty)
            .dial(0),
    ];
    let mut g = Group::start("cache", specs, Fmt::Json);
    let args = |peer: Option<String>| {
        let mut v = vec![
            "--degree".to_owned(),
            "2".into(),
            "--peer-cache".into(),
            cache.clone(),
        ];
        v.extend(peer);
        v
    };
    let mut c = Group::extra("c", &args(Some(g.addr(1))), Fmt::Json);
    let joined = c.out.wait_until(LONG, |p| p.live_members().len() >= 2);
    assert!(
        joined,
        "c did not join through b\n{}",
        tail(&c.log_text(), 30)
    );
    c.signal("TERM");
    let status = c.expect_exit(LONG);
    assert!(status.success(), "c: {status}");
    let saved = std::fs::read_to_string(&cache).unwrap_or_default();
    assert!(
        !saved.trim().is_empty(),
        "c left an empty or no peer cache at {cache}"
    );
    let port = c.port;
    drop(c);
    // Restarted with nothing but its cache, at the same address.
    let mut again = args(None);
    again.extend(["-l".to_owned(), format!("127.0.0.1:{port}")]);
    let mut c = Group::extra("c", &again, Fmt::Json);
    let rejoined = c.out.wait_until(LONG, |p| p.live_members().len() >= 2);
    assert!(
        rejoined,
        "c did not rejoin from its cache\n{}",
        tail(&c.log_text(), 30)
    );
    g.wait_members(&[0], 2, LONG);
    g.nodes[0].send(b"1\n");
    assert!(
        c.out.wait_until(LONG, |p| p.count_from("a") == 1),
        "a's line did not reach the restarted c"
    );
    // The members hand c its own address, under its first run's id: its
    // cache keeps them, not that.
    c.signal("TERM");
    assert!(c.expect_exit(LONG).success());
    let saved = std::fs::read_to_string(&cache).unwrap_or_default();
    let own = format!("127.0.0.1:{port}");
    assert!(
        !saved.contains(&own) && saved.contains(&g.addr(0)),
        "c's cache:\n{saved}"
    );
}

/// A node listening on one address is announced at it, not at the
/// address its neighbour sees it dial from: b listens on 127.0.0.3 and
/// dials a from 127.0.0.1, where nothing of b listens (attack23 F6: the
/// group learned b at 127.0.0.1, and every member's dial was refused).
#[cfg(target_os = "linux")]
#[test]
fn a_node_listening_on_one_address_is_announced_at_that_address() {
    let _turn = one_at_a_time();
    let g = Group::start("listenip", vec![Spec::new("a")], Fmt::Json);
    let b = Group::extra(
        "b",
        &["-l".into(), "127.0.0.3:0".into(), g.addr(0)],
        Fmt::Json,
    );
    let c = Group::extra("c", &[g.addr(0)], Fmt::Json);
    let want = format!("127.0.0.3:{}", b.port);
    let mut seen = String::new();
    let announced = c.out.wait_until(LONG, |p| {
        p.events_of("member_up").iter().any(|up| {
            seen = up.to_string();
            up.str("name") == Some("b")
                && matches!(up.get("addresses"), Some(JVal::Arr(a))
                    if a.len() == 1 && matches!(&a[0], JVal::Str(s) if *s == want))
        })
    });
    assert!(
        announced,
        "c never learned b at {want}; last member_up: {seen}"
    );
}

#[test]
fn member_up_and_member_down_name_every_other_member_and_why_it_left() {
    let _turn = one_at_a_time();
    let specs = (0..3)
        .map(|i| {
            let s = Spec::new(name("m", i)).args(&["--degree", "1", "--keepalive", "1"]);
            if i > 0 {
                s.dial(i - 1)
            } else {
                s
            }
        })
        .collect();
    let mut g = Group::start("members", specs, Fmt::Json);
    g.wait_members(&all(3), 2, LONG);
    let mut id_of: BTreeMap<String, String> = BTreeMap::new();
    for m in &g.nodes {
        m.out.with(|p| {
            let ups = p.events_of("member_up");
            assert_eq!(
                ups.len(),
                2,
                "{}: {:?}",
                m.name,
                ups.iter().map(|e| e.to_string()).collect::<Vec<_>>()
            );
            for up in ups {
                let (name, id) = (up.str("name").unwrap(), up.str("id").unwrap());
                assert_ne!(name, m.name);
                assert_eq!(id.len(), 16, "{up}");
                assert!(
                    matches!(up.get("addresses"), Some(JVal::Arr(a)) if !a.is_empty()),
                    "{up}"
                );
                let known = id_of.entry(name.to_owned()).or_insert(id.to_owned());
                assert_eq!(known, id, "two ids for {name}");
            }
            // peer events stay for direct links only: m0 and m2 are not linked.
            let mut peers: Vec<&str> = p
                .events_of("peer_up")
                .iter()
                .filter_map(|e| e.str("name"))
                .collect();
            peers.sort();
            let linked: &[&str] = match m.name.as_str() {
                "m1" => &["m0", "m2"],
                _ => &["m1"],
            };
            assert_eq!(peers, linked, "{}'s peer_up events", m.name);
        });
    }
    // m2 leaves politely: both others hear it, with a reason.
    g.nodes[2].signal("TERM");
    g.nodes[2].expect_exit(LONG);
    for i in [0, 1] {
        let m = &g.nodes[i];
        let ok = m.out.wait_until(LONG, |p| !p.live_members().contains("m2"));
        assert!(ok, "{} did not see m2 leave", m.name);
    }
    // m1 dies: m0 hears it within 3 x keepalive (and some slack).
    let killed = Instant::now();
    g.nodes[1].signal("KILL");
    let m0 = &g.nodes[0];
    let ok = m0.out.wait_until(Duration::from_secs(10), |p| {
        !p.live_members().contains("m1")
    });
    let took = killed.elapsed();
    assert!(ok, "m0 did not see m1 die");
    assert!(
        took <= Duration::from_millis(4500),
        "m0 saw m1 die after {took:?} (keepalive 1 s)"
    );
    m0.out.with(|p| {
        let downs: Vec<&Json> = p.events_of("member_down");
        assert_eq!(
            downs.len(),
            2,
            "{:?}",
            downs.iter().map(|e| e.to_string()).collect::<Vec<_>>()
        );
        for d in downs {
            assert!(d.str("reason").is_some_and(|r| !r.is_empty()), "{d}");
            let name = d.str("name").unwrap();
            assert_eq!(d.str("id"), id_of.get(name).map(String::as_str), "{d}");
        }
    });
}

/// The attack's star2.py: a hub with --degree 2 and nine spokes with
/// --degree 1 that all name only the hub, started at once. The hub trims
/// to 4 links; before, the spokes it let go were handed each other and
/// paired into islands, whose members saw the rest fall silent after 3 x
/// keepalive (15 s), and did not always heal. Now they are sent to the
/// members the hub keeps: nobody sees anyone go, and lines reach all.
#[test]
fn a_hub_trimming_its_spokes_leaves_one_group() {
    let _turn = one_at_a_time();
    const N: usize = 10;
    const LINES: u64 = 20;
    let specs = (0..N)
        .map(|i| {
            if i == 0 {
                Spec::new("hub").args(&["--degree", "2"]).input(Input::Pipe)
            } else {
                Spec::new(name("s", i))
                    .args(&["--degree", "1"])
                    .input(Input::Pipe)
                    .dial(0)
            }
        })
        .collect();
    let mut g = Group::start("star2", specs, Fmt::Json);
    // The hub keeps 2 x degree = 4 of its 9 links.
    g.nodes[0].wait_log_count("too many neighbours", N - 1 - 4);
    // An island would see the rest fall silent 3 x keepalive (15 s) after
    // the trim; one group sees nobody go for longer than that.
    let deadline = Instant::now() + Duration::from_secs(20);
    for m in &g.nodes {
        let left = m
            .log
            .wait_until(deadline.saturating_duration_since(Instant::now()), |l| {
                l.iter()
                    .any(|l| String::from_utf8_lossy(l).contains("member down"))
            });
        assert!(!left, "{} saw members go:\n{}", m.name, links_log(&g));
    }
    // And lines sent now reach everyone.
    for m in &mut g.nodes {
        m.send(&numbered_lines(1, LINES));
    }
    g.wait_complete(&all(N), &all(N), LINES, Duration::from_secs(10));
    assert_exactly(&g, LINES);
}

/// Every node's log lines about its links, for a failure message.
fn links_log(g: &Group) -> String {
    let mut out = String::new();
    for m in &g.nodes {
        for line in m.log_text().lines() {
            if ["peer up", "peer down", "closing", "member down"]
                .iter()
                .any(|k| line.contains(k))
            {
                out += &format!("{}: {line}\n", m.name);
            }
        }
    }
    out
}

/// Seqs from `origin` that `m` printed, and the gap runs it reported.
fn seqs_and_gaps(m: &Member, origin: &str) -> (Vec<u64>, Vec<(u64, u64)>) {
    m.out.with(|p| {
        let seqs = p
            .msgs
            .iter()
            .filter(|msg| msg.from == origin)
            .map(|msg| msg.seq)
            .collect();
        let gaps = p
            .events_of("gap")
            .iter()
            .filter(|e| e.str("name") == Some(origin))
            .map(|e| (e.num("first_seq").unwrap(), e.num("last_seq").unwrap()))
            .collect();
        (seqs, gaps)
    })
}

/// Asserts that `seqs` run 1, 2, 3, ... each once and in order, stepping
/// over the `gaps` (first, last) reported; returns the seq that would come
/// next.
fn assert_in_order_around_gaps(seqs: &[u64], gaps: &[(u64, u64)], what: &str) -> u64 {
    let mut expect = 1;
    let mut gaps_left = gaps.iter().peekable();
    for &seq in seqs {
        while let Some(&&(first, last)) = gaps_left.peek() {
            if expect == first {
                expect = last + 1;
            }
            if last < expect {
                gaps_left.next();
            } else {
                break;
            }
        }
        assert_eq!(seq, expect, "{what} out of order; gaps {gaps:?}");
        expect += 1;
    }
    expect
}

#[test]
fn a_relay_stopped_for_good_in_a_chain_costs_one_gap_and_nothing_after_the_relink() {
    let _turn = one_at_a_time();
    // A chain n0 <- n1 <- n2 <- n3, each dialing the one before. n2
    // freezes for good while n0 streams; n3 hears nothing for 3 s, is
    // forgotten by n0 and n1, and re-links to one of them. The lines sent
    // while n3 was cut off may be one gap; everything after must arrive.
    // The window is small against one read of stdin (128 KiB of short
    // lines), so lines read beyond it must wait at the origin: in flight
    // they would overflow n3's hold-back buffer behind its gap and be lost.
    const LINES: u64 = 60_000;
    let common = [
        "--keepalive",
        "1",
        "--stall-timeout",
        "2",
        "--window",
        "64K",
        "--max-frame",
        "1K",
        "--degree",
        "1",
    ];
    let mut specs = vec![Spec::new("n0").args(&common).args(&["--wait-members", "3"])];
    for i in 1..4 {
        specs.push(
            Spec::new(name("n", i))
                .args(&common)
                .input(Input::Empty)
                .dial(i - 1),
        );
    }
    let mut g = Group::start("stoprelay", specs, Fmt::Json);
    g.wait_members(&all(4), 3, LONG);
    g.nodes[0].send(&numbered_lines(1, 1000));
    g.wait_complete(&[1, 2, 3], &[0], 1000, LONG);
    g.nodes[2].signal("STOP");
    let mut stdin = g.nodes[0].take_stdin();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        // Fails only if n0 died; the checks below say so.
        let _ = stdin.write_all(&numbered_lines(1001, LINES));
    });
    let n3 = &g.nodes[3];
    let done = n3.out.wait_until(LONG, |p| {
        p.msgs
            .last()
            .is_some_and(|m| m.from == "n0" && m.seq == LINES)
    });
    let (seqs, gaps) = seqs_and_gaps(n3, "n0");
    assert!(
        done,
        "n3 never printed line {LINES}: it has {} lines, gaps {gaps:?}\n{}",
        seqs.len(),
        tail(&n3.log_text(), 30)
    );
    assert!(
        gaps.len() <= 1,
        "n3 lost lines after it re-linked, gaps {gaps:?}\n{}",
        tail(&n3.log_text(), 30)
    );
    // Every line once, in order, or inside the one gap.
    let next = assert_in_order_around_gaps(&seqs, &gaps, "n3's lines from n0");
    assert_eq!(next, LINES + 1);
    g.nodes[2].signal("CONT");
    feeder.join().unwrap();
}

/// Feeds `m`'s stdin the numbered lines `seqs`, 20 at a time, one batch
/// every `every`: pacing, not waiting. Stops early only if `m` died (the
/// caller's checks say so).
fn feed_paced(
    m: &mut Member,
    seqs: std::ops::RangeInclusive<u64>,
    every: Duration,
) -> std::thread::JoinHandle<()> {
    let mut stdin = m.take_stdin();
    std::thread::spawn(move || {
        use std::io::Write;
        let last = *seqs.end();
        for first in seqs.step_by(20) {
            let batch = numbered_lines(first, (first + 19).min(last));
            if stdin.write_all(&batch).is_err() {
                return;
            }
            std::thread::sleep(every);
        }
    })
}

#[test]
fn a_relay_stopped_in_a_chain_fed_a_trickle_is_cut_at_the_stall_timeout_and_the_ends_relink() {
    let _turn = one_at_a_time();
    // n0 <- n1 <- n2, --degree 1, the default keepalive (5 s) and window
    // (4 MiB). n1 stops (SIGSTOP) while n0 sends 1,000 short lines a
    // second: its socket buffers take them all, so writes to it never
    // block. n0 and n2 must still cut it at the stall timeout (a PING after
    // our lines unanswered), not after 3 x keepalive of silence, and dial
    // across, n2 getting every line. Before, every write that the
    // buffers took counted as n1 reading: it was dropped only after 15 s,
    // and --exit-on-eof senders had given up on the members behind it by
    // then (attack23 F1).
    const STALL: u64 = 2;
    // Eight seconds of lines: longer than the stall timeout and the bound.
    const LINES: u64 = 8000;
    let stall = STALL.to_string();
    let common = ["--degree", "1", "--stall-timeout", &stall];
    let specs = vec![
        Spec::new("n0").args(&common),
        Spec::new("n1").args(&common).input(Input::Empty).dial(0),
        Spec::new("n2").args(&common).input(Input::Empty).dial(1),
    ];
    let mut g = Group::start("stoptrickle", specs, Fmt::Json);
    g.wait_members(&all(3), 2, LONG);
    g.nodes[0].send(&numbered_lines(1, 100));
    g.wait_complete(&[1, 2], &[0], 100, LONG);
    g.nodes[1].signal("STOP");
    let stopped = Instant::now();
    let feeder = feed_paced(&mut g.nodes[0], 101..=LINES, Duration::from_millis(20));
    g.nodes[0].wait_log_for("stalled: read none of our messages", LONG);
    let took = stopped.elapsed();
    // The PING follows the lines within 100 ms; then the stall timeout; a
    // loaded machine's scheduling on top. 3 x keepalive is 15 s.
    assert!(
        took < Duration::from_secs(STALL + 3),
        "n1 was cut {took:?} after it stopped (--stall-timeout {STALL})\n{}",
        tail(&g.nodes[0].log_text(), 20)
    );
    let n2 = &g.nodes[2];
    let done = n2.out.wait_until(LONG, |p| p.count_from("n0") == LINES);
    g.nodes[1].signal("CONT");
    let (seqs, gaps) = seqs_and_gaps(n2, "n0");
    assert!(
        done && gaps.is_empty(),
        "n2 has {} of n0's {LINES} lines, gaps {gaps:?}\n{}",
        seqs.len(),
        tail(&n2.log_text(), 30)
    );
    assert_in_order_around_gaps(&seqs, &gaps, "n2's lines from n0");
    feeder.join().unwrap();
}

#[test]
fn a_member_stopped_taken_for_gone_then_resumed_is_booked_as_it_printed() {
    let _turn = one_at_a_time();
    // a - b - c. c freezes long enough for a to take it for gone (silent
    // for 3 × keepalive), then resumes. It re-links, fetches what it
    // missed from b's cache and prints everything, the lines sent while it
    // was taken for gone too, so a's books must say it got them all: no
    // line claimed lost, exit 0.
    const LINES: u64 = 3000;
    let common = ["--keepalive", "1", "--stall-timeout", "60"];
    let specs = vec![
        Spec::new("a")
            .args(&common)
            .args(&["--wait-members", "2", "--exit-on-eof"])
            .dial(1),
        Spec::new("b").args(&common).input(Input::Empty),
        Spec::new("c").args(&common).input(Input::Empty).dial(1),
    ];
    let mut g = Group::start("stopcont", specs, Fmt::Json);
    g.wait_members(&all(3), 2, LONG);
    g.nodes[0].send(&numbered_lines(1, 1000));
    g.wait_complete(&[1, 2], &[0], 1000, LONG);
    g.nodes[2].signal("STOP");
    g.nodes[0].send(&numbered_lines(1001, 2000));
    g.nodes[0].wait_log_for("member down: c", LONG);
    // b closed its link to c too (no data for 3 × keepalive): on resuming,
    // c announces itself again before it has fetched the lines it missed.
    g.nodes[1].wait_log_for("peer down: c", LONG);
    g.nodes[0].send(&numbered_lines(2001, LINES));
    g.nodes[2].signal("CONT");
    g.wait_complete(&[1, 2], &[0], LINES, LONG);
    g.nodes[0].close_stdin();
    let status = g.nodes[0].expect_exit(LONG);
    let a = &g.nodes[0];
    let summary = a.wait_log("summary");
    assert!(
        summary.contains(" c (") && missed_in_summary(&summary, "c") == Some(0),
        "a's summary claims c missed lines it printed: {summary}\n{}",
        tail(&a.log_text(), 20)
    );
    assert_eq!(status.code(), Some(0), "a's exit: {status}; {summary}");
}

#[test]
fn a_member_resumed_after_the_sender_left_gets_the_rest_or_a_gap() {
    let _turn = one_at_a_time();
    // a - b - c. c freezes; a sends on, finishes and leaves (c is cut, so
    // a need not wait for it). c resumes and links up again: it missed
    // a's goodbye, but b's greeting carries it, so c learns how far a's
    // lines went: it fetches what b still caches and reports the rest as
    // a gap, instead of waiting in silence for lines that never come.
    const LINES: u64 = 20_000;
    let common = [
        "--keepalive",
        "1",
        "--stall-timeout",
        "2",
        "--window",
        "64K",
        "--max-frame",
        "1K",
    ];
    let specs = vec![
        Spec::new("a")
            .args(&common)
            .args(&["--wait-members", "2", "--exit-on-eof"])
            .dial(1),
        Spec::new("b").args(&common).input(Input::Empty),
        Spec::new("c").args(&common).input(Input::Empty).dial(1),
    ];
    let mut g = Group::start("leftwhilestopped", specs, Fmt::Json);
    g.wait_members(&all(3), 2, LONG);
    g.nodes[0].send(&numbered_lines(1, 1000));
    g.wait_complete(&[1, 2], &[0], 1000, LONG);
    g.nodes[2].signal("STOP");
    g.nodes[0].send(&numbered_lines(1001, LINES));
    g.nodes[0].close_stdin();
    g.nodes[0].expect_exit(LONG);
    g.nodes[2].signal("CONT");
    let c = &g.nodes[2];
    let covered = |p: &crate::support::Printed| -> u64 {
        let printed = p.msgs.iter().filter(|m| m.from == "a").map(|m| m.seq);
        let gaps = p
            .events_of("gap")
            .into_iter()
            .filter(|e| e.str("name") == Some("a"))
            .map(|e| e.num("last_seq").unwrap_or(0));
        printed.chain(gaps).max().unwrap_or(0)
    };
    let done = c.out.wait_until(LONG, |p| covered(p) >= LINES);
    let (seqs, gaps) = seqs_and_gaps(c, "a");
    assert!(
        done,
        "c printed {} of a's lines, gaps {gaps:?}, and waits in silence\n{}",
        seqs.len(),
        tail(&c.log_text(), 30)
    );
    // Once each, in order, the rest inside the gaps.
    assert_in_order_around_gaps(&seqs, &gaps, "c's lines from a");
}

/// "stats: totals: in N messages (...)" from a node's log at exit.
fn messages_in(m: &Member) -> u64 {
    let line = m.wait_log("stats: totals: in ");
    let rest = line.split("stats: totals: in ").nth(1).unwrap_or("");
    rest.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}: no message count in {line:?}", m.name))
}

#[test]
fn in_a_full_mesh_the_tree_brings_each_line_about_once() {
    let _turn = one_at_a_time();
    // Six nodes, each linked to every other: flooding would bring each
    // receiver every line five times (once from the sender, once from
    // each of the four others).
    const N: usize = 6;
    let specs = (0..N)
        .map(|i| {
            let mut s = Spec::new(name("f", i))
                .args(&["--degree", "5", "--wait-members", "5", "--stats", "3600"])
                .input(if i == 0 { Input::Pipe } else { Input::Empty });
            for j in 0..i {
                s = s.dial(j);
            }
            s
        })
        .collect();
    let mut g = Group::start("fullmesh", specs, Fmt::JsonCounted);
    g.wait_members(&all(N), N - 1, LONG);
    // A few rounds of lines flood and prune the redundant links (a burst
    // crosses a link before the PRUNE comes back, and the parents settle
    // over a round or two); the rest follow the tree.
    const WARM: u64 = 150;
    const LINES: u64 = 5000;
    for first in (1..=WARM).step_by(50) {
        g.nodes[0].send(&numbered_lines(first, first + 49));
        g.wait_complete(&all(N), &[0], first + 49, LONG);
    }
    for first in (WARM + 1..=LINES).step_by(50) {
        g.nodes[0].send(&numbered_lines(first, first + 49));
    }
    g.wait_complete(&all(N), &[0], LINES, LONG);
    let mut copies = Vec::new();
    for i in 1..N {
        g.nodes[i].signal("TERM");
        g.nodes[i].expect_exit(LONG);
        copies.push(messages_in(&g.nodes[i]));
    }
    let total: u64 = copies.iter().sum();
    let per_line = total as f64 / ((N as u64 - 1) * LINES) as f64;
    eprintln!("copies received per receiver: {copies:?}; {per_line:.2} per line delivered");
    // Flooding: about 5 (in the warm-up and after); the tree: 1, plus the
    // warm-up's floods and the bursts that crossed links being pruned.
    assert!(
        per_line < 2.0,
        "{per_line:.2} copies per line delivered: {copies:?}"
    );
}

#[test]
fn a_member_below_a_stopped_relay_gets_its_lines_through_the_link_it_makes_after_the_cut() {
    let _turn = one_at_a_time();
    // o <- r <- x, and a leaf y that dials o and that x dials too. x gets
    // o's lines through r only (a leaf forwards nothing); y gets them
    // straight from o. r stops (SIGSTOP) and o sends 100 more lines: y's
    // own STATUS tells x it lacks them at once, but no neighbour of x can
    // give them (y answers no GRAFT for others' lines). o still holds
    // them. x drops r as dead only after 3 × keepalive of silence (3 s),
    // more than the 2 s stall timeout after the hole showed. Given up when
    // the stall timeout ran out, the lines were a gap (and x's link after
    // the drop went to r's address again, stuck in the handshake of a
    // stopped process). The hole must wait for its silent parent's cut,
    // and x must link to o, which holds the lines, and get them from it.
    let quick = ["--keepalive", "1", "--stall-timeout", "2", "--degree", "1"];
    let specs = vec![
        Spec::new("o").args(&quick),
        Spec::new("r").args(&quick).input(Input::Empty).dial(0),
        Spec::new("y")
            .args(&quick)
            .args(&["--no-relay"])
            .input(Input::Empty)
            .dial(0),
    ];
    let mut g = Group::start("stoppedparent", specs, Fmt::Json);
    g.wait_members(&[0, 1], 2, DEADLINE);
    let mut args: Vec<String> = [
        "--keepalive",
        "1",
        "--stall-timeout",
        "2",
        "--degree",
        "2",
        "-v",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend([g.addr(1), g.addr(2)]);
    let x = Group::extra("x", &args, Fmt::Json);
    g.wait_members(&[0], 3, DEADLINE);
    assert!(
        x.out
            .wait_until(DEADLINE, |p| p.live_members().contains("o")),
        "x never saw o\n{}",
        tail(&x.log_text(), 20)
    );
    g.nodes[0].send(&numbered_lines(1, 100));
    assert!(
        x.out.wait_until(DEADLINE, |p| p.count_from("o") == 100),
        "x did not get o's first lines\n{}",
        tail(&x.log_text(), 20)
    );
    let links = x.log_text();
    assert!(
        !links.contains("peer up: o "),
        "x must hang below r, not link to o before the stop\n{links}"
    );
    g.nodes[1].signal("STOP");
    g.nodes[0].send(&numbered_lines(101, 200));
    let done = x.out.wait_until(DEADLINE, |p| {
        p.count_from("o") == 200 || !p.events_of("gap").is_empty()
    });
    g.nodes[1].signal("CONT");
    let (seqs, gaps) = seqs_and_gaps(&x, "o");
    assert!(
        done && gaps.is_empty(),
        "x has {} of o's 200 lines, gaps {gaps:?}\n{}",
        seqs.len(),
        tail(&x.log_text(), 30)
    );
    assert_in_order_around_gaps(&seqs, &gaps, "x's lines from o");
}

/// s -> m <- z, at `--stall-timeout stall`, a window of 256 KiB and
/// keepalive 1 s (s also gets `s_args`): z prints s's first ten lines of
/// 100 bytes, then is stopped (SIGSTOP). Returns the group and the
/// indexes of m, s and z.
fn stopped_after_ten_lines(
    tag: &str,
    stall: u64,
    s_args: &[&str],
) -> (Group, (usize, usize, usize)) {
    let stall = stall.to_string();
    let common = [
        "--stall-timeout",
        stall.as_str(),
        "--keepalive",
        "1",
        "--window",
        "256K",
        "--max-frame",
        "200K",
    ];
    let specs = vec![
        Spec::new("m")
            .args(&common)
            .args(&["--degree", "4"])
            .input(Input::Empty),
        Spec::new("s")
            .args(&common)
            .args(&["--degree", "1"])
            .args(s_args)
            .dial(0),
        Spec::new("z")
            .args(&common)
            .args(&["--degree", "1"])
            .input(Input::Empty)
            .dial(0),
    ];
    let mut g = Group::start(tag, specs, Fmt::Json);
    let (m, s, z) = (0, 1, 2);
    g.wait_members(&all(3), 2, LONG);
    g.nodes[s].send(&padded_lines(1, 10, 100));
    let printed = g.nodes[z].out.wait_until(LONG, |p| p.count_from("s") == 10);
    assert!(printed, "z never printed s's first lines\n{}", g.report());
    g.nodes[z].signal("STOP");
    (g, (m, s, z))
}

#[test]
fn a_member_resumed_after_its_cut_rejoins_and_its_acknowledgements_are_accepted() {
    let _turn = one_at_a_time();
    // s -> m <- z. z prints s's first lines, then stops (SIGSTOP) and is
    // cut; s sends on, far more than a window, so most of it leaves every
    // cache. Resumed, z reads what its socket held, links up again and
    // gives up the rest as a gap, longer than all it printed: its STATUS
    // acknowledged that gap before its stdout had passed it ("skipped
    // more than it covers"), and m dropped it as a protocol error.
    const LINES: u64 = 20_000;
    let (mut g, (m, s, z)) = stopped_after_ten_lines("resumed", 2, &["--exit-on-eof"]);
    g.nodes[s].send(&padded_lines(11, LINES, 100));
    let through = g.nodes[m]
        .out
        .wait_until(LONG, |p| p.count_from("s") == LINES);
    g.nodes[z].signal("CONT");
    assert!(through, "m did not get s's lines\n{}", g.report());
    let dealt = g.nodes[z].out.wait_until(LONG, |p| {
        let gaps: u64 = p
            .events_of("gap")
            .iter()
            .filter(|e| e.str("name") == Some("s"))
            .map(|e| e.num("last_seq").unwrap() + 1 - e.num("first_seq").unwrap())
            .sum();
        p.count_from("s") + gaps == LINES
    });
    let (seqs, gaps) = seqs_and_gaps(&g.nodes[z], "s");
    assert!(
        dealt && !gaps.is_empty(),
        "z has {} of s's lines, gaps {gaps:?}\n{}",
        seqs.len(),
        g.report()
    );
    assert_in_order_around_gaps(&seqs, &gaps, "z's lines from s");
    // s leaves once z's acknowledgement of everything reaches it: z
    // missed what its gaps say, and nothing is left unacknowledged.
    g.nodes[s].close_stdin();
    let status = g.nodes[s].expect_exit(LONG);
    assert_eq!(status.code(), Some(3), "s exit: {status}");
    let summary = g.nodes[s].wait_log("summary");
    let lost: u64 = gaps.iter().map(|(f, l)| l + 1 - f).sum();
    assert_eq!(
        missed_in_summary(&summary, "z"),
        Some(lost),
        "s's summary: {summary}"
    );
    assert!(!summary.contains("not acknowledged"), "{summary}");
    for node in &g.nodes {
        let log = node.log_text();
        assert!(
            !log.contains("protocol error"),
            "{} logged a protocol error:\n{}",
            node.name,
            tail(&log, 30)
        );
    }
}

/// A member cut while it was stopped, resumed after its sender's lines
/// have left every cache, rejoins: the sender's STATUS tells it at once
/// that those lines are gone (a miss entry above what it delivered), so
/// it reports them as a gap and prints on. Before, it waited a
/// `--stall-timeout` for a repair nobody could send, and the sender's
/// window waited on it: the whole group froze for a stall timeout
/// (attack18 G5).
#[test]
fn a_member_resumed_after_its_cut_is_told_at_once_what_nobody_holds_and_nobody_waits() {
    let _turn = one_at_a_time();
    const LINES: u64 = 20_000;
    const STALL: u64 = 8;
    let (mut g, (m, s, z)) = stopped_after_ten_lines("rejoin-gone", STALL, &[]);
    // 2 MB against a window of 256 KiB: s goes on once z is cut.
    g.nodes[s].send(&padded_lines(11, LINES, 100));
    let through = g.nodes[m]
        .out
        .wait_until(LONG, |p| p.count_from("s") == LINES);
    let ups = |p: &Printed| {
        p.events_of("member_up")
            .iter()
            .filter(|e| e.str("name") == Some("z"))
            .count()
    };
    let cut = g.nodes[s].out.wait_until(LONG, |p| {
        p.events_of("member_down")
            .iter()
            .any(|e| e.str("name") == Some("z"))
    });
    g.nodes[z].signal("CONT");
    assert!(
        through && cut,
        "m did not get s's lines, or s never took z for down\n{}",
        g.report()
    );
    let back = g.nodes[s].out.wait_until(LONG, |p| ups(p) == 2);
    assert!(back, "z did not come back at s\n{}", g.report());
    let since = Instant::now();
    g.nodes[s].send(&padded_lines(LINES + 1, LINES + 10, 100));
    let bound = Duration::from_secs(STALL / 2);
    let at_m = g.nodes[m]
        .out
        .wait_until(LONG, |p| p.count_from("s") == LINES + 10);
    let m_took = since.elapsed();
    let at_z = g.nodes[z].out.wait_until(LONG, |p| {
        p.msgs
            .iter()
            .any(|msg| msg.from == "s" && msg.seq == LINES + 10)
    });
    let z_took = since.elapsed();
    let (seqs, gaps) = seqs_and_gaps(&g.nodes[z], "s");
    assert!(
        at_m && at_z && m_took < bound && z_took < bound,
        "after z came back, s's next lines took {m_took:?} to reach m and {z_took:?} to reach z \
         (bound {bound:?}, --stall-timeout {STALL}s); z has {} of s's lines, gaps {gaps:?}\n{}",
        seqs.len(),
        g.report()
    );
    assert_in_order_around_gaps(&seqs, &gaps, "z's lines from s");
    let lost: u64 = gaps.iter().map(|(f, l)| l + 1 - f).sum();
    assert_eq!(
        seqs.len() as u64 + lost,
        LINES + 10,
        "z's lines and gaps from s must add up: gaps {gaps:?}"
    );
}

/// The issue's chain c0 <- c1 <- c2 <- c3 <- c4 (each dials the one
/// before, `--degree 1`, default keepalive); c2 gets `signal` once every
/// line so far is everywhere. Each half still has its degree of links,
/// so only noticing the lost link makes someone dial across: lines the
/// two ends send after c2 is gone must reach each other within 5 s (3 ×
/// keepalive, 15 s, is when the halves would take each other for gone).
fn chain_heals_after_its_middle_node_gets(signal: &str, tag: &str) {
    let _turn = one_at_a_time();
    let mut specs = Vec::new();
    for i in 0..5 {
        let mut spec = Spec::new(name("c", i)).args(&["--degree", "1"]);
        if i > 0 {
            spec = spec.dial(i - 1);
        }
        spec = if i == 0 || i == 4 {
            spec.args(&["--wait-members", "4"])
        } else {
            spec.input(Input::Empty)
        };
        specs.push(spec);
    }
    let mut g = Group::start(tag, specs, Fmt::Json);
    let (c0, c2, c4) = (0, 2, 4);
    g.wait_members(&all(5), 4, LONG);
    for s in [c0, c4] {
        g.nodes[s].send(&numbered_lines(1, 100));
    }
    g.wait_complete(&all(5), &[c0, c4], 100, LONG);
    g.nodes[c2].signal(signal);
    g.nodes[c2].expect_exit(LONG);
    let gone = Instant::now();
    for s in [c0, c4] {
        g.nodes[s].send(&numbered_lines(101, 200));
    }
    for (at, from) in [(c4, "c0"), (c0, "c4")] {
        let got = g.nodes[at]
            .out
            .wait_until(LONG, |p| p.count_from(from) >= 200);
        let took = gone.elapsed();
        eprintln!(
            "after c2 got SIG{signal}: {} printed {from}'s line 200 after {took:?}",
            g.nodes[at].name
        );
        let m = &g.nodes[at];
        assert!(
            got && took < Duration::from_secs(5),
            "after c2 got SIG{signal}, {} printed {from}'s line 200 {}\n{}its log:\n{}",
            m.name,
            if got {
                format!("only after {took:?}")
            } else {
                format!("not within {LONG:?}")
            },
            g.report(),
            tail(&m.log_text(), 30)
        );
    }
    g.wait_complete(&[0, 1, 3, 4], &[c0, c4], 200, LONG);
}

#[test]
fn a_chain_whose_middle_node_leaves_politely_heals_within_five_seconds() {
    chain_heals_after_its_middle_node_gets("TERM", "chainterm");
}

#[test]
fn a_chain_whose_middle_node_is_killed_heals_within_five_seconds() {
    chain_heals_after_its_middle_node_gets("KILL", "chainkill");
}

// ---- A member gone without a goodbye: probed, down at once -----------------

/// Issue 7's proof, with the default `--keepalive` (5 s): a relay killed
/// (SIGKILL) in a ring that stays connected. Its neighbours' links end
/// without a goodbye; they dial its listen address, which refuses, and
/// tell the group with a DOWN. The `--exit-on-eof` sender (not its
/// neighbour) exits 3 naming it well within 3 × keepalive (15 s, what the
/// silence rule alone took), and the survivors get every line.
#[test]
fn a_killed_relay_is_down_for_an_exit_on_eof_sender_well_within_three_keepalives() {
    let _turn = one_at_a_time();
    // The ring s - a - r - b - s: without r, s - a and s - b remain.
    let (a, r, b, s) = (0, 1, 2, 3);
    let ring = |i: usize| (i + 3) % 4;
    let mut specs: Vec<Spec> = ["a", "r", "b"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Spec::new(*n)
                .args(&["--degree", "2"])
                .input(Input::Empty)
                .dial(ring(i))
        })
        .collect();
    specs.push(
        Spec::new("s")
            .args(&["--degree", "2", "--wait-members", "3", "--exit-on-eof"])
            .dial(ring(s)),
    );
    let mut g = Group::start("killdown", specs, Fmt::Json);
    g.wait_members(&all(4), 3, LONG);
    g.nodes[s].send(&numbered_lines(1, 100));
    g.wait_complete(&[a, r, b], &[s], 100, LONG);
    // Lines owed to r that it never prints: frozen, then killed.
    g.nodes[r].signal("STOP");
    g.nodes[s].send(&numbered_lines(101, 200));
    g.wait_complete(&[a, b], &[s], 200, LONG);
    g.nodes[r].signal("KILL");
    let killed = Instant::now();
    g.nodes[s].send(&numbered_lines(201, 300));
    g.nodes[s].close_stdin();
    let status = g.nodes[s].expect_exit(LONG);
    let took = killed.elapsed();
    let log = g.nodes[s].log_text();
    eprintln!("s exited {took:?} after r was killed");
    assert_eq!(
        status.code(),
        Some(3),
        "s exit: {status}; log:\n{}",
        tail(&log, 30)
    );
    assert!(
        took < Duration::from_secs(5),
        "s exited {took:?} after r was killed (3 x keepalive is 15 s); log:\n{}",
        tail(&log, 30)
    );
    let summary = g.nodes[s].wait_log("summary");
    assert!(
        missed_in_summary(&summary, "r").is_some_and(|n| n > 0),
        "s's summary does not name r as missing lines: {summary}"
    );
    for other in ["a", "b"] {
        assert_eq!(
            missed_in_summary(&summary, other).unwrap_or(0),
            0,
            "{summary}"
        );
    }
    g.wait_complete(&[a, b], &[s], 300, LONG);
    for i in [a, b] {
        let reason = g.nodes[i].out.with(|p| {
            p.events_of("member_down")
                .iter()
                .find(|e| e.str("name") == Some("r"))
                .and_then(|e| e.str("reason").map(str::to_owned))
        });
        assert!(
            reason.as_deref().is_some_and(|r| r.starts_with("gone: ")),
            "{}'s member_down for r: {reason:?}",
            g.nodes[i].name
        );
    }
}

/// A hand-made member "ghost" of node `x`, announcing `listen` as its
/// address; returns the link and when x knew it as a member.
fn ghost_member(x: &crate::support::Node, listen: &str) -> crate::support::RawPeer {
    use peercat::frame::{Frame, Status};
    let mut ghost = crate::support::RawPeer::handshake_as(x, "ghost", 0x6405_7000);
    ghost.send(
        &Frame::Status(Status {
            life: 1,
            keepalive_secs: 1,
            member: 0x6405_7000,
            status_seq: 1,
            hops: 1,
            ttl: 16,
            sent_seq: 0,
            flags: 0,
            name: "ghost".into(),
            addrs: vec![listen.parse().unwrap()],
            acks: Vec::new(),
            misses: Vec::new(),
        })
        .to_bytes(),
    );
    x.wait_log("member up: ghost");
    ghost
}

/// How long after `since` node `x` logged ghost down, and why.
fn ghost_down(x: &crate::support::Node, since: Instant, timeout: Duration) -> (Duration, String) {
    let line = x.wait_log_for("member down: ghost", timeout);
    (since.elapsed(), line)
}

/// A member whose link closes without a goodbye (no BYE, no leaving
/// STATUS) and whose listen address refuses connections is gone: down at
/// once (default keepalive: the silence rule took 15 s), and says why.
#[test]
fn a_member_whose_link_closes_without_goodbye_and_whose_port_refuses_is_down_at_once() {
    let x = crate::support::node("x").start();
    let closed = format!("127.0.0.1:{}", crate::support::free_port());
    let ghost = ghost_member(&x, &closed);
    let lost = Instant::now();
    drop(ghost);
    let (took, line) = ghost_down(&x, lost, DEADLINE);
    assert!(
        took < Duration::from_secs(3),
        "ghost down {took:?} after its link closed (3 x keepalive is 15 s): {line}"
    );
    assert!(line.contains("gone: "), "{line}");
}

/// The same, but something still listens at the member's address (the
/// member lives; its link alone ended): the probe is answered, and the
/// member is down only when its announcements stop for 3 × keepalive.
#[test]
fn a_member_whose_link_closes_but_whose_address_answers_is_not_declared_gone() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = listener.local_addr().unwrap().to_string();
    let x = crate::support::node("x")
        .args(&["--keepalive", "1"])
        .start();
    let ghost = ghost_member(&x, &listen);
    let lost = Instant::now();
    drop(ghost);
    let (took, line) = ghost_down(&x, lost, DEADLINE);
    assert!(line.contains("silent for 3s"), "{line}");
    assert!(
        took >= Duration::from_millis(2500),
        "ghost down {took:?} after its link closed, while its address answers: {line}"
    );
    drop(listener);
}

/// The count in "to WHO (id): N lines delivered" of a summary.
fn delivered_in_summary(summary: &str, who: &str) -> Option<u64> {
    let part = summary
        .split(';')
        .find(|p| p.contains(&format!(" {who} (")))?;
    let words: Vec<&str> = part
        .split_whitespace()
        .map(|w| w.trim_end_matches(','))
        .collect();
    let at = words.windows(2).position(|w| w == ["lines", "delivered"])?;
    words.get(at.checked_sub(1)?)?.parse().ok()
}

#[test]
fn members_leaving_while_another_still_sends_acknowledge_exactly_what_they_printed() {
    let _turn = one_at_a_time();
    // l0 and l1 send 20 lines and leave at the end of their stdin while s
    // still streams (a line a millisecond, so they are never caught up and
    // leave at the 2 s bound). l1's stdin ends 1.5 s after l0's, so the
    // one that leaves first keeps relaying while the other is about to
    // leave. They left without final
    // acknowledgements, kept printing what was queued for stdout and what
    // still arrived, and s exited 3 with "N not acknowledged" for lines
    // they had printed. Now s's books say exactly what each printed of its
    // lines, as delivered, and the rest as lost; nothing is printed after
    // the leave. r stays (without it s would wait for a peer to send the
    // rest to).
    const LINES: u64 = 12_000;
    // A leaving node waits for a member still sending at most
    // --stall-timeout: 3 s, so that l0 and l1 leave while s streams.
    let common = [
        "--wait-members",
        "3",
        "--exit-on-eof",
        "--stall-timeout",
        "3",
    ];
    let specs = vec![
        Spec::new("s").args(&common),
        Spec::new("r").dial(0),
        Spec::new("l0")
            .args(&common)
            .input(Input::Numbered(20))
            .dial(0),
        Spec::new("l1").args(&common).dial(0),
    ];
    let mut g = Group::start("leavestream", specs, Fmt::JsonCounted);
    g.nodes[0].wait_log("reading stdin");
    // 2000 lines a second for 6 s.
    let feeder = feed_paced(&mut g.nodes[0], 1..=LINES, Duration::from_millis(10));
    g.nodes[2].wait_log("stdin ended");
    let r = &g.nodes[1];
    let stagger = r.out.wait_until(LONG, |p| p.count_from("s") >= 3000);
    assert!(stagger, "r got too little of s\n{}", g.report());
    g.nodes[3].send(&numbered_lines(1, 20));
    g.nodes[3].close_stdin();
    let mut codes = Vec::new();
    for i in [0, 2, 3] {
        codes.push(g.nodes[i].expect_exit(LONG).code());
    }
    feeder.join().unwrap();
    let summary = g.nodes[0].wait_log("summary");
    let mut lost = 0;
    for l in &g.nodes[2..] {
        let (printed, errors) = l.out.with(|p| (p.count_from("s"), p.errors.clone()));
        assert!(errors.is_empty(), "{}: {errors:?}", l.name);
        let part = summary
            .split(';')
            .find(|p| p.contains(&format!(" {} (", l.name)))
            .unwrap_or_else(|| panic!("s's summary names no {}: {summary}", l.name));
        assert_eq!(
            delivered_in_summary(&summary, &l.name),
            Some(printed),
            "{} printed {printed} of s's lines; s's summary: {part}\n{}: {}",
            l.name,
            l.name,
            tail(&l.log_text(), 12)
        );
        assert!(!part.contains("not acknowledged"), "a final leave: {part}");
        assert!(printed < LINES, "{} left before s's last line", l.name);
        lost += missed_in_summary(&summary, &l.name).unwrap();
        // It left while lines were still arriving, and said so.
        l.wait_log("still on their way to this node after");
    }
    // What l0 did not print while it relayed for l1 is on its log, and on
    // its stdout as a gap of s's lines right after the last it printed
    // (attack13 F4: only the log said it).
    g.nodes[2].wait_log("arrived after this node left the group");
    let l0 = &g.nodes[2];
    let (printed, gaps) = l0.out.with(|p| {
        let gaps: Vec<(u64, u64, String)> = p
            .events_of("gap")
            .iter()
            .filter(|e| e.str("name") == Some("s"))
            .map(|e| {
                let reason = e.str("reason").unwrap_or_default().to_owned();
                (
                    e.num("first_seq").unwrap(),
                    e.num("last_seq").unwrap(),
                    reason,
                )
            })
            .collect();
        (p.count_from("s"), gaps)
    });
    let left = gaps
        .iter()
        .find(|g| g.2.contains("after this node left"))
        .unwrap_or_else(|| panic!("l0 printed no gap for what it left unprinted: {gaps:?}"));
    assert_eq!(left.0, printed + 1, "{gaps:?}");
    let expected = if lost == 0 { 0 } else { 3 };
    assert_eq!(codes[0], Some(expected), "s: {summary}");
    assert_eq!(missed_in_summary(&summary, "r"), Some(0), "{summary}");
}

/// A whole group sends files and exits together (`scripts/group-exit.sh`:
/// 20 nodes, 30,000 lines of 200 bytes each, `--exit-on-eof`): every node
/// exits 0 and prints every other node's lines once each, in order. A
/// member sending at full speed had no lines waiting (its stdin is read as
/// its window and queues have room), so it never said more were coming;
/// members that had finished took themselves for caught up in a 100 ms
/// lull and left without up to half of the others' files, exiting 0
/// (attack15 F3, attack16 F1: 3 runs of 3 had such nodes). Under load
/// it still failed in 2 runs of 3: a node waiting past its leave deadline
/// spun its loop and set its silence clock back (attack17 F7), and a
/// sender whose stdin had just ended said nothing of its last lines still
/// on their way (`Mesh::members_sending`). Since those fixes it passed 4
/// of 4 beside two CPU burners, two release suite runs and one clean-clone
/// CI run, but failed in the next CI run (the suite's debug build: 2 of
/// 20 nodes). Run alone with the debug build it failed 10 times in 21:
/// a node left while a sender's last lines were on their way, announced
/// by a STATUS that had overtaken them by seconds, or took itself for
/// caught up between two bursts of a streaming sender's lines. Since a
/// node waits for members still sending, caught up or not, it passed 14
/// of 14; still ignored in the suite, since in 3 of the runs before that
/// a node was still closing its links when the script's 2-minute limit
/// stopped it. A likely cause was fixed since: a reader went on handing
/// the kernel's receive buffer to the router after its writer had given
/// up on the connection (18 s in a debug build). Since then it passed 11
/// of 11 runs alone (debug build), 9 of them beside a tester's load
/// (load average up to 97), and runs in the suite again.
#[test]
fn a_whole_group_sending_files_and_exiting_together_gets_everything() {
    let _turn = one_at_a_time();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/group-exit.sh");
    let out = std::process::Command::new("bash")
        .args([script, "20", "30000", "29500"])
        .env("PEERCAT_BIN", env!("CARGO_BIN_EXE_peercat"))
        // A leaving node waits for members still sending at most this
        // long: room for a loaded CI machine (the build before the fix
        // failed at any stall timeout: it waited 2 s at most).
        .env("PEERCAT_ARGS", "--stall-timeout 60")
        .output()
        .expect("run scripts/group-exit.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("20 nodes x 30000 lines: 0 not perfect"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// a, with b and c linked to it, is stopped (SIGSTOP); b leaves politely
/// meanwhile (its goodbye waits unread in a's socket), and lines wait in
/// a's stdin. Resumed, a must read b's goodbye before those lines: they
/// were never owed to b, so a, an `--exit-on-eof` sender, exits 0 once c
/// has them. Before, a read its
/// stdin first and booked the lines as lost to b (attack23 F4).
#[cfg(unix)]
#[test]
fn a_node_resumed_reads_a_members_goodbye_before_its_waiting_lines() {
    let _turn = one_at_a_time();
    let mut a = crate::support::node("a").args(&["--exit-on-eof"]).start();
    let mut b = crate::support::node("b")
        .args(&["--exit-on-eof", "-v"])
        .dial(&a)
        .start();
    let c = crate::support::node("c").dial(&a).start();
    a.wait_log("member up: b");
    a.wait_log("member up: c");
    a.signal("STOP");
    b.close_stdin();
    b.wait_log("-> goodbye");
    a.send(&numbered_lines(1, 50));
    a.close_stdin();
    // The length of the stop, not a wait for an event: a node knows it
    // was stopped once it wakes a second or more past its deadline.
    std::thread::sleep(Duration::from_millis(1500));
    a.signal("CONT");
    let status = a.expect_exit(LONG);
    let summary = a.wait_log("summary");
    assert_eq!(status.code(), Some(0), "{summary}\n{}", a.log_text());
    // b left before a read a line: none is owed to it, so none is lost
    // (the summary names only members it sent lines to while they were up).
    assert!(
        matches!(missed_in_summary(&summary, "b"), None | Some(0)) && !summary.contains("lost"),
        "{summary}"
    );
    assert_eq!(c.wait_lines(50).len(), 50);
    b.expect_exit(LONG);
}

//! Private groups: `--secret-file`, `--key`, `--allow`, `--keygen`. Members
//! talk through encrypted links; strangers are refused, and both sides say
//! why.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
#[cfg(unix)]
use std::time::{Duration, Instant};

use crate::support::{node, texts, Node, DEADLINE};

/// A scratch directory for one test's key files, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("peercat-private-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn file(&self, name: &str, contents: &[u8]) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        path.to_str().unwrap().to_owned()
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }

    /// `peercat --keygen`: the private key's path and the public key.
    fn keygen(&self, name: &str) -> (String, String) {
        let (path, public, _) = self.keygen_full(name);
        (path, public)
    }

    /// `peercat --keygen`: the private key's path, the public key and what
    /// it said on stderr.
    fn keygen_full(&self, name: &str) -> (String, String, String) {
        let path = self.path(name);
        let out = Command::new(env!("CARGO_BIN_EXE_peercat"))
            .args(["--keygen", &path])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            path,
            String::from_utf8(out.stdout).unwrap().trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The key fingerprint a node announces at start ("our key 0123...").
fn fingerprint_of(node: &Node) -> String {
    let line = node.wait_log("our key ");
    line.rsplit("our key ").next().unwrap().trim().to_owned()
}

#[test]
fn two_nodes_with_the_same_secret_exchange_lines() {
    let dir = Dir::new("same");
    let secret = dir.file("team.secret", b"correct horse battery staple\n");
    let mut b = node("b").args(&["--secret-file", &secret]).start();
    let mut a = node("a").args(&["--secret-file", &secret]).dial(&b).start();
    a.wait_peer("b");
    b.wait_peer("a");
    a.send(b"from a\n");
    b.send(b"from b\n");
    assert_eq!(texts(&b.wait_lines(1)), ["from a"]);
    assert_eq!(texts(&a.wait_lines(1)), ["from b"]);
    // The id each node shows for the other is the one its key proves.
    let a_key = fingerprint_of(&a);
    assert!(
        b.wait_log("peer up: a ").contains(&a_key),
        "{}",
        b.log_text()
    );
    assert_eq!(a.count_log("links are not encrypted"), 0);
}

#[test]
fn without_a_secret_peercat_says_links_are_open_once() {
    let a = node("a").args(&["-q"]).start();
    let line = a.wait_log("links are not encrypted");
    assert!(line.contains("WARN") && line.contains("anyone who reaches the port can join"));
    assert_eq!(a.count_log("links are not encrypted"), 1);
}

/// The duplicate-connection rule runs on the ids the keys prove: two
/// private nodes dialing each other keep one connection.
#[test]
fn two_private_nodes_dialing_each_other_keep_one_connection() {
    let dir = Dir::new("mutual");
    let secret = dir.file("team.secret", b"s");
    let (pa, pb) = (crate::support::free_port(), crate::support::free_port());
    let (la, lb) = (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"));
    let a = node("a")
        .args(&["-f", "json", "--secret-file", &secret, "-l", &la, &lb])
        .start();
    let mut b = node("b")
        .args(&["-f", "json", "--secret-file", &secret, "-l", &lb, &la])
        .start();
    let settled = |n: &Node, other: &str| {
        n.log.wait_until(DEADLINE, |lines| {
            lines.iter().map(|l| crate::support::text(l)).any(|l| {
                l.contains(&format!("two connections to {other}"))
                    || l.contains("said goodbye: duplicate connection")
            })
        })
    };
    assert!(settled(&a, "b"), "a never settled:\n{}", a.log_text());
    assert!(settled(&b, "a"), "b never settled:\n{}", b.log_text());
    b.send(b"once\n");
    let msg = |l: &String| l.contains("\"type\":\"msg\"");
    let count = |lines: &[String], what: &str| lines.iter().filter(|l| l.contains(what)).count();
    // Settled: the message is in, and one connection is left up.
    let one_left = a.out.wait_until(DEADLINE, |lines| {
        let lines = texts(lines);
        lines.iter().any(msg) && count(&lines, "peer_up") == count(&lines, "peer_down") + 1
    });
    let lines = texts(&a.out.snapshot());
    assert!(one_left, "{lines:?}");
    assert!(count(&lines, "peer_up") <= 2, "{lines:?}");
    assert_eq!(lines.iter().filter(|l| msg(l)).count(), 1, "{lines:?}");
}

/// A group `a` + `c` that shares a secret, with `c` receiving what `a`
/// sends, so that `a` reads its stdin: a line that never reaches the
/// stranger has really been sent.
fn group_with_a_listener(secret: &str) -> (Node, Node) {
    let a = node("a").args(&["--secret-file", secret]).start();
    let c = node("c").args(&["--secret-file", secret]).dial(&a).start();
    a.wait_peer("c");
    (a, c)
}

/// Sends a line through `a`, sees it reach `c`, and checks `stranger`
/// printed nothing and never counted `a` as a peer.
fn no_line_leaks(a: &mut Node, c: &Node, stranger: &Node) {
    a.send(b"members only\n");
    assert_eq!(texts(&c.wait_lines(1)), ["members only"]);
    assert_eq!(stranger.out.len(), 0, "{}", stranger.log_text());
    assert_eq!(stranger.count_log("peer up"), 0, "{}", stranger.log_text());
    assert_eq!(
        stranger.count_log("member up"),
        0,
        "{}",
        stranger.log_text()
    );
}

#[test]
fn a_wrong_secret_is_refused_on_both_sides_and_no_line_leaks() {
    let dir = Dir::new("wrong");
    let (mut a, c) = group_with_a_listener(&dir.file("team.secret", b"right"));
    let wrong = dir.file("wrong.secret", b"wrong");
    let x = node("x").args(&["--secret-file", &wrong]).dial(&a).start();
    let x_key = fingerprint_of(&x);
    let seen = a.wait_log("wrong group secret");
    assert!(seen.contains(&x_key), "a names the key: {seen}");
    assert!(seen.contains("127.0.0.1:"), "a names the address: {seen}");
    let told = x.wait_log("refused by the peer");
    assert!(told.contains("the group secret does not match"), "{told}");
    assert!(told.contains(&a.addr()), "x names the address: {told}");
    no_line_leaks(&mut a, &c, &x);
}

#[test]
fn a_node_without_a_secret_and_a_private_group_refuse_each_other() {
    let dir = Dir::new("plain");
    let (mut a, c) = group_with_a_listener(&dir.file("team.secret", b"s"));
    // A plaintext node dials the private group...
    let p = node("p").dial(&a).start();
    let seen = a.wait_log("a plaintext peercat node");
    assert!(
        seen.contains("(p, node ") && seen.contains("127.0.0.1:"),
        "{seen}"
    );
    let told = p.wait_log("a private peercat node");
    assert!(told.contains(&a.addr()), "{told}");
    // One line per dial, saying when the next comes; the first is a
    // warning, the repeats are not (each was two lines, both warnings).
    p.wait_log_count("a private peercat node", 3);
    let log = p.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("a private peercat node"))
        .collect();
    assert!(
        lines.iter().all(|l| l.contains("dialing again in")),
        "{log}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("[WARN]")).count(),
        1,
        "{log}"
    );
    no_line_leaks(&mut a, &c, &p);
    // ...and a private node dials a plaintext one.
    let q = node("q").start();
    let d = node("d")
        .args(&["--secret-file", &dir.file("d.secret", b"s")])
        .dial(&q)
        .start();
    let told = d.wait_log("a plaintext peercat node (q, node ");
    assert!(told.contains(&q.addr()), "{told}");
    q.wait_log("a private peercat node");
    assert_eq!(q.count_log("peer up"), 0);
}

#[test]
fn a_group_secret_and_keys_alone_refuse_each_other() {
    let dir = Dir::new("mode");
    let (mut a, c) = group_with_a_listener(&dir.file("team.secret", b"s"));
    let (key, public) = dir.keygen("k.key");
    let allow = dir.file("allow.txt", format!("{public} k\n").as_bytes());
    let k = node("k")
        .args(&["--key", &key, "--allow", &allow])
        .dial(&a)
        .start();
    a.wait_log("the peer has no --secret-file (keys only)");
    let told = k.wait_log("uses a --secret-file and this node has none");
    assert!(told.contains(&a.addr()), "{told}");
    no_line_leaks(&mut a, &c, &k);
}

/// a, and m dialing it, in a private group of the two (`--allow`), each
/// with a key of its own and keepalive 1 s, a also with `a_args`; m is a
/// member for a. Returns the directory of their files, a, m, and m's
/// arguments, to start it again under the same key.
#[cfg(unix)]
fn a_and_m_by_key(tag: &str, a_args: &[&str]) -> (Dir, Node, Node, Vec<String>) {
    let dir = Dir::new(tag);
    let (a_key, a_pub) = dir.keygen("a.key");
    let (m_key, m_pub) = dir.keygen("m.key");
    let members = dir.file("members.txt", format!("{a_pub} a\n{m_pub} m\n").as_bytes());
    let a = node("a")
        .args(&["--key", &a_key, "--allow", &members, "--keepalive", "1"])
        .args(a_args)
        .start();
    let m_args: Vec<String> = ["--key", &m_key, "--allow", &members, "--keepalive", "1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let m = start_m(&m_args, &a);
    a.wait_log("member up: m");
    (dir, a, m, m_args)
}

/// Node m with `args`, dialing `a`.
#[cfg(unix)]
fn start_m(args: &[String], a: &Node) -> Node {
    args.iter()
        .fold(node("m"), |m, arg| m.arg(arg))
        .dial(a)
        .start()
}

/// A node killed and restarted under the same key (so the same id) is a
/// member again at once: its new STATUS frames count from the time it
/// started, so they are newer than its last life's. Before, they counted
/// from 1 again and were taken for old ones: no `member up` for about
/// 20 s, and its lines meanwhile printed in slices between gaps (attack20).
#[cfg(unix)]
#[test]
fn a_node_restarted_under_the_same_key_is_a_member_again_at_once() {
    let (_dir, mut a, mut m, m_args) = a_and_m_by_key("rekey", &[]);
    // m acknowledges a stream of lines as it prints them: many STATUS
    // frames in its first life.
    const LINES: usize = 200_000;
    let mut text = Vec::new();
    for n in 0..LINES {
        writeln!(text, "line {n}").unwrap();
    }
    a.send(&text);
    m.wait_lines_for(LINES, DEADLINE);
    m.signal("KILL");
    m.expect_exit(Duration::from_secs(10));
    a.wait_log("member down: m");
    let m2 = start_m(&m_args, &a);
    m2.wait_peer("a");
    let back = Instant::now();
    a.wait_log_count("member up: m", 2);
    let took = back.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "member up again after {took:?}:\n{}",
        a.log_text()
    );
}

/// Two processes under one key (the key file copied to two machines, or
/// a restart that did not wait for the old process) share one id: members
/// cannot tell their lines apart, and print one's lines in place of the
/// other's. Each process must find out and say so, and neither may exit 0
/// claiming deliveries (attack23 F2: both exited 0, "100 lines
/// delivered", while a member printed x2's first lines, then x1's).
#[cfg(unix)]
#[test]
fn two_processes_under_one_key_both_say_so_and_neither_exits_0() {
    let dir = Dir::new("twokey");
    let (a_key, a_pub) = dir.keygen("a.key");
    let (b_key, b_pub) = dir.keygen("b.key");
    let (x_key, x_pub) = dir.keygen("x.key");
    let members = dir.file(
        "members.txt",
        format!("{a_pub} a\n{b_pub} b\n{x_pub} x\n").as_bytes(),
    );
    // Degree 1: x1 links to a alone, x2 to b alone (b linked to x1 would
    // refuse x2 as a duplicate of it, and x2 would never get in).
    let common = ["--allow", &members, "--keepalive", "1", "--degree", "1"];
    let a = node("a").args(&["--key", &a_key]).args(&common).start();
    let b = node("b")
        .args(&["--key", &b_key])
        .args(&common)
        .dial(&a)
        .start();
    a.wait_log("member up: b");
    let x = |name: &str, via: &Node| {
        node(name)
            .args(&["--key", &x_key, "--exit-on-eof", "--wait-members", "2"])
            .args(&common)
            .dial(via)
            .start()
    };
    let mut x1 = x("x1", &a);
    x1.wait_log("2 members known");
    let mut x2 = x("x2", &b);
    x2.wait_log("2 members known");
    let lines = |name: &str| -> Vec<u8> {
        (1..=20)
            .flat_map(|n| format!("{name}-{n}\n").into_bytes())
            .collect()
    };
    x1.send(&lines("x1"));
    x2.send(&lines("x2"));
    // Both run: each finds the other within a few keepalives.
    let said = "--key used twice?";
    for x in [&x1, &x2] {
        let found = x.log.wait_until(DEADLINE, |lines| {
            lines
                .iter()
                .any(|l| String::from_utf8_lossy(l).contains(said))
        });
        assert!(
            found,
            "{} did not say another process uses its id:\n{}\na:\n{}\nb:\n{}",
            x.name,
            x.log_text(),
            a.log_text(),
            b.log_text()
        );
    }
    x1.close_stdin();
    x2.close_stdin();
    for x in [&mut x1, &mut x2] {
        let status = x.expect_exit(Duration::from_secs(30));
        assert_eq!(status.code(), Some(3), "{}:\n{}", x.name, x.log_text());
    }
}

/// A second process under a key and name already in the group, refused
/// by the seed it dials ("already connected"), gets in once the first
/// has left; then it is a new life of that member: its lines are printed,
/// not dropped as duplicates of the first's, and it exits 0. Before, its
/// STATUS counted from its start, a moment after the first's, so members
/// took it for the first process itself: they dropped its lines 1-20 as
/// the first's, while it counted them delivered (attack24 N3).
#[cfg(unix)]
#[test]
fn a_process_that_got_in_after_another_under_its_key_left_is_a_new_life() {
    let dir = Dir::new("afterkey");
    let (a_key, a_pub) = dir.keygen("a.key");
    let (x_key, x_pub) = dir.keygen("x.key");
    let members = dir.file("members.txt", format!("{a_pub} a\n{x_pub} x\n").as_bytes());
    let common = ["--allow", &members, "--keepalive", "1"];
    let a = node("a").args(&["--key", &a_key]).args(&common).start();
    let x = |from: &str| {
        let path = dir.file(
            &format!("{from}.in"),
            &(1..=20)
                .flat_map(|n| format!("{from}-{n}\n").into_bytes())
                .collect::<Vec<u8>>(),
        );
        node("x")
            .args(&["--key", &x_key, "--exit-on-eof", "--wait-members", "1"])
            .args(&common)
            .stdin(std::process::Stdio::from(
                std::fs::File::open(path).unwrap(),
            ))
            .dial(&a)
            .start()
    };
    let mut first = x("first");
    first.wait_log("member up: a");
    a.wait_log("member up: x");
    let mut second = x("second");
    second.wait_log("already connected");
    let status = first.expect_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "first:\n{}", first.log_text());
    let status = second.expect_exit(Duration::from_secs(60));
    let wanted: Vec<Vec<u8>> = ["first", "second"]
        .iter()
        .flat_map(|from| (1..=20).map(move |n| format!("{from}-{n}").into_bytes()))
        .collect();
    let printed = a.wait_lines_for(40, Duration::from_secs(10));
    assert_eq!(
        printed,
        wanted,
        "a printed {} lines\nsecond:\n{}\na:\n{}",
        printed.len(),
        second.log_text(),
        a.log_text()
    );
    assert_eq!(status.code(), Some(0), "second:\n{}", second.log_text());
}

/// A member restarted under the same key (stopped with SIGTERM, as a
/// service manager restarts it) has books per life: its first life
/// printed every line owed to it, its second the lines read after it came
/// back, and the sender exits 0. Before, the sender kept one range of
/// books per id: the new life was told it had missed the first life's
/// lines, reported them as a gap, and the sender counted them lost and
/// exited 3.
#[cfg(unix)]
#[test]
fn a_member_restarted_under_the_same_key_is_booked_per_life() {
    let (_dir, mut a, mut m, m_args) = a_and_m_by_key("relife", &["--exit-on-eof"]);
    m.send(b"from the first life\n");
    a.wait_lines(1);
    let lines = |from: usize, to: usize| -> Vec<u8> {
        (from..=to)
            .flat_map(|n| format!("line {n}\n").into_bytes())
            .collect()
    };
    a.send(&lines(1, 100));
    m.wait_lines_for(100, DEADLINE);
    m.signal("TERM");
    assert_eq!(m.expect_exit(Duration::from_secs(10)).code(), Some(0));
    a.wait_log("member down: m");
    let m2 = start_m(&m_args, &a);
    a.wait_log_count("member up: m", 2);
    a.send(&lines(101, 150));
    let got = m2.wait_lines_for(50, DEADLINE);
    assert_eq!(
        texts(&got)[0],
        "line 101",
        "m's new life starts where it came back"
    );
    // As a sender, m's new life counts its lines from 1 again: a prints
    // them (before, they were taken for the first life's and dropped
    // without a word).
    let mut m2 = m2;
    m2.send(b"from the new life 1\nfrom the new life 2\n");
    let heard = a.wait_lines_for(3, DEADLINE);
    assert_eq!(
        texts(&heard),
        [
            "from the first life",
            "from the new life 1",
            "from the new life 2"
        ]
    );
    a.close_stdin();
    let status = a.expect_exit(Duration::from_secs(30));
    let summary = a.wait_log("summary");
    assert_eq!(status.code(), Some(0), "{summary}\n{}", a.log_text());
    assert!(
        summary.contains("to m (an earlier life)")
            && summary.contains("100 lines delivered")
            && summary.contains("50 lines delivered")
            && !summary.contains("lost"),
        "{summary}"
    );
    assert!(a.log_text().contains("member m") && a.log_text().contains("restarted"));
}

#[test]
fn a_key_not_on_the_allow_list_is_refused_on_both_sides() {
    let dir = Dir::new("allow");
    let (a_key, a_pub) = dir.keygen("a.key");
    let (c_key, c_pub) = dir.keygen("c.key");
    let (x_key, x_pub) = dir.keygen("x.key");
    let members = dir.file("members.txt", format!("{a_pub} a\n{c_pub} c\n").as_bytes());
    let mut a = node("a")
        .args(&["--key", &a_key, "--allow", &members])
        .start();
    let c = node("c")
        .args(&["--key", &c_key, "--allow", &members])
        .dial(&a)
        .start();
    a.wait_peer("c");
    // x lists a, but a does not list x: a refuses it when it learns its key.
    let x_list = dir.file("x.txt", format!("{a_pub} a\n{x_pub} x\n").as_bytes());
    let x = node("x")
        .args(&["--key", &x_key, "--allow", &x_list])
        .dial(&a)
        .start();
    let x_fp = fingerprint_of(&x);
    let seen = a.wait_log(&format!("key {x_fp} is not on our --allow list"));
    assert!(seen.contains("127.0.0.1:"), "{seen}");
    let told = x.wait_log("refused by the peer");
    assert!(told.contains("is not on this node's --allow list") && told.contains(&a.addr()));
    // A refusal, as the README words it, not "a protocol error".
    assert!(!told.contains("protocol error"), "{told}");
    no_line_leaks(&mut a, &c, &x);
}

#[test]
fn a_dialer_refuses_a_listener_not_on_its_allow_list() {
    let dir = Dir::new("allow-out");
    let (a_key, a_pub) = dir.keygen("a.key");
    let members = dir.file("members.txt", format!("{a_pub} a\n").as_bytes());
    let a = node("a")
        .args(&["--key", &a_key, "--allow", &members])
        .start();
    // y does not list a: y, the dialer, refuses a before it says anything.
    let (y_key, y_pub) = dir.keygen("y.key");
    let y_list = dir.file("y.txt", format!("{y_pub} y\n").as_bytes());
    let y = node("y")
        .args(&["--key", &y_key, "--allow", &y_list])
        .dial(&a)
        .start();
    let a_fp = fingerprint_of(&a);
    let refusal = format!("key {a_fp} is not on our --allow list");
    let told = y.wait_log(&refusal);
    assert!(told.contains(&a.addr()), "{told}");
    // One line per attempt, saying when the next comes.
    y.wait_log_count(&refusal, 2);
    let log = y.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&refusal)).collect();
    assert!(
        lines.iter().all(|l| l.contains("dialing again in")),
        "{lines:#?}"
    );
    let seen = a.wait_log("refused by the peer");
    assert!(
        seen.contains(&format!("key {a_fp} is not on this node's --allow list")),
        "{seen}"
    );
    assert_eq!(y.count_log("peer up"), 0);
}

#[test]
fn a_one_mib_message_crosses_an_encrypted_link() {
    let dir = Dir::new("big");
    let secret = dir.file("team.secret", b"s");
    let b = node("b").args(&["--secret-file", &secret]).start();
    let mut a = node("a").args(&["--secret-file", &secret]).dial(&b).start();
    a.wait_peer("b");
    let big: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let mut input = big.clone();
    input.extend_from_slice(b"\nafter\n");
    a.send(&input);
    let got = b.wait_lines(2);
    assert_eq!(got[0].len(), big.len());
    assert!(got[0] == big, "the 1 MiB message arrived altered");
    assert_eq!(texts(&got[1..]), ["after"]);
}

/// Relays one TCP connection through the test, keeping every byte that
/// crosses it in either direction.
fn relay_to(target: &Node) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let target = target.addr();
    let seen_ = seen.clone();
    thread::spawn(move || {
        let (inbound, _) = listener.accept().unwrap();
        let outbound = TcpStream::connect(target).unwrap();
        let pump = |mut from: TcpStream, mut to: TcpStream, seen: Arc<Mutex<Vec<u8>>>| {
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = from.read(&mut buf) {
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Write);
            });
        };
        pump(
            inbound.try_clone().unwrap(),
            outbound.try_clone().unwrap(),
            seen_.clone(),
        );
        pump(outbound, inbound, seen_);
    });
    (addr, seen)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Two nodes talk through a relay; returns what crossed it.
fn captured(args: &[&str]) -> Vec<u8> {
    let mut b = node("bob-the-member").args(args).start();
    let (relay, seen) = relay_to(&b);
    let mut a = node("alice-the-member").args(args).arg(&relay).start();
    a.wait_peer("bob-the-member");
    a.send(b"attack at dawn\n");
    b.send(b"retreat at dusk\n");
    assert_eq!(texts(&b.wait_lines(1)), ["attack at dawn"]);
    assert_eq!(texts(&a.wait_lines(1)), ["retreat at dusk"]);
    let bytes = seen.lock().unwrap().clone();
    bytes
}

#[test]
fn no_plaintext_crosses_the_wire_between_private_nodes() {
    // The capture works: between plaintext nodes the words are there.
    let plain = captured(&[]);
    assert!(contains(&plain, b"attack at dawn") && contains(&plain, b"retreat at dusk"));
    let dir = Dir::new("wire");
    let secret = dir.file("team.secret", b"s");
    let private = captured(&["--secret-file", &secret]);
    assert!(private.len() > 200, "{} bytes captured", private.len());
    for needle in [
        &b"attack at dawn"[..],
        b"retreat at dusk",
        b"alice-the-member",
        b"bob-the-member",
        b"attack",
    ] {
        assert!(
            !contains(&private, needle),
            "{:?} crossed the wire in clear",
            String::from_utf8_lossy(needle)
        );
    }
}

#[test]
fn three_private_nodes_relay_every_line() {
    let dir = Dir::new("mesh");
    let secret = dir.file("team.secret", b"s");
    let keys: Vec<(String, String)> = ["a", "b", "c"]
        .iter()
        .map(|n| dir.keygen(&format!("{n}.key")))
        .collect();
    let members: String = keys
        .iter()
        .map(|(_, public)| format!("{public}\n"))
        .collect();
    let allow = dir.file("members.txt", members.as_bytes());
    let args = |i: usize| {
        vec![
            "--secret-file".to_owned(),
            secret.clone(),
            "--key".to_owned(),
            keys[i].0.clone(),
            "--allow".to_owned(),
            allow.clone(),
            // A line: c reaches a only through b.
            "--degree".to_owned(),
            "1".to_owned(),
            "--max-peers".to_owned(),
            "2".to_owned(),
        ]
    };
    let mut b = node("b")
        .args(&args(1).iter().map(String::as_str).collect::<Vec<_>>())
        .start();
    let mut a = node("a")
        .args(&args(0).iter().map(String::as_str).collect::<Vec<_>>())
        .dial(&b)
        .start();
    let mut c = node("c")
        .args(&args(2).iter().map(String::as_str).collect::<Vec<_>>())
        .args(&["--no-listen", "--wait-members", "2"])
        .dial(&b)
        .start();
    a.wait_log("2 members known");
    c.wait_log("2 members known");
    a.send(b"from a\n");
    c.send(b"from c\n");
    b.send(b"from b\n");
    let mut at_a = texts(&a.wait_lines(2));
    let mut at_c = texts(&c.wait_lines(2));
    at_a.sort();
    at_c.sort();
    assert_eq!(at_a, ["from b", "from c"]);
    assert_eq!(at_c, ["from a", "from b"]);
    assert_eq!(texts(&b.wait_lines(2)).len(), 2);
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_a_public_one() {
    let dir = Dir::new("keygen");
    let (path, public, said) = dir.keygen_full("me.key");
    assert_eq!(public.len(), 44, "base64 of 32 bytes: {public}");
    // Each file starts with a comment naming the node id the log shows.
    let pub_file = std::fs::read_to_string(format!("{path}.pub")).unwrap();
    let (header, key) = pub_file.trim().split_once('\n').unwrap();
    assert_eq!(key, public);
    let header_fp = header
        .strip_prefix("# peercat public key of node ")
        .unwrap_or_else(|| panic!("{header}"));
    assert!(said.contains(&format!("node {header_fp}")), "{said}");
    let private = std::fs::read_to_string(&path).unwrap();
    assert!(private.starts_with("# peercat private key"), "{private}");
    let private_key = private.trim().lines().last().unwrap();
    assert_eq!(private_key.len(), 44);
    assert_ne!(private_key, public);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&format!("{path}.pub")), 0o644);
    }
    // A second run never overwrites a key.
    let again = Command::new(env!("CARGO_BIN_EXE_peercat"))
        .args(["--keygen", &path])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), private);
    // The node that uses the key announces its fingerprint, which is its id.
    let secret = dir.file("s", b"s");
    let a = node("a")
        .args(&["--key", &path, "--secret-file", &secret])
        .start();
    let fp = fingerprint_of(&a);
    assert!(a.wait_log("this is node a").contains(&fp));
    assert_eq!(fp, header_fp);
    assert!(Path::new(&format!("{path}.pub")).exists());
}

/// Runs peercat with `args` and returns its exit code and stderr.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_peercat"))
        .args(["-l", "127.0.0.1:0"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_allow_file_is_an_error_naming_the_line() {
    let dir = Dir::new("badallow");
    let (_, public) = dir.keygen("a.key");
    let allow = dir.file(
        "members.txt",
        format!("# the team\n{public} alice\n\nnot-a-key bob\n").as_bytes(),
    );
    let (code, stderr) = run_to_exit(&["--allow", &allow]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--allow {allow}, line 4: 'not-a-key' is not a key"
        )),
        "{stderr}"
    );
    let empty = dir.file("empty.txt", b"# nobody yet\n");
    let (code, stderr) = run_to_exit(&["--allow", &empty]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("lists no key"), "{stderr}");
    let (code, stderr) = run_to_exit(&["--allow", &dir.path("missing.txt")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot read --allow"), "{stderr}");
    let (code, stderr) = run_to_exit(&["--secret-file", &dir.file("empty.secret", b"")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is empty"), "{stderr}");
    let (code, stderr) = run_to_exit(&["--key", &dir.path("a.key")]);
    assert_eq!(code, Some(2), "a key alone is a usage error: {stderr}");
}

/// A hand-made private peer: its own key, the group's secret, the Noise
/// handshake done through peercat's own link code.
fn private_peer(
    node: &Node,
    secret: &[u8],
) -> (
    TcpStream,
    peercat::secure::link::Link,
    peercat::secure::keys::Key,
) {
    use peercat::event::Direction;
    use peercat::secure::{self, link, Security};
    let (private, public) = secure::generate_keypair().unwrap();
    let security = Security {
        private,
        public,
        psk: Some(secure::derive_psk(secret)),
        allow: None,
        instance: [9; secure::INSTANCE_LEN],
    };
    let stream = TcpStream::connect(node.addr()).unwrap();
    let addr = stream.peer_addr().unwrap();
    let link = link::open(Some(&security), &stream, addr, Direction::Out, DEADLINE).unwrap();
    (stream, link, public)
}

fn hello_as(node_id: u64, name: &str) -> Vec<u8> {
    use peercat::frame::{Frame, Hello};
    Frame::Hello(Hello {
        node_id,
        listen_port: 0,
        max_frame: 1 << 20,
        keepalive_secs: 5,
        name: name.into(),
    })
    .to_bytes()
}

/// A peer whose HELLO claims an id its key does not prove is refused: ids
/// can no longer be claimed.
#[test]
fn a_hello_claiming_another_id_than_its_key_is_refused() {
    let dir = Dir::new("claim");
    let secret = dir.file("team.secret", b"s");
    let a = node("a").args(&["--secret-file", &secret]).start();
    let (stream, mut link, public) = private_peer(&a, b"s");
    let forged = hello_as(0x0123_4567_89ab_cdef, "mallory");
    link.tx
        .write_all(&stream, &mut [std::io::IoSlice::new(&forged)], DEADLINE)
        .unwrap();
    let seen = a.wait_log("claims node 0123456789abcdef but its key is node");
    assert!(
        seen.contains(&peercat::secure::fingerprint(&public)),
        "{seen}"
    );
    assert_eq!(a.count_log("peer up"), 0);
}

/// `--max-frame` holds inside encrypted records: a frame announcing 1 GiB
/// ends the link at its length prefix, and the node's memory stays put.
#[cfg(target_os = "linux")]
#[test]
fn an_encrypted_frame_over_max_frame_ends_the_link_before_any_room_is_made() {
    use peercat::frame::Frame;
    let dir = Dir::new("maxframe");
    let secret = dir.file("team.secret", b"s");
    let a = node("a").args(&["--secret-file", &secret]).start();
    let (stream, mut link, public) = private_peer(&a, b"s");
    let mut bytes = hello_as(peercat::secure::node_id_of(&public), "big");
    bytes.extend_from_slice(&Frame::Accept.to_bytes());
    link.tx
        .write_all(&stream, &mut [std::io::IoSlice::new(&bytes)], DEADLINE)
        .unwrap();
    a.wait_peer("big");
    let before = a.rss_kib();
    // A MSG frame header announcing 1 GiB, and 200 KiB of it.
    let mut huge = (1u32 << 30).to_be_bytes().to_vec();
    huge.push(0x02);
    huge.extend_from_slice(&vec![0u8; 200 * 1024]);
    let _ = link
        .tx
        .write_all(&stream, &mut [std::io::IoSlice::new(&huge)], DEADLINE);
    let down = a.wait_log("peer down: big");
    assert!(down.contains("exceeds the limit of"), "{down}");
    let grown = a.rss_kib().saturating_sub(before);
    assert!(grown < 16 * 1024, "the node grew by {grown} KiB");
}

#[test]
fn a_low_order_or_misplaced_key_is_an_error_naming_the_file() {
    let dir = Dir::new("weakkeys");
    let (key, public) = dir.keygen("a.key");
    // An all-zero placeholder would let anyone in without a private key.
    for zero in ["A".repeat(43) + "=", "0".repeat(64)] {
        let allow = dir.file(
            "members.txt",
            format!("{public} alice\n{zero} placeholder\n").as_bytes(),
        );
        let (code, stderr) = run_to_exit(&["--key", &key, "--allow", &allow]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("--allow {allow}, line 2: ")) && stderr.contains("low-order"),
            "{stderr}"
        );
    }
    let allow = dir.file("ok.txt", format!("{public}\n").as_bytes());
    // A .pub file as --key would silently be another identity.
    let (code, stderr) = run_to_exit(&["--key", &format!("{key}.pub"), "--allow", &allow]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("is a public key file"), "{stderr}");
    // Refused, not first told to be made private (it is mode 644).
    assert!(!stderr.contains("chmod 600"), "{stderr}");
    // A private key as --allow.
    let (code, stderr) = run_to_exit(&["--key", &key, "--allow", &key]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("is a private key file"), "{stderr}");
}

#[test]
fn doubtful_allow_lists_and_secrets_draw_warnings() {
    let dir = Dir::new("warnings");
    let (a_key, _) = dir.keygen("a.key");
    let (_, b_public) = dir.keygen("b.key");
    let list = dir.file(
        "members.txt",
        format!("{b_public} bob\n# again\n{b_public} bobby\n").as_bytes(),
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Writable by its group only: that is enough to add a key.
        std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o664)).unwrap();
    }
    let a = node("a").args(&["--key", &a_key, "--allow", &list]).start();
    a.wait_log("is listed already on line 1; counted once");
    assert!(a.wait_log("line 3: key").contains(&list));
    a.wait_log("our own key (node ");
    a.wait_log("an allow-list of 1 key");
    #[cfg(unix)]
    a.wait_log("can be changed by the users of its group (mode 664), who could add their own key");
    let secret = dir.file("weak.secret", b"hunter2\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o620)).unwrap();
    }
    let b = node("b")
        .args(&["--allow", &list, "--secret-file", &secret])
        .start();
    b.wait_log("--allow without --key");
    b.wait_log("looks weak (it is only 8 bytes)");
    #[cfg(unix)]
    b.wait_log("can be changed by the users of its group (mode 620); chmod 600 it");
}

#[test]
fn two_nodes_started_with_one_key_say_so() {
    let dir = Dir::new("samekey");
    let (key, public) = dir.keygen("me.key");
    let allow = dir.file("members.txt", format!("{public} me\n").as_bytes());
    let a1 = node("a1").args(&["--key", &key, "--allow", &allow]).start();
    let a2 = node("a2")
        .args(&["--key", &key, "--allow", &allow])
        .dial(&a1)
        .start();
    let fp = fingerprint_of(&a1);
    let said = a1.wait_log("another node is using our key");
    assert!(said.contains(&fp) && said.contains("[ERROR]"), "{said}");
    // The dialer says it in its line per attempt (a warning for a PEER).
    let said = a2.wait_log("another node is using our key");
    assert!(
        said.contains(&fp) && said.contains("dialing again"),
        "{said}"
    );
    for a in [&a1, &a2] {
        assert_eq!(a.count_log("connected to itself"), 0);
    }
}

/// A name is claimed (the HELLO, `-n`), a key proven: `peer up` shows the
/// name the allow-list gives the key when the two differ.
#[test]
fn peer_up_shows_the_name_the_allow_list_gives_a_key_that_claims_another() {
    let dir = Dir::new("names");
    let (a_key, a_pub) = dir.keygen("a.key");
    let (b_key, b_pub) = dir.keygen("b.key");
    let members = dir.file(
        "members.txt",
        format!("{a_pub} a\n{b_pub} bob\n").as_bytes(),
    );
    let a = node("a")
        .args(&["--key", &a_key, "--allow", &members])
        .start();
    let _b = node("alice")
        .args(&["--key", &b_key, "--allow", &members])
        .dial(&a)
        .start();
    let up = a.wait_log("peer up: alice");
    assert!(up.contains("(key listed as bob)"), "{up}");
    assert!(up.contains("[INFO]"), "shown at the default level: {up}");
}

/// Each kind of refusal from one address gets its own first line: a flood
/// of one kind (rate-limited per kind and source) hides no other.
#[test]
fn each_kind_of_refusal_from_one_address_gets_its_own_line() {
    let dir = Dir::new("kinds");
    let a = node("a")
        .args(&["--secret-file", &dir.file("team.secret", b"s")])
        .start();
    let _wrong = node("w")
        .args(&["--secret-file", &dir.file("wrong.secret", b"t")])
        .dial(&a)
        .start();
    a.wait_log("wrong group secret");
    let _plain = node("p").dial(&a).start();
    a.wait_log("a plaintext peercat node (p, node ");
    let (key, public) = dir.keygen("k.key");
    let allow = dir.file("allow.txt", format!("{public} k\n").as_bytes());
    let _keys = node("k")
        .args(&["--key", &key, "--allow", &allow])
        .dial(&a)
        .start();
    a.wait_log("the peer has no --secret-file (keys only)");
}

/// A member whose link breaks (here: a record that fails authentication)
/// gets its `peer down` line with the reason, however soon after `peer up`
/// and however many others from the same address did.
#[test]
fn every_members_broken_link_is_logged_with_its_reason() {
    use peercat::frame::Frame;
    let dir = Dir::new("broken");
    let secret = dir.file("team.secret", b"s");
    let a = node("a").args(&["--secret-file", &secret]).start();
    for name in ["m1", "m2"] {
        let (mut stream, mut link, public) = private_peer(&a, b"s");
        let mut bytes = hello_as(peercat::secure::node_id_of(&public), name);
        bytes.extend_from_slice(&Frame::Accept.to_bytes());
        link.tx
            .write_all(&stream, &mut [std::io::IoSlice::new(&bytes)], DEADLINE)
            .unwrap();
        a.wait_peer(name);
        // A data record whose tag cannot check out.
        let mut forged = vec![2u8, 0, 40];
        forged.extend_from_slice(&[0x55; 40]);
        stream.write_all(&forged).unwrap();
        let down = a.wait_log(&format!("peer down: {name}"));
        assert!(down.contains("failed authentication"), "{down}");
    }
}

#[test]
fn help_says_what_key_needs_and_how_to_make_a_secret() {
    let out = Command::new(env!("CARGO_BIN_EXE_peercat"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(help.contains("needs --secret-file or --allow"), "{help}");
    assert!(help.contains("head -c 32 /dev/urandom"), "{help}");
    assert!(help.contains("not its .pub"), "{help}");
}

//! The mesh scenarios (issue 7), each side by side with what a user would
//! build from ncat instead: a relay chain, fan-out through a mesh, how fast
//! one line reaches a whole group, and what flooding costs in bytes.
//!
//! Every group is formed before the clock starts: fixed topologies (each
//! node dials its neighbours on ports chosen beforehand), and the harness
//! waits until every node has logged its links (`peer up`). The sender
//! joins as a leaf with `--wait-members`, so it reads stdin only once it
//! knows the whole group; its start is inside the measured time, as the
//! ncat sender's connect is.

use std::io::Write;
use std::path::Path;
use std::process::{ChildStdout, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;

use crate::procs::{finish, free_port, peercat_bin, sink, timed_lines, Input, Proc, STEP_DEADLINE};
use crate::scenarios::{numbered, Inputs, LINE_LEN};

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn secs(from: Instant, to: Instant) -> f64 {
    to.duration_since(from).as_secs_f64()
}

/// A group of peercat nodes on ports chosen beforehand, `links[i]` the
/// nodes node `i` dials; started at once, then waited on until every node
/// has logged `peer up` for each of its links. `to_file[i]`: its stdout
/// goes to a file in `dir` (a relay) instead of a pipe.
fn peercat_group(
    prefix: &str,
    links: &[Vec<usize>],
    degree: usize,
    to_file: impl Fn(usize) -> bool,
    dir: &Path,
) -> Vec<Proc> {
    let n = links.len();
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let mut degree_of = vec![0; n];
    for (i, l) in links.iter().enumerate() {
        for &j in l {
            degree_of[i] += 1;
            degree_of[j] += 1;
        }
    }
    let mut nodes = Vec::new();
    for (i, l) in links.iter().enumerate() {
        let name = format!("{prefix}{i}");
        let mut args: Vec<String> = vec![
            "-n".into(),
            name.clone(),
            "-l".into(),
            addr(ports[i]),
            "--degree".into(),
            degree.to_string(),
        ];
        args.extend(l.iter().map(|&j| addr(ports[j])));
        let stdout = if to_file(i) {
            let file = std::fs::File::create(dir.join(format!("{name}.out"))).unwrap();
            Stdio::from(file)
        } else {
            Stdio::piped()
        };
        nodes.push(Proc::spawn_with(
            &name,
            &peercat_bin(),
            &args,
            Input::Null,
            stdout,
        ));
    }
    for (i, node) in nodes.iter_mut().enumerate() {
        node.wait_stderr_count("peer up", degree_of[i]);
    }
    nodes
}

/// A leaf sender dialing `to` (`127.0.0.1:PORT`), reading stdin once it
/// knows `members` other members, exiting once all have everything.
fn sender(to: &str, members: usize, input: Input<'_>) -> Proc {
    let members = members.to_string();
    Proc::peercat(
        "sender",
        &[
            "-q",
            "--no-listen",
            "--degree",
            "1",
            "--wait-members",
            &members,
            "--exit-on-eof",
            to,
        ],
        input,
    )
}

/// The port a group node listens on, from its log.
fn port_of(node: &mut Proc) -> u16 {
    node.listening_port()
}

/// Scenario 7: every line along a chain of 5 nodes, each dialing the
/// previous one: the sender at one end, every node printing what passes
/// (relays into files), the far end into the checking sink. Seconds.
pub fn chain_peercat(inputs: &Inputs, dir: &Path) -> f64 {
    // c0 (the far end) <- c1 <- c2 <- c3 <- sender
    let links: Vec<Vec<usize>> = (0..4)
        .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
        .collect();
    let mut nodes = peercat_group("c", &links, 1, |i| i != 0, dir);
    let out = sink(nodes[0].take_stdout(), inputs.lines.clone());
    let to = addr(port_of(&mut nodes[3]));
    let start = Instant::now();
    let mut s = sender(&to, 4, Input::File(&inputs.lines_path));
    let done = finish(&out, "peercat chain of 5");
    s.wait_success();
    secs(start, done)
}

/// The same chain of ncat relays: `ncat -l | tee out | ncat next`.
pub fn chain_ncat(inputs: &Inputs, dir: &Path) -> f64 {
    let port = free_port().to_string();
    let mut end = Proc::ncat(
        "c0",
        &["-v", "-l", "127.0.0.1", &port, "--recv-only"],
        Input::Null,
    );
    end.wait_stderr("Listening on");
    let out = sink(end.take_stdout(), inputs.lines.clone());
    let mut next = port;
    let mut relays = Vec::new();
    for i in 1..4 {
        let me = free_port().to_string();
        let file = dir.join(format!("ncat-c{i}.out"));
        let cmd = format!(
            "ncat -v -l 127.0.0.1 {me} --recv-only | tee {} | ncat --send-only 127.0.0.1 {next}",
            file.display()
        );
        let mut relay = Proc::spawn(&format!("c{i}"), "sh", &["-c".into(), cmd], Input::Null);
        relay.wait_stderr("Listening on");
        relays.push(relay);
        next = me;
    }
    let start = Instant::now();
    let _s = Proc::ncat(
        "sender",
        &["--send-only", "127.0.0.1", &next],
        Input::File(&inputs.lines_path),
    );
    let done = finish(&out, "ncat chain of 5");
    secs(start, done)
}

/// Eight receivers in a 3-regular graph: a ring plus the chords i <-> i+4.
fn degree_three_links() -> Vec<Vec<usize>> {
    (0..8)
        .map(|i| {
            let mut l = Vec::new();
            if i > 0 {
                l.push(i - 1);
            }
            if i == 7 {
                l.push(0);
            }
            if i >= 4 {
                l.push(i - 4);
            }
            l
        })
        .collect()
}

/// Scenario 8: one sender to 8 members through a degree-3 mesh; seconds
/// until every member has every line.
pub fn mesh_fan_out_peercat(inputs: &Inputs, dir: &Path) -> f64 {
    let mut nodes = peercat_group("r", &degree_three_links(), 3, |_| false, dir);
    let sinks: Vec<_> = nodes
        .iter_mut()
        .map(|n| sink(n.take_stdout(), inputs.lines.clone()))
        .collect();
    let to = addr(port_of(&mut nodes[0]));
    let start = Instant::now();
    let mut s = sender(&to, 8, Input::File(&inputs.lines_path));
    let done = sinks
        .iter()
        .map(|out| finish(out, "peercat mesh fan-out"))
        .max()
        .unwrap();
    s.wait_success();
    secs(start, done)
}

/// `count` ncat clients of a broker; returns the broker, the clients, and
/// their stdouts.
fn broker_with(count: usize) -> (Proc, Vec<Proc>, Vec<ChildStdout>, String) {
    let port = free_port().to_string();
    let max = (count + 8).to_string();
    let mut broker = Proc::ncat(
        "broker",
        &["-v", "-l", "--broker", "-m", &max, "127.0.0.1", &port],
        Input::Null,
    );
    broker.wait_stderr("Listening on");
    let mut clients = Vec::new();
    let mut outs = Vec::new();
    for i in 0..count {
        let mut c = Proc::ncat(
            &format!("r{i}"),
            &["--recv-only", "127.0.0.1", &port],
            Input::Null,
        );
        outs.push(c.take_stdout());
        clients.push(c);
        broker.wait_stderr_count("Connection from 127.0.0.1:", i + 1);
    }
    (broker, clients, outs, port)
}

pub fn mesh_fan_out_ncat(inputs: &Inputs) -> f64 {
    let (_broker, _clients, outs, port) = broker_with(8);
    let sinks: Vec<_> = outs
        .into_iter()
        .map(|o| sink(o, inputs.lines.clone()))
        .collect();
    let start = Instant::now();
    let _s = Proc::ncat(
        "sender",
        &["--send-only", "127.0.0.1", &port],
        Input::File(&inputs.lines_path),
    );
    let done = sinks
        .iter()
        .map(|out| finish(out, "ncat --broker fan-out to 8"))
        .max()
        .unwrap();
    secs(start, done)
}

/// Sixteen members in a 4-regular graph: each linked to i±1 and i±2.
fn degree_four_links() -> Vec<Vec<usize>> {
    (0..16)
        .map(|i| vec![(i + 15) % 16, (i + 14) % 16])
        .collect()
}

/// Writes probe lines 1..=count into `stdin`, one every 2 ms, after a
/// warm-up line 0 that every output must show first; returns per probe the
/// microseconds until the last of `outs` printed it, sorted.
fn propagation(mut stdin: impl Write, outs: Vec<ChildStdout>, count: usize) -> Vec<f64> {
    let members = outs.len();
    let (tx, arrivals) = unbounded();
    let readers: Vec<_> = outs
        .into_iter()
        .map(|o| timed_lines(o, tx.clone()))
        .collect();
    drop(tx);
    stdin.write_all(&numbered(0, LINE_LEN)).unwrap();
    let deadline = Instant::now() + STEP_DEADLINE;
    for _ in 0..members {
        let (seq, _) = arrivals
            .recv_deadline(deadline)
            .expect("the warm-up line arrives");
        assert_eq!(seq, 0, "a probe before the warm-up line");
    }
    let mut sent = Vec::with_capacity(count);
    let start = Instant::now() + Duration::from_millis(10);
    for n in 1..=count {
        let at = start + Duration::from_millis(2 * n as u64);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        sent.push(Instant::now());
        stdin.write_all(&numbered(n, LINE_LEN)).unwrap();
    }
    let mut last = vec![None::<Instant>; count];
    let mut seen = vec![0usize; count];
    let deadline = Instant::now() + STEP_DEADLINE;
    for _ in 0..count * members {
        let (seq, at) = arrivals
            .recv_deadline(deadline)
            .expect("every probe reaches every member");
        let i = (seq as usize).checked_sub(1).expect("a probe we sent");
        seen[i] += 1;
        assert!(seen[i] <= members, "probe {seq} printed twice somewhere");
        last[i] = Some(last[i].map_or(at, |l| l.max(at)));
    }
    drop(readers);
    let mut micros: Vec<f64> = last
        .iter()
        .zip(&sent)
        .map(|(at, sent)| at.unwrap().duration_since(*sent).as_secs_f64() * 1e6)
        .collect();
    micros.sort_by(f64::total_cmp);
    micros
}

/// Scenario 9: one line to all of 16 members of a degree-4 mesh.
pub fn propagation_peercat(count: usize, dir: &Path) -> Vec<f64> {
    let mut nodes = peercat_group("p", &degree_four_links(), 4, |_| false, dir);
    let outs: Vec<_> = nodes.iter_mut().map(|n| n.take_stdout()).collect();
    let to = addr(port_of(&mut nodes[0]));
    let mut s = sender(&to, 16, Input::Pipe);
    let stdin = s.stdin.take().unwrap();
    propagation(stdin, outs, count)
}

pub fn propagation_ncat(count: usize) -> Vec<f64> {
    let (mut broker, _clients, outs, port) = broker_with(16);
    let mut s = Proc::ncat("sender", &["--send-only", "127.0.0.1", &port], Input::Pipe);
    broker.wait_stderr_count("Connection from 127.0.0.1:", 17);
    let stdin = s.stdin.take().unwrap();
    propagation(stdin, outs, count)
}

/// Bytes the TCP sockets of processes `pids` have received so far
/// (`bytes_received` of `ss -tinp`; std reads sockets with recv(2), which
/// /proc/PID/io does not count).
fn socket_bytes_received(pids: &[u32]) -> u64 {
    let out = std::process::Command::new("ss")
        .args(["-tinpH"])
        .output()
        .expect("run ss (iproute2) to read the sockets' byte counts");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut total = 0;
    let mut ours = false;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            ours = pids.iter().any(|p| line.contains(&format!("pid={p},")));
        } else if ours {
            let received = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("bytes_received:"))
                .and_then(|n| n.parse::<u64>().ok());
            total += received.unwrap_or(0);
        }
    }
    total
}

/// Scenario 10: bytes the 16 members of a degree-4 mesh received on their
/// sockets per byte each printed, for the lines of `inputs` from one leaf
/// sender.
pub fn bytes_per_delivered(inputs: &Inputs, dir: &Path) -> f64 {
    let mut nodes = peercat_group("b", &degree_four_links(), 4, |_| false, dir);
    let pids: Vec<u32> = nodes.iter().map(Proc::pid).collect();
    let before = socket_bytes_received(&pids);
    let sinks: Vec<_> = nodes
        .iter_mut()
        .map(|n| sink(n.take_stdout(), inputs.lines.clone()))
        .collect();
    let to = addr(port_of(&mut nodes[0]));
    let mut s = sender(&to, 16, Input::File(&inputs.lines_path));
    for out in &sinks {
        finish(out, "peercat degree-4 mesh");
    }
    s.wait_success();
    let after = socket_bytes_received(&pids);
    after.saturating_sub(before) as f64 / (16 * inputs.lines.len()) as f64
}

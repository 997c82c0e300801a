//! `--discover`'s sockets, for real: discovery instances in a network
//! namespace of their own (IPv4 over its loopback, IPv6 over a veth pair
//! inside it), so no beacon ever reaches the host's real interfaces. Needs root and iproute2, so it
//! is `#[ignore]`d in a plain `cargo test` (which lists it as ignored, with
//! the reason) and run by `.ci/run` as root with
//! `cargo test --test it -- --ignored netns`; there, a namespace that
//! cannot be made fails it.

use std::cell::RefCell;
use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use peercat::config::DEFAULT_DISCOVER_ADDR;
use peercat::discovery::{self, Found, Parts};
use peercat::shutdown::{Cause, Shutdown};
use peercat::threads::Threads;

const DEADLINE: Duration = Duration::from_secs(10);

/// A network namespace with multicast on its loopback, removed on drop.
struct Namespace(String);

fn ip(args: &[&str]) -> Result<(), String> {
    match Command::new("ip").args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run `ip` (install iproute2): {e}")),
    }
}

impl Namespace {
    /// `pcat-TAG-PID`: one per test, as tests run in parallel.
    fn create(tag: &str) -> Result<Namespace, String> {
        let name = format!("pcat-{tag}-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Namespace(name); // ours now: removed on drop
        let ns_ = ns.0.as_str();
        // IPv4: multicast on loopback, beacons from 127.0.0.1. IPv6
        // multicast does not loop over `lo`, so a veth pair inside the
        // namespace carries it (DAD off, so link-local addresses are
        // usable at once).
        let setup = [
            "link set lo up multicast on",
            "route add 224.0.0.0/4 dev lo src 127.0.0.1",
            "netns exec {ns} sysctl -qw net.ipv6.conf.all.accept_dad=0",
            "netns exec {ns} sysctl -qw net.ipv6.conf.default.accept_dad=0",
            "link add v0 type veth peer name v1",
            "link set v0 up",
            "link set v1 up",
            "-6 route add ff00::/8 dev v0",
        ];
        for step in setup {
            let args: Vec<&str> = match step.strip_prefix("netns exec {ns} ") {
                Some(cmd) => ["netns", "exec", ns_]
                    .into_iter()
                    .chain(cmd.split(' '))
                    .collect(),
                None => ["-n", ns_].into_iter().chain(step.split(' ')).collect(),
            };
            ip(&args)?;
        }
        Ok(ns)
    }

    /// Moves the calling thread (and the threads it starts from now on)
    /// into the namespace.
    fn enter(&self) {
        let file = File::open(format!("/var/run/netns/{}", self.0)).expect("namespace file");
        // SAFETY: setns on a valid descriptor of a network namespace; it
        // changes only this thread's namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

/// One discovery instance, as a node with this id and listen port runs it.
struct Instance {
    found: Receiver<Found>,
    /// Everything reported so far.
    seen: RefCell<Vec<Found>>,
    shutdown: Arc<Shutdown>,
    threads: Arc<Threads>,
}

impl Instance {
    fn start(id: u64, listen_port: u16) -> Instance {
        Instance::start_on(DEFAULT_DISCOVER_ADDR, id, listen_port)
    }

    fn start_on(group: SocketAddr, id: u64, listen_port: u16) -> Instance {
        let shutdown = Arc::new(Shutdown::default());
        let threads = Threads::new(shutdown.clone());
        let (found_tx, found) = unbounded();
        discovery::spawn_with(Parts {
            group,
            id,
            listen_port,
            threads: threads.clone(),
            shutdown: shutdown.clone(),
            found: found_tx,
        })
        .expect("discovery starts");
        Instance {
            found,
            seen: RefCell::default(),
            shutdown,
            threads,
        }
    }

    /// Waits until `want` has been reported; returns everything reported
    /// until then.
    fn wait_for(&self, want: Found) -> Vec<Found> {
        self.wait_until(|found| *found == want)
    }

    fn wait_until(&self, want: impl Fn(&Found) -> bool) -> Vec<Found> {
        let end = Instant::now() + DEADLINE;
        let mut seen = self.seen.borrow_mut();
        while !seen.iter().any(&want) {
            match self.found.recv_deadline(end) {
                Ok(found) => {
                    assert!(!found.addr.ip().is_unspecified(), "{found:?}");
                    seen.push(found)
                }
                Err(_) => panic!("not found within {DEADLINE:?}; found {seen:?}"),
            }
        }
        seen.clone()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.trigger(Cause::Signal);
        self.threads.join_all(Instant::now() + DEADLINE);
    }
}

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
#[ignore = "needs root and iproute2; .ci/run runs it: cargo test --test it -- --ignored netns"]
fn netns_discovery_finds_the_others_never_itself_and_shrugs_off_garbage() {
    let ns = Namespace::create("disc4").unwrap_or_else(|e| {
        panic!("cannot create a network namespace (this test needs root and iproute2): {e}")
    });
    // A thread of its own, so that only it (and what it starts) moves.
    let body = thread::spawn(move || {
        ns.enter();
        let a = Instance::start(0xa, 1111);
        let b = Instance::start(0xb, 2222);
        // b's announcement reaches a, whose answer reaches b.
        let seen_by_a = a.wait_for(Found {
            id: 0xb,
            addr: at(2222),
        });
        let seen_by_b = b.wait_for(Found {
            id: 0xa,
            addr: at(1111),
        });
        assert!(
            seen_by_a.iter().all(|f| f.id != 0xa),
            "a found itself: {seen_by_a:?}"
        );
        assert!(
            seen_by_b.iter().all(|f| f.id != 0xb),
            "b found itself: {seen_by_b:?}"
        );

        // A stranger's garbage on the group changes nothing...
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        for junk in [&b"hello"[..], &[0u8; 1500][..], b"PCDS\x01\x01short"] {
            stranger.send_to(junk, DEFAULT_DISCOVER_ADDR).unwrap();
        }
        // ...and a newcomer knows everyone, and everyone knows it, within
        // one round trip: well before anyone's next periodic beacon.
        let started = Instant::now();
        let c = Instance::start(0xc, 3333);
        a.wait_for(Found {
            id: 0xc,
            addr: at(3333),
        });
        b.wait_for(Found {
            id: 0xc,
            addr: at(3333),
        });
        c.wait_for(Found {
            id: 0xa,
            addr: at(1111),
        });
        c.wait_for(Found {
            id: 0xb,
            addr: at(2222),
        });
        let took = started.elapsed();
        assert!(took < discovery::INTERVAL / 2, "took {took:?}");
        ns
    });
    let ns = body.join().expect("the test body");
    drop(ns);
}

#[test]
#[ignore = "needs root and iproute2; .ci/run runs it: cargo test --test it -- --ignored netns"]
fn netns_discovery_works_on_an_ipv6_group() {
    let ns = Namespace::create("disc6").unwrap_or_else(|e| {
        panic!("cannot create a network namespace (this test needs root and iproute2): {e}")
    });
    let group: SocketAddr = "[ff18::7117]:7117".parse().unwrap();
    let body = thread::spawn(move || {
        ns.enter();
        let a = Instance::start_on(group, 0xa, 1111);
        let b = Instance::start_on(group, 0xb, 2222);
        // The sender's address is a link-local one of the veth pair, with
        // its scope: what matters is that it is IPv6 and dialable.
        let is = |found: &Found, id, port| {
            found.id == id
                && found.addr.port() == port
                && matches!(found.addr, SocketAddr::V6(v6) if !v6.ip().is_unspecified())
        };
        a.wait_until(|f| is(f, 0xb, 2222));
        b.wait_until(|f| is(f, 0xa, 1111));
        ns
    });
    drop(body.join().expect("the test body"));
}

//! The command line, parsed and validated into a [`Config`].
//!
//! Validation only: nothing here opens a socket or a file. Every mistake is a
//! clap error, which prints what was wrong and exits with code 2.

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};
use log::LevelFilter;

use crate::frame::{self, MAX_NAME_LEN};

/// The largest `--max-frame`: a message must fit a u32 length prefix, and one
/// frame is buffered whole, so a gigabyte is already more than sensible.
pub const MAX_FRAME_LIMIT: u32 = 1 << 30;
pub const DEFAULT_PORT: u16 = 7117;
/// `--degree`'s default, and its bounds.
pub const DEFAULT_DEGREE: u32 = 4;
pub const MAX_DEGREE: u32 = 64;
/// `--window`'s default (4 MiB) and its largest value (4 GiB): a node may
/// hold up to a window of each origin's messages, so it bounds memory.
pub const DEFAULT_WINDOW: u64 = 4 << 20;
pub const MAX_WINDOW: u64 = 4 << 30;
/// `--discover-addr`'s default: an organisation-local multicast group
/// (RFC 2365), on peercat's port.
pub const DEFAULT_DISCOVER_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 255, 71, 17)), DEFAULT_PORT);

#[derive(Parser, Debug)]
#[command(
    name = "peercat",
    version,
    about = "A peer-to-peer broadcast pipe: each line of stdin reaches every member \
             of the group, each member's lines go to stdout.",
    after_help = "Examples:\n  \
        peercat                                  listen on 0.0.0.0:7117, print what members send\n  \
        tail -f app.log | peercat host2:7117     join the group through host2, send it our lines\n  \
        peercat -l 127.0.0.1:0 --format json     any free port, one JSON object per line\n\n\
        Exit codes: 0 ok (Ctrl-C, --exit-on-eof, stdout closed), 1 runtime error (or \
        --connect-timeout passed), 2 usage error, 3 --exit-on-eof and some member missed lines, \
        however the node stopped, Ctrl-C too (the summary on the log says who), 130 a second \
        signal (more than 0.5 s after the first)."
)]
struct Cli {
    /// Any member to join through (host:port: IPv4, [IPv6]:port or a host
    /// name); more members are learned from it. None: wait to be dialed, or
    /// find members with --peer-cache or --discover
    #[arg(value_name = "PEER", value_parser = parse_peer)]
    peers: Vec<PeerAddr>,

    /// Listen address; port 0 = any free port; a bare port means 0.0.0.0:PORT
    #[arg(short, long, value_name = "ADDR", default_value = "0.0.0.0:7117", value_parser = parse_listen)]
    listen: SocketAddr,

    /// Dial only, accept nothing
    #[arg(long, conflicts_with = "listen")]
    no_listen: bool,

    /// Name shown to peers [default: the host name]
    #[arg(short, long, value_name = "NAME", value_parser = parse_name)]
    name: Option<String>,

    /// stdout format
    #[arg(short, long, value_name = "FMT", value_enum, default_value_t = Format::Plain)]
    format: Format,

    /// Read stdin only once N peers are connected
    #[arg(
        long,
        allow_negative_numbers = true,
        value_name = "N",
        default_value_t = 0
    )]
    wait_peers: u32,

    /// When stdin ends: wait until every member owed a line has acknowledged it (or is
    /// gone), leave the group politely; exit 0 if no member missed a line, else 3
    #[arg(long)]
    exit_on_eof: bool,

    /// Refuse connections beyond N peers
    #[arg(long, allow_negative_numbers = true, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_peers: u32,

    /// Largest message accepted or sent, in bytes (K, M and G suffixes: 1024s)
    #[arg(long, value_name = "BYTES", default_value = "1048576", value_parser = parse_max_frame)]
    max_frame: u32,

    /// Keep about D connections (1..=64): dial learned members while below
    /// D; above 2xD, close the extra ones politely (never below D; a link
    /// that is some members' only way to us is kept, up to 3xD)
    /// [default: 4, or --max-peers if lower]
    #[arg(long, allow_negative_numbers = true, value_name = "D",
          value_parser = clap::value_parser!(u32).range(1..=MAX_DEGREE as i64))]
    degree: Option<u32>,

    /// A message crosses at most HOPS links (1..=255)
    #[arg(long, allow_negative_numbers = true, value_name = "HOPS", default_value_t = 16,
          value_parser = clap::value_parser!(u8).range(1..=255))]
    ttl: u8,

    /// Deliver messages, forward nothing (a leaf)
    #[arg(long)]
    no_relay: bool,

    /// Keep known members' addresses in PATH; on start, dial from it as well
    /// as from PEER
    #[arg(long, value_name = "PATH")]
    peer_cache: Option<PathBuf>,

    /// Find members on the local network by UDP multicast, and answer others
    #[arg(long)]
    discover: bool,

    /// Multicast group and port for --discover
    #[arg(long, value_name = "GROUP:PORT", requires = "discover",
          default_value_t = DEFAULT_DISCOVER_ADDR, value_parser = parse_discover_addr)]
    discover_addr: SocketAddr,

    /// The address members should dial for this node [default: the listen
    /// address if it is one IP, else the address each neighbour saw us at,
    /// with our listen port]
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_advertise)]
    advertise: Option<PeerAddr>,

    /// Read stdin only once N other members are known through the mesh
    /// (at most 1024: a node knows no more)
    #[arg(
        long,
        allow_negative_numbers = true,
        value_name = "N",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=crate::mesh::MAX_MEMBERS as i64)
    )]
    wait_members: u32,

    /// Bytes of this node's lines that may be on their way, not yet
    /// confirmed by every member (K, M and G suffixes: 1024s); at least
    /// --max-frame plus a message header [default: 4M, or that if larger]
    #[arg(long, value_name = "BYTES", value_parser = parse_window)]
    window: Option<u64>,

    /// Ping every peer every SECS, busy or idle; drop a peer silent for 3x this
    #[arg(long, allow_negative_numbers = true, value_name = "SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    keepalive: u64,

    /// Drop a peer that accepts no data for SECS while data waits for it
    #[arg(long, allow_negative_numbers = true, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    stall_timeout: u64,

    /// Give up (exit 1) if --wait-peers peers (at least one) are not
    /// connected, or --wait-members members not known, within SECS; with
    /// --exit-on-eof, also when no peer has been connected for SECS while
    /// lines wait (exit 3) [default: wait forever]
    #[arg(long, allow_negative_numbers = true, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    connect_timeout: Option<u64>,

    /// Log a one-line summary of traffic every SECS, and totals at exit
    #[arg(long, allow_negative_numbers = true, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    stats: Option<u64>,

    /// More logging (-v debug, -vv trace)
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Warnings and errors only (the `listening on` line is still printed)
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,

    /// Log to PATH instead of stderr
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,

    /// A pre-shared group secret (any bytes, a trailing newline included;
    /// make one with `head -c 32 /dev/urandom > team.secret`): only nodes
    /// holding the same secret can connect, and every link is encrypted
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,

    /// Write a new node key pair to PATH (private, mode 0600) and PATH.pub,
    /// print the public key (and, on stderr, the node id logs show), exit 0
    #[arg(long, value_name = "PATH")]
    keygen: Option<PathBuf>,

    /// This node's private key (the file --keygen wrote, not its .pub);
    /// needs --secret-file or --allow [default: a fresh one each start]
    #[arg(long, value_name = "PATH")]
    key: Option<PathBuf>,

    /// Admit only nodes whose public key is listed (one per line, base64 or
    /// hex, optional name after it, # comments); implies encryption
    #[arg(long, value_name = "PATH")]
    allow: Option<PathBuf>,

    /// Print a shell completion script or the man page, then exit
    #[arg(long, value_name = "KIND", value_enum)]
    generate: Option<Generate>,
}

/// What `--generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    CompleteBash,
    CompleteZsh,
    CompleteFish,
    CompletePowershell,
    /// The man page (roff), for `man -l -` or ~/.local/share/man/man1.
    Man,
}

/// The command-line definition, for completion scripts and the man page.
pub fn command() -> clap::Command {
    Cli::command()
}

/// How received messages are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Each message exactly as sent, then a newline.
    Plain,
    /// `NAME> message`
    Tagged,
    /// One JSON object per line, peer_up and peer_down events included.
    Json,
}

/// A peer to dial, as given: resolved afresh at every attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Everything the node needs to know, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Command-line PEERs: members to join through; may be empty.
    pub peers: Vec<PeerAddr>,
    /// `None` with `--no-listen`.
    pub listen: Option<SocketAddr>,
    pub name: String,
    pub format: Format,
    pub wait_peers: usize,
    pub exit_on_eof: bool,
    pub max_peers: usize,
    pub max_frame: usize,
    /// `--degree`: connections to keep (≤ `max_peers`).
    pub degree: usize,
    /// `--ttl`: links a message of ours may cross.
    pub ttl: u8,
    /// `!--no-relay`: forward what we receive.
    pub relay: bool,
    pub peer_cache: Option<PathBuf>,
    /// `--discover`'s multicast group and port; `None` without `--discover`.
    pub discover: Option<SocketAddr>,
    /// `--advertise`, as given (a host name is resolved at start).
    pub advertise: Option<PeerAddr>,
    pub wait_members: usize,
    /// `--window` in bytes (≥ `max_frame` + a message header).
    pub window: usize,
    pub keepalive: Duration,
    pub stall_timeout: Duration,
    pub connect_timeout: Option<Duration>,
    pub stats: Option<Duration>,
    pub log_level: LevelFilter,
    pub log_file: Option<PathBuf>,
    /// `--generate`: print this and do nothing else.
    pub generate: Option<Generate>,
    /// `--secret-file`, `--key`, `--allow`: read at start (`secure`).
    pub secret_file: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub allow: Option<PathBuf>,
    /// `--keygen`: write a key pair and do nothing else.
    pub keygen: Option<PathBuf>,
}

/// Parses and validates a command line (the program name first).
pub fn parse<I, T>(args: I) -> Result<Config, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    // --generate starts nothing, so the rest need not make sense together.
    let starts = cli.generate.is_none() && cli.keygen.is_none();
    if starts && cli.key.is_some() && cli.secret_file.is_none() && cli.allow.is_none() {
        return Err(usage(
            "--key needs --secret-file or --allow: a key alone encrypts nothing".to_owned(),
        ));
    }
    if starts && cli.wait_peers > cli.max_peers {
        return Err(usage(format!(
            "--wait-peers {} can never be reached with --max-peers {}",
            cli.wait_peers, cli.max_peers
        )));
    }
    let finds_members = !cli.peers.is_empty() || cli.peer_cache.is_some() || cli.discover;
    if starts && cli.no_listen && !finds_members {
        return Err(usage(
            "nothing to do: --no-listen and no PEER to dial \
             (nor --peer-cache or --discover to find one)"
                .to_owned(),
        ));
    }
    let degree = cli.degree.unwrap_or(DEFAULT_DEGREE.min(cli.max_peers));
    if starts && degree > cli.max_peers {
        return Err(usage(format!(
            "--degree {degree} needs --max-peers of at least {degree} (it is {})",
            cli.max_peers
        )));
    }
    let window_min = window_min(cli.max_frame);
    let window = cli.window.unwrap_or(DEFAULT_WINDOW.max(window_min));
    if starts && window < window_min {
        return Err(usage(format!(
            "--window {window} is smaller than one message: with --max-frame {} it must be \
             at least {window_min} (the largest message plus its header)",
            cli.max_frame
        )));
    }
    Ok(Config {
        listen: (!cli.no_listen).then_some(cli.listen),
        name: cli.name.unwrap_or_else(host_name),
        peers: cli.peers,
        format: cli.format,
        wait_peers: cli.wait_peers as usize,
        exit_on_eof: cli.exit_on_eof,
        max_peers: cli.max_peers as usize,
        max_frame: cli.max_frame as usize,
        degree: degree as usize,
        ttl: cli.ttl,
        relay: !cli.no_relay,
        peer_cache: cli.peer_cache,
        discover: cli.discover.then_some(cli.discover_addr),
        advertise: cli.advertise,
        wait_members: cli.wait_members as usize,
        // ≤ MAX_WINDOW; a 32-bit target cannot hold more than usize::MAX.
        window: usize::try_from(window).unwrap_or(usize::MAX),
        keepalive: Duration::from_secs(cli.keepalive),
        stall_timeout: Duration::from_secs(cli.stall_timeout),
        connect_timeout: cli.connect_timeout.map(Duration::from_secs),
        stats: cli.stats.map(Duration::from_secs),
        log_level: match (cli.quiet, cli.verbose) {
            (true, _) => LevelFilter::Warn,
            (false, 0) => LevelFilter::Info,
            (false, 1) => LevelFilter::Debug,
            (false, _) => LevelFilter::Trace,
        },
        log_file: cli.log_file,
        generate: cli.generate,
        secret_file: cli.secret_file,
        key: cli.key,
        allow: cli.allow,
        keygen: cli.keygen,
    })
}

fn usage(message: String) -> clap::Error {
    Cli::command().error(ErrorKind::ArgumentConflict, message)
}

fn parse_peer(s: &str) -> Result<PeerAddr, String> {
    const FORM: &str = "expected HOST:PORT, e.g. host2:7117, 10.0.0.2:7117 or [::1]:7117";
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, port) = rest
            .split_once("]:")
            .ok_or_else(|| format!("missing ']:PORT' after the IPv6 address; {FORM}"))?;
        ip.parse::<Ipv6Addr>()
            .map_err(|_| format!("'{ip}' is not an IPv6 address"))?;
        (ip, port)
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("missing port; {FORM}"))?;
        if host.contains(':') {
            return Err(format!("an IPv6 address needs brackets: [{host}]:{port}"));
        }
        (host, port)
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("'{host}' is not a host name or address; {FORM}"));
    }
    let port = match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("'{port}' is not a port (1-65535)")),
        Ok(port) => port,
    };
    Ok(PeerAddr {
        host: host.to_owned(),
        port,
    })
}

/// `--advertise`: a HOST:PORT like a PEER. An unspecified IP (0.0.0.0 or
/// [::]) keeps the default's "the address each neighbour sees", with this
/// port (for a port forwarded to ours).
fn parse_advertise(s: &str) -> Result<PeerAddr, String> {
    parse_peer(s)
}

/// `--discover-addr`: an IP multicast group and a port.
fn parse_discover_addr(s: &str) -> Result<SocketAddr, String> {
    const FORM: &str = "expected GROUP:PORT, e.g. 239.255.71.17:7117 or [ff12::7117]:7117";
    let addr: SocketAddr = s.parse().map_err(|_| format!("'{s}': {FORM}"))?;
    if !addr.ip().is_multicast() {
        return Err(format!(
            "{} is not a multicast group (IPv4 224.0.0.0/4 or IPv6 ff00::/8); {FORM}",
            addr.ip()
        ));
    }
    if addr.port() == 0 {
        return Err(format!("'0' is not a port (1-65535); {FORM}"));
    }
    Ok(addr)
}

/// A size in bytes: a number with an optional K, M or G (powers of 1024;
/// `KiB`, `MB` and lower case are accepted too).
fn parse_bytes(s: &str) -> Result<u64, String> {
    const FORM: &str = "expected a number of bytes, optionally with K, M or G (x1024), e.g. 4M";
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("unknown unit '{unit}'; {FORM}")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size; {FORM}"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

fn parse_max_frame(s: &str) -> Result<u32, String> {
    let n = parse_bytes(s)?;
    match u32::try_from(n) {
        Ok(n) if (1..=MAX_FRAME_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!("{n} is not in 1..={MAX_FRAME_LIMIT} (1G)")),
    }
}

fn parse_window(s: &str) -> Result<u64, String> {
    let n = parse_bytes(s)?;
    if n > MAX_WINDOW {
        return Err(format!(
            "{n} is more than the largest window, {MAX_WINDOW} (4G)"
        ));
    }
    Ok(n)
}

/// The smallest `--window` that lets the largest message through.
pub fn window_min(max_frame: u32) -> u64 {
    u64::from(max_frame) + frame::MSG_HEADER_LEN as u64
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    s.parse().map_err(|_| {
        "expected IP:PORT (e.g. 0.0.0.0:7117, 127.0.0.1:0, [::]:7117) or a port number".to_owned()
    })
}

fn parse_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("a name cannot be empty".to_owned());
    }
    if s.len() > MAX_NAME_LEN {
        return Err(format!(
            "a name is at most {MAX_NAME_LEN} bytes, this one is {}",
            s.len()
        ));
    }
    match frame::name_problem(s) {
        Some(problem) => Err(format!(
            "{problem}: names are printed at the start of lines (NAME> message), \
             so they cannot contain control characters, U+2028, U+2029 or '>'"
        )),
        None => Ok(s.to_owned()),
    }
}

/// The machine's host name, for `--name`'s default.
fn host_name() -> String {
    let from_env = || {
        std::env::var("COMPUTERNAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .ok()
    };
    let from_file = || {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|path| std::fs::read_to_string(path).ok())
    };
    from_file()
        .or_else(from_env)
        .map(|name| sanitise_name(name.trim()))
        .and_then(|name| parse_name(&name).ok())
        .unwrap_or_else(|| "peercat".to_owned())
}

/// A host name with the characters a node name may not hold left out.
fn sanitise_name(name: &str) -> String {
    let kept = name
        .chars()
        .filter(|&c| frame::name_char_problem(c).is_none());
    frame::truncate_utf8(&kept.collect::<String>(), MAX_NAME_LEN).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Config, clap::Error> {
        parse(std::iter::once("peercat").chain(args.iter().copied()))
    }

    fn error_text(args: &[&str]) -> String {
        let err = parse_args(args).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        err.to_string()
    }

    #[test]
    fn defaults_match_the_documentation() {
        let c = parse_args(&[]).unwrap();
        assert_eq!(c.listen, Some("0.0.0.0:7117".parse().unwrap()));
        assert_eq!(c.format, Format::Plain);
        assert_eq!(c.max_peers, 64);
        assert_eq!(c.max_frame, 1_048_576);
        assert_eq!(c.keepalive, Duration::from_secs(5));
        assert_eq!(c.stall_timeout, Duration::from_secs(10));
        assert_eq!(c.wait_peers, 0);
        assert_eq!((c.connect_timeout, c.stats), (None, None));
        assert!(!c.exit_on_eof && c.peers.is_empty() && !c.name.is_empty());
        assert_eq!(c.log_level, LevelFilter::Info);
        assert_eq!((c.degree, c.ttl, c.relay), (4, 16, true));
        assert_eq!((c.window, c.wait_members), (4 << 20, 0));
        assert_eq!((c.discover, c.peer_cache, c.advertise), (None, None, None));
    }

    #[test]
    fn every_mesh_flag_is_understood() {
        let c = parse_args(&[
            "--degree",
            "3",
            "--ttl",
            "2",
            "--no-relay",
            "--peer-cache",
            "peers.txt",
            "--discover",
            "--discover-addr",
            "[ff12::1]:9000",
            "--advertise",
            "host1.example:7000",
            "--wait-members",
            "9",
            "--window",
            "2M",
        ])
        .unwrap();
        assert_eq!((c.degree, c.ttl, c.relay), (3, 2, false));
        assert_eq!(c.peer_cache, Some(PathBuf::from("peers.txt")));
        assert_eq!(c.discover, Some("[ff12::1]:9000".parse().unwrap()));
        assert_eq!(c.advertise.unwrap().to_string(), "host1.example:7000");
        assert_eq!((c.wait_members, c.window), (9, 2 << 20));
        let c = parse_args(&["--discover"]).unwrap();
        assert_eq!(c.discover, Some("239.255.71.17:7117".parse().unwrap()));
    }

    #[test]
    fn defaults_that_depend_on_other_flags_follow_them() {
        // --max-peers 2 alone must not clash with the default degree.
        assert_eq!(parse_args(&["--max-peers", "2"]).unwrap().degree, 2);
        // A --max-frame over 4M raises the default window to one message.
        let c = parse_args(&["--max-frame", "8M"]).unwrap();
        assert_eq!(c.window as u64, window_min(8 << 20));
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("4M"), Ok(4 << 20));
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("2k"), Ok(2048));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert!(parse_bytes("4X").unwrap_err().contains("unknown unit 'X'"));
        assert!(parse_bytes("M").unwrap_err().contains("is not a size"));
        assert!(parse_bytes("-1").unwrap_err().contains("is not a size"));
        assert!(parse_bytes("99999999999G")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(parse_args(&["--max-frame", "1K"]).unwrap().max_frame, 1024);
    }

    #[test]
    fn bad_mesh_options_say_what_is_wrong() {
        assert!(error_text(&["--degree", "0"]).contains("--degree"));
        assert!(error_text(&["--degree", "65"]).contains("1..=64"));
        assert!(error_text(&["--degree", "5", "--max-peers", "4"])
            .contains("--degree 5 needs --max-peers of at least 5"));
        assert!(error_text(&["--ttl", "0"]).contains("--ttl"));
        assert!(error_text(&["--ttl", "256"]).contains("--ttl"));
        assert!(
            error_text(&["--window", "100", "--max-frame", "100"]).contains("must be at least 131")
        );
        assert!(error_text(&["--window", "5G"]).contains("largest window"));
        // A negative number is a bad value of its flag, not a tip to pass
        // it after `--` (where it would be a PEER; attack40 F7).
        for flag in [
            "--connect-timeout",
            "--wait-members",
            "--ttl",
            "--stall-timeout",
        ] {
            let text = error_text(&[flag, "-1"]);
            assert!(text.contains(&format!("'-1' for '{flag}")), "{text}");
            assert!(!text.contains("-- -1"), "{text}");
        }
        assert!(error_text(&["--max-frame", "2G"]).contains("is not in 1..="));
        assert!(error_text(&["--advertise", "host1"]).contains("missing port"));
        assert!(error_text(&["--advertise", "host1:0"]).contains("is not a port"));
        assert!(
            error_text(&["--discover", "--discover-addr", "10.0.0.1:7117"])
                .contains("not a multicast group")
        );
        assert!(error_text(&["--discover", "--discover-addr", "239.1.1.1"])
            .contains("expected GROUP:PORT"));
        assert!(
            error_text(&["--discover", "--discover-addr", "239.1.1.1:0"]).contains("is not a port")
        );
        assert!(error_text(&["--discover-addr", "239.1.1.1:5"]).contains("--discover"));
        assert!(error_text(&["--wait-members", "lots"]).contains("--wait-members"));
        // A node keeps at most 1024 other live members: more would be
        // waited for forever (attack47 F3).
        assert!(error_text(&["--wait-members", "1025"]).contains("1025 is not in 0..=1024"));
        assert!(error_text(&["--wait-members", "-1"]).contains("-1 is not in 0..=1024"));
        assert!(parse_args(&["--wait-members", "1024"]).is_ok());
    }

    #[test]
    fn the_private_group_flags_are_understood() {
        let c = parse_args(&[
            "--secret-file",
            "t.secret",
            "--key",
            "me.key",
            "--allow",
            "m.txt",
        ])
        .unwrap();
        assert_eq!(c.secret_file, Some(PathBuf::from("t.secret")));
        assert_eq!(c.key, Some(PathBuf::from("me.key")));
        assert_eq!(c.allow, Some(PathBuf::from("m.txt")));
        let c = parse_args(&["--keygen", "me.key"]).unwrap();
        assert_eq!(c.keygen, Some(PathBuf::from("me.key")));
        assert!(error_text(&["--key", "me.key"]).contains("--key needs --secret-file or --allow"));
    }

    #[test]
    fn a_node_without_peers_may_find_them() {
        assert!(parse_args(&["--no-listen", "--discover"]).is_ok());
        assert!(parse_args(&["--no-listen", "--peer-cache", "p"]).is_ok());
    }

    #[test]
    fn every_flag_is_understood() {
        let c = parse_args(&[
            "-l",
            "127.0.0.1:0",
            "-n",
            "alice",
            "-f",
            "json",
            "--wait-peers",
            "2",
            "--exit-on-eof",
            "--max-peers",
            "3",
            "--max-frame",
            "100",
            "--keepalive",
            "1",
            "--stall-timeout",
            "2",
            "--connect-timeout",
            "7",
            "--stats",
            "3",
            "-vv",
            "--log-file",
            "x.log",
            "h:1",
            "[::1]:2",
            "10.0.0.1:3",
        ])
        .unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!((c.name.as_str(), c.format), ("alice", Format::Json));
        assert_eq!((c.wait_peers, c.max_peers, c.max_frame), (2, 3, 100));
        assert!(c.exit_on_eof);
        assert_eq!(c.keepalive, Duration::from_secs(1));
        assert_eq!(c.stall_timeout, Duration::from_secs(2));
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(c.stats, Some(Duration::from_secs(3)));
        assert_eq!(c.log_level, LevelFilter::Trace);
        let peers: Vec<String> = c.peers.iter().map(ToString::to_string).collect();
        assert_eq!(peers, ["h:1", "[::1]:2", "10.0.0.1:3"]);
        assert_eq!(parse_args(&["-q"]).unwrap().log_level, LevelFilter::Warn);
        assert_eq!(parse_args(&["--no-listen", "h:1"]).unwrap().listen, None);
        assert_eq!(
            parse_args(&["-l", "9000"]).unwrap().listen,
            Some("0.0.0.0:9000".parse().unwrap())
        );
    }

    #[test]
    fn bad_peers_say_what_is_wrong() {
        assert!(error_text(&["host2"]).contains("missing port"));
        assert!(error_text(&["host2:0"]).contains("'0' is not a port"));
        assert!(error_text(&["host2:99999"]).contains("'99999' is not a port"));
        assert!(error_text(&["::1:7117"]).contains("needs brackets"));
        assert!(error_text(&["[::1]7117"]).contains("missing ']:PORT'"));
        assert!(error_text(&["[nope]:1"]).contains("not an IPv6 address"));
        assert!(error_text(&[":7117"]).contains("not a host name"));
    }

    #[test]
    fn a_host_name_is_made_a_valid_node_name() {
        assert_eq!(sanitise_name("web>1\u{2028}x\ty"), "web1xy");
        assert_eq!(
            parse_name(&sanitise_name(">>")).ok(),
            None,
            "empty: falls back"
        );
        assert!(parse_name(&host_name()).is_ok());
    }

    #[test]
    fn bad_options_are_usage_errors() {
        assert!(error_text(&["--max-frame", "0"]).contains("--max-frame"));
        assert!(error_text(&["--max-peers", "0"]).contains("--max-peers"));
        assert!(error_text(&["--keepalive", "0"]).contains("--keepalive"));
        assert!(error_text(&["--format", "xml"]).contains("xml"));
        assert!(error_text(&["-l", "nowhere"]).contains("expected IP:PORT"));
        assert!(error_text(&["-n", ""]).contains("cannot be empty"));
        assert!(error_text(&["-n", "a\tb"]).contains("control characters"));
        assert!(error_text(&["-n", "a>b"]).contains("contains '>'"));
        assert!(error_text(&["-n", "a\u{2028}b"]).contains("separator"));
        assert!(error_text(&["-n", "a\u{85}b"]).contains("control characters"));
        assert!(error_text(&["--wait-peers", "5", "--max-peers", "4"]).contains("never be reached"));
        assert!(error_text(&["--no-listen"]).contains("nothing to do"));
        assert!(
            error_text(&["--no-listen", "-l", "1.2.3.4:5", "h:1"]).contains("cannot be used with")
        );
        assert!(error_text(&["-q", "-v"]).contains("cannot be used with"));
        assert!(error_text(&["--bogus"]).contains("--bogus"));
    }
}

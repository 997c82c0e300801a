//! The command line, parsed and validated into a [`Config`].
//!
//! Validation only: nothing here opens a socket or a file. Every mistake is a
//! clap error, which prints what was wrong and exits with code 2.

use std::ffi::OsString;
use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
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

#[derive(Parser, Debug)]
#[command(
    name = "peercat",
    version,
    about = "A peer-to-peer broadcast pipe: each line of stdin goes to every peer, \
             each message from a peer goes to stdout.",
    after_help = "Examples:\n  \
        peercat                                  listen on 0.0.0.0:7117, print what peers send\n  \
        tail -f app.log | peercat host2:7117     send lines to host2 (and to anyone who dials us)\n  \
        peercat -l 127.0.0.1:0 --format json     any free port, one JSON object per line\n\n\
        Exit codes: 0 ok (Ctrl-C, --exit-on-eof, stdout closed), 1 runtime error (or \
        --connect-timeout passed), 2 usage error, 3 --exit-on-eof and some peer missed lines \
        (the summary on the log says who), 130 a second signal (more than 0.5 s after the first)."
)]
struct Cli {
    /// host:port to dial (IPv4, [IPv6]:port or a hostname); repeatable
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
    #[arg(long, value_name = "N", default_value_t = 0)]
    wait_peers: u32,

    /// When stdin ends: deliver everything queued, disconnect politely; exit 0 if every
    /// peer confirmed every line, else 3
    #[arg(long)]
    exit_on_eof: bool,

    /// Refuse connections beyond N peers
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_peers: u32,

    /// Largest message accepted or sent, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = 1_048_576,
          value_parser = clap::value_parser!(u32).range(1..=MAX_FRAME_LIMIT as i64))]
    max_frame: u32,

    /// Ping every peer every SECS, busy or idle; drop a peer silent for 3x this
    #[arg(long, value_name = "SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    keepalive: u64,

    /// Drop a peer that accepts no data for SECS while data waits for it
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    stall_timeout: u64,

    /// Give up (exit 1) if --wait-peers peers (at least one) are not
    /// connected within SECS; with --exit-on-eof, also when no peer has been
    /// connected for SECS while lines wait (exit 3) [default: wait forever]
    #[arg(long, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    connect_timeout: Option<u64>,

    /// Log a one-line summary of traffic every SECS, and totals at exit
    #[arg(long, value_name = "SECS",
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
    pub peers: Vec<PeerAddr>,
    /// `None` with `--no-listen`.
    pub listen: Option<SocketAddr>,
    pub name: String,
    pub format: Format,
    pub wait_peers: usize,
    pub exit_on_eof: bool,
    pub max_peers: usize,
    pub max_frame: usize,
    pub keepalive: Duration,
    pub stall_timeout: Duration,
    pub connect_timeout: Option<Duration>,
    pub stats: Option<Duration>,
    pub log_level: LevelFilter,
    pub log_file: Option<PathBuf>,
    /// `--generate`: print this and do nothing else.
    pub generate: Option<Generate>,
}

/// Parses and validates a command line (the program name first).
pub fn parse<I, T>(args: I) -> Result<Config, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    // --generate starts nothing, so the rest need not make sense together.
    let starts = cli.generate.is_none();
    if starts && cli.wait_peers > cli.max_peers {
        return Err(usage(format!(
            "--wait-peers {} can never be reached with --max-peers {}",
            cli.wait_peers, cli.max_peers
        )));
    }
    if starts && cli.no_listen && cli.peers.is_empty() {
        return Err(usage(
            "nothing to do: --no-listen and no PEER to dial".to_owned(),
        ));
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

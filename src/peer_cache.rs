//! `--peer-cache PATH`: the members' addresses a node has known, kept in a
//! small text file so that a restarted node can rejoin without a PEER.
//!
//! One member a line, its node id (16 hex digits) and the address to dial:
//!
//! ```text
//! # peercat peer cache: node id, address to dial
//! 3f2a9c0d18e4b7a1 10.0.0.2:7117
//! 6d1f00aa00bb00cc [fd00::2]:7117
//! 10.0.0.9:7117
//! ```
//!
//! A line may hold just an address (written by hand: the id is learned when
//! it answers). `#` starts a comment. The file is read once at start and
//! rewritten whole (a temporary file, then a rename, so a crash leaves the
//! old file or the new one, never half of one). Both ends are bounded:
//! at most [`MAX_ENTRIES`] entries and [`MAX_FILE_BYTES`] are read, and
//! a line that is not an entry is skipped with a warning naming it.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::frame::NodeId;

/// "1 member address", "52 member addresses", for log lines.
pub fn addresses(n: usize) -> String {
    if n == 1 {
        "1 member address".to_owned()
    } else {
        format!("{n} member addresses")
    }
}

/// Entries kept; more are left out (the first ones win: the caller puts the
/// members it trusts most first).
pub const MAX_ENTRIES: usize = 1024;
/// Bytes of the file read: far more than [`MAX_ENTRIES`] lines need, and a
/// bound on what a wrong PATH (a huge file) can cost.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;
/// Warnings logged for one file; the rest are counted in one line.
const MAX_WARNINGS: usize = 5;

/// A remembered member: its id if known, and where to dial it.
pub type Entry = (Option<NodeId>, SocketAddr);

/// A line of the file that is not an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based, as editors count.
    pub line: usize,
    pub why: String,
}

/// Reads the cache. A missing file is a first run (no entries); a file
/// that exists but cannot be read is an error for the caller to report.
/// Lines that are not entries are logged as warnings and skipped.
pub fn load(path: &Path) -> io::Result<Vec<Entry>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log::info!(
                "peer cache {} does not exist yet; it will be written",
                path.display()
            );
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        log::warn!(
            "peer cache {}: longer than {MAX_FILE_BYTES} bytes; only the start is read",
            path.display()
        );
        bytes.truncate(MAX_FILE_BYTES as usize);
    }
    let (entries, problems) = parse(&String::from_utf8_lossy(&bytes));
    warn_about(path, &problems);
    Ok(entries)
}

fn warn_about(path: &Path, problems: &[Problem]) {
    for line in warnings(path, problems) {
        log::warn!("{line}");
    }
}

/// One warning per skipped line, naming the file and the line, up to
/// `MAX_WARNINGS`, then one that counts the rest.
pub fn warnings(path: &Path, problems: &[Problem]) -> Vec<String> {
    let mut lines: Vec<String> = problems
        .iter()
        .take(MAX_WARNINGS)
        .map(|p| {
            format!(
                "peer cache {} line {}: {}; line skipped",
                path.display(),
                p.line,
                p.why
            )
        })
        .collect();
    if problems.len() > MAX_WARNINGS {
        lines.push(format!(
            "peer cache {}: {} skipped",
            path.display(),
            crate::books::plural((problems.len() - MAX_WARNINGS) as u64, "more line")
        ));
    }
    lines
}

/// The entries of a cache file's text, and the lines that are not entries.
/// An address seen twice counts once (the first line wins).
pub fn parse(text: &str) -> (Vec<Entry>, Vec<Problem>) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(entry) if entries.iter().any(|(_, addr)| *addr == entry.1) => {}
            Ok(_) if entries.len() >= MAX_ENTRIES => problems.push(Problem {
                line: i + 1,
                why: format!("more than {MAX_ENTRIES} entries"),
            }),
            Ok(entry) => entries.push(entry),
            Err(why) => problems.push(Problem { line: i + 1, why }),
        }
    }
    (entries, problems)
}

fn parse_line(line: &str) -> Result<Entry, String> {
    let mut words = line.split_whitespace();
    let (id, addr) = match (words.next(), words.next(), words.next()) {
        (Some(addr), None, None) => (None, addr),
        (Some(id), Some(addr), None) => (Some(parse_id(id)?), addr),
        _ => {
            return Err(format!(
                "expected 'NODE-ID ADDRESS', found '{}'",
                shown(line)
            ))
        }
    };
    let addr: SocketAddr = addr.parse().map_err(|_| {
        format!(
            "'{}' is not an IP:PORT address (e.g. 10.0.0.2:7117 or [fd00::2]:7117)",
            shown(addr)
        )
    })?;
    if addr.ip().is_unspecified() || addr.ip().is_multicast() || addr.port() == 0 {
        return Err(format!("{addr} cannot be dialed"));
    }
    Ok((id, addr))
}

fn parse_id(word: &str) -> Result<NodeId, String> {
    let hex = word.len() == 16 && word.bytes().all(|b| b.is_ascii_hexdigit());
    match hex.then(|| NodeId::from_str_radix(word, 16)) {
        Some(Ok(id)) => Ok(id),
        _ => Err(format!(
            "'{}' is not a node id (16 hex digits)",
            shown(word)
        )),
    }
}

/// A stranger's text, bounded and printable, for a log line.
fn shown(text: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = text
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > MAX {
        out.push_str("...");
    }
    out
}

/// Rewrites the cache with `entries` (the first [`MAX_ENTRIES`]; an address
/// seen twice is written once), atomically: a temporary file beside it,
/// flushed to disk, then renamed over it.
pub fn save(path: &Path, entries: &[(NodeId, SocketAddr)]) -> io::Result<()> {
    let text = render(entries);
    let tmp = temporary_beside(path);
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    })();
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// The file's text for `entries`.
pub fn render(entries: &[(NodeId, SocketAddr)]) -> String {
    let mut text = String::from("# peercat peer cache: node id, address to dial\n");
    let mut written: Vec<SocketAddr> = Vec::new();
    for (id, addr) in entries {
        if written.len() >= MAX_ENTRIES {
            break;
        }
        if written.contains(addr) {
            continue;
        }
        written.push(*addr);
        let _ = writeln!(text, "{id:016x} {addr}");
    }
    text
}

/// `DIR/.NAME.tmp-PID`: in the same directory, so that the rename stays on
/// one file system and is atomic; hidden, and unique per process.
fn temporary_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "peer-cache".into(), |n| n.to_string_lossy());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A file in the temp directory, removed at the end.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str) -> TempFile {
            let name = format!("peercat-cache-{tag}-{}", std::process::id());
            let path = std::env::temp_dir().join(name);
            let _ = fs::remove_file(&path);
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }

    #[test]
    fn what_is_saved_is_loaded() {
        let file = TempFile::new("roundtrip");
        let entries = [
            (0x3f2a_9c0d_18e4_b7a1, addr("10.0.0.2:7117")),
            (1, addr("[fd00::2]:7117")),
            (2, addr("10.0.0.2:7117")), // the same address again: once
        ];
        save(&file.0, &entries).unwrap();
        let text = fs::read_to_string(&file.0).unwrap();
        assert!(text.contains("3f2a9c0d18e4b7a1 10.0.0.2:7117\n"), "{text}");
        assert!(text.contains("0000000000000001 [fd00::2]:7117\n"), "{text}");
        assert_eq!(
            load(&file.0).unwrap(),
            [
                (Some(0x3f2a_9c0d_18e4_b7a1), addr("10.0.0.2:7117")),
                (Some(1), addr("[fd00::2]:7117"))
            ]
        );
    }

    #[test]
    fn a_missing_file_is_a_first_run() {
        let file = TempFile::new("missing");
        assert_eq!(load(&file.0).unwrap(), []);
    }

    #[test]
    fn a_directory_is_an_error_not_a_panic() {
        assert!(load(&std::env::temp_dir()).is_err());
    }

    #[test]
    fn garbage_lines_are_named_and_skipped() {
        let text = "# comment\n\
                    \n\
                    3f2a9c0d18e4b7a1 10.0.0.2:7117  # trailing comment\n\
                    10.0.0.9:7117\n\
                    hello world\n\
                    +3f2a9c0d18e4b7a 10.0.0.3:1\n\
                    0000000000000001 nowhere\n\
                    0000000000000001 0.0.0.0:7117\n\
                    0000000000000001 10.0.0.4:0\n\
                    a b c\n\
                    \u{1b}[31m\n";
        let (entries, problems) = parse(text);
        assert_eq!(
            entries,
            [
                (Some(0x3f2a_9c0d_18e4_b7a1), addr("10.0.0.2:7117")),
                (None, addr("10.0.0.9:7117"))
            ]
        );
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(problems[0].why, "'hello' is not a node id (16 hex digits)");
        assert!(
            problems[2].why.contains("'nowhere' is not an IP:PORT"),
            "{:?}",
            problems[2]
        );
        assert_eq!(problems[3].why, "0.0.0.0:7117 cannot be dialed");
        assert_eq!(problems[4].why, "10.0.0.4:0 cannot be dialed");
        assert!(problems[5].why.starts_with("expected 'NODE-ID ADDRESS'"));
        assert!(
            !problems[6].why.contains('\u{1b}'),
            "escapes are not logged"
        );
    }

    #[test]
    fn warnings_name_the_file_and_the_line_and_are_bounded() {
        let (_, problems) = parse("ok 1.2.3.4:5\n1.2.3.4:5\n".repeat(10).as_str());
        let lines = warnings(Path::new("peers.txt"), &problems);
        assert_eq!(lines.len(), MAX_WARNINGS + 1);
        assert_eq!(
            lines[0],
            "peer cache peers.txt line 1: 'ok' is not a node id (16 hex digits); line skipped"
        );
        assert_eq!(
            lines[1],
            "peer cache peers.txt line 3: 'ok' is not a node id (16 hex digits); line skipped"
        );
        assert_eq!(
            lines[MAX_WARNINGS],
            "peer cache peers.txt: 5 more lines skipped"
        );
    }

    #[test]
    fn counts_read_as_english() {
        let (_, problems) = parse("x\n".repeat(MAX_WARNINGS + 1).as_str());
        let lines = warnings(Path::new("p"), &problems);
        assert_eq!(lines[MAX_WARNINGS], "peer cache p: 1 more line skipped");
        assert_eq!(addresses(1), "1 member address");
        assert_eq!(addresses(52), "52 member addresses");
    }

    #[test]
    fn binary_junk_never_panics() {
        let junk: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let (entries, _) = parse(&String::from_utf8_lossy(&junk));
        assert!(entries.is_empty());
    }

    #[test]
    fn both_ends_are_bounded() {
        let many: Vec<(NodeId, SocketAddr)> = (0..2000u16)
            .map(|i| {
                (
                    u64::from(i),
                    SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7117)),
                )
            })
            .collect();
        let text = render(&many);
        assert_eq!(text.lines().count(), 1 + MAX_ENTRIES);
        let doubled = format!("{text}{}", text.replace("7117", "7118"));
        let (entries, problems) = parse(&doubled);
        assert_eq!(entries.len(), MAX_ENTRIES);
        assert_eq!(problems.len(), MAX_ENTRIES);
        assert!(problems[0].why.contains("more than 1024 entries"));
    }

    #[test]
    fn a_huge_file_is_read_only_up_to_the_bound() {
        let file = TempFile::new("huge");
        let mut text = "10.0.0.1:7117\n".to_owned();
        text.push_str(&"#".repeat(2 * MAX_FILE_BYTES as usize));
        fs::write(&file.0, text).unwrap();
        assert_eq!(load(&file.0).unwrap(), [(None, addr("10.0.0.1:7117"))]);
    }

    #[test]
    fn a_failed_save_leaves_the_old_file_and_no_temporary() {
        let file = TempFile::new("keep");
        save(&file.0, &[(1, addr("10.0.0.1:1"))]).unwrap();
        // A directory where the file should go: the rename fails.
        let dir = TempFile::new("dir");
        fs::create_dir(&dir.0).unwrap();
        let err = save(&dir.0, &[(2, addr("10.0.0.2:2"))]);
        assert!(err.is_err());
        assert!(!temporary_beside(&dir.0).exists());
        let _ = fs::remove_dir(&dir.0);
        assert_eq!(load(&file.0).unwrap(), [(Some(1), addr("10.0.0.1:1"))]);
        // Saving over an existing file replaces it.
        save(&file.0, &[(3, addr("10.0.0.3:3"))]).unwrap();
        assert_eq!(load(&file.0).unwrap(), [(Some(3), addr("10.0.0.3:3"))]);
    }
}

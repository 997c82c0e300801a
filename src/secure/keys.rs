//! Key material as text: 32-byte keys in base64 or hex, the key files of
//! `--keygen`/`--key`, and the `--allow` list. Pure parsing, plus the few
//! functions that read and write the files.
//!
//! base64 and hex are written here by hand (60 lines) rather than pulled in
//! as crates: a key is 32 bytes, and nothing else in peercat needs either.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;

/// A Curve25519 key, public or private.
pub type Key = [u8; KEY_LEN];
pub const KEY_LEN: usize = 32;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (44 characters for a key).
pub fn to_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A 32-byte key from 64 hex digits or 44 base64 characters (standard or
/// URL-safe alphabet, padding optional).
pub fn parse_key(text: &str) -> Result<Key, String> {
    let bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|c| c.is_ascii_hexdigit()) {
        from_hex(text)
    } else {
        from_base64(text).ok_or_else(|| {
            format!(
                "'{}' is not a key: expected 44 base64 characters or 64 hex digits",
                shorten(text)
            )
        })?
    };
    bytes.try_into().map_err(|bytes: Vec<u8>| {
        format!(
            "'{}' is {} bytes, a key is {KEY_LEN}",
            shorten(text),
            bytes.len()
        )
    })
}

fn from_hex(text: &str) -> Vec<u8> {
    let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    text.as_bytes()
        .chunks(2)
        .map(|pair| digit(pair[0]) << 4 | digit(pair[1]))
        .collect()
}

fn from_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // Leftover bits must be zero padding, and a lone 6 bits is no byte.
    (bits < 6 && acc & ((1 << bits) - 1) == 0).then_some(out)
}

/// At most 20 characters of a stranger's text, for an error message.
fn shorten(text: &str) -> String {
    let mut s: String = text.chars().take(20).collect();
    if s.len() < text.len() {
        s.push_str("...");
    }
    s.escape_debug().to_string()
}

/// One member of an `--allow` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub key: Key,
    /// The name after the key, if any (for the log).
    pub name: Option<String>,
    /// Where in the file (1-based), for warnings.
    pub line: usize,
}

/// A line of an `--allow` file that is not a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Parses an `--allow` file: one key per line (base64 or hex), an optional
/// name after it, blank lines and `#` comments ignored.
pub fn parse_allow(text: &str) -> Result<Vec<Allowed>, BadLine> {
    let mut allowed = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (key, name) = match line.split_once(char::is_whitespace) {
            Some((key, name)) => (key, Some(name.trim().to_owned())),
            None => (line, None),
        };
        let bad = |reason| BadLine {
            line: i + 1,
            reason,
        };
        let key = parse_key(key).map_err(bad)?;
        if super::is_low_order(&key) {
            return Err(bad(weak_key(&key)));
        }
        allowed.push(Allowed {
            key,
            name,
            line: i + 1,
        });
    }
    Ok(allowed)
}

/// Why a low-order key is refused.
fn weak_key(key: &Key) -> String {
    format!(
        "'{}' is a low-order (weak) key such as all zeros: anyone could claim it \
         without a private key",
        shorten(&to_base64(key))
    )
}

/// The first line of the files `--keygen` writes: what the file is, and
/// the node id (as the log shows it) the key stands for.
const PRIVATE_HEADER: &str = "# peercat private key (keep it secret) of node";
const PUBLIC_HEADER: &str = "# peercat public key of node";

/// Reads a private key file written by `--keygen`: its header line, then
/// one key in base64 or hex (`#` comments aside). Anything else is refused,
/// naming what it looks like: a public key given as `--key` (a `.pub` file,
/// or its key line copied alone, which no one can tell from a private key)
/// would silently become another identity.
pub fn read_private(path: &Path) -> Result<Key, String> {
    let text = super::read_bounded_text(path, super::MAX_KEY_FILE)
        .map_err(|e| format!("cannot read key file {}: {}", path.display(), describe(&e)))?;
    let is_pub = path.extension().is_some_and(|e| e == "pub");
    if is_pub || text.trim_start().starts_with(PUBLIC_HEADER) {
        return Err(format!(
            "--key {} is a public key file; give the private key (the file --keygen wrote \
             without .pub)",
            path.display()
        ));
    }
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    if !is_private_key_file(&text) {
        return Err(format!(
            "--key {} is not a private key file (it does not start with \"{PRIVATE_HEADER}\"): \
             it looks like {}; give the file --keygen wrote",
            path.display(),
            looks_like(lines.clone().count(), lines.next())
        ));
    }
    let key = match (lines.next(), lines.next()) {
        (Some(line), None) => parse_key(line),
        (None, _) => Err("it holds no key".to_owned()),
        (Some(_), Some(_)) => {
            Err("it holds more than one line: a key file holds one key".to_owned())
        }
    }
    .map_err(|e| format!("key file {}: {e}", path.display()))?;
    if key == [0; KEY_LEN] {
        return Err(format!(
            "key file {}: an all-zero private key is no secret",
            path.display()
        ));
    }
    Ok(key)
}

/// What a file that is no private key file looks like, from its lines
/// (comments aside): how many, and the first.
fn looks_like(count: usize, first: Option<&str>) -> String {
    match (count, first) {
        (0, _) | (_, None) => "an empty file".to_owned(),
        (1, Some(line)) if parse_key(line).is_ok() => {
            "a bare key line, as in a .pub file or an --allow list (a key without the header \
             could be anyone's public key)"
                .to_owned()
        }
        (1, Some(line)) => format!("one line of text, '{}'", shorten(line)),
        (n, Some(line)) if parse_allow_line(line) => {
            format!("a list of {n} keys (an --allow list?)")
        }
        (n, Some(line)) => format!("{n} lines of text, the first '{}'", shorten(line)),
    }
}

/// Whether `line` is an `--allow` line: a key, maybe followed by a name.
fn parse_allow_line(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|k| parse_key(k).is_ok())
}

/// Whether an `--allow` file is a private key file `--keygen` wrote.
pub fn is_private_key_file(text: &str) -> bool {
    text.trim_start().starts_with(PRIVATE_HEADER)
}

/// Writes a new key pair: `path` (private, mode 0600, created new) and
/// `path.pub`, each headed by a comment naming the node id (`fingerprint`).
/// Existing files are never overwritten, and a failure leaves neither.
pub fn write_pair(
    path: &Path,
    private: &Key,
    public: &Key,
    fingerprint: &str,
) -> Result<(), String> {
    if path.extension().is_some_and(|e| e == "pub") {
        return Err(format!(
            "--keygen {}: the private key would go to a file named like a public key (the \
             public one goes to PATH.pub); give the path without .pub",
            path.display()
        ));
    }
    let public_path = pub_path(path);
    let write = |p: &Path, text: String, private: bool| {
        create_new(p, private)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .map_err(|e| match std::fs::metadata(p) {
                Ok(meta) if meta.is_dir() => {
                    format!("cannot write {}: it is a directory", p.display())
                }
                _ => format!("cannot write {}: {}", p.display(), describe(&e)),
            })
    };
    for p in [path, &public_path] {
        // symlink_metadata: a dangling symlink exists too.
        if std::fs::symlink_metadata(p).is_ok() {
            let what = if p.is_dir() { "a directory" } else { "a file" };
            return Err(format!(
                "{} already exists ({what}); not overwriting it with a key",
                p.display()
            ));
        }
    }
    let private_text = format!("{PRIVATE_HEADER} {fingerprint}\n{}\n", to_base64(private));
    write(path, private_text, true)?;
    let public_text = format!("{PUBLIC_HEADER} {fingerprint}\n{}\n", to_base64(public));
    write(&public_path, public_text, false).inspect_err(|_| {
        // Half a pair is no use, and a stray private key is a risk.
        let _ = std::fs::remove_file(path);
    })
}

/// `PATH.pub`.
pub fn pub_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    name.into()
}

fn create_new(path: &Path, private: bool) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    options.open(path)
}

fn describe(e: &io::Error) -> String {
    crate::wire::describe(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_the_standard() {
        assert_eq!(to_base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(to_base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(to_base64(b"foob"), "Zm9vYg==");
        for n in 0..40u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(from_base64(&to_base64(&bytes)), Some(bytes));
        }
        assert_eq!(from_base64("Zm9vYg"), Some(b"foob".to_vec()));
        assert_eq!(from_base64("Zm9vYh=="), None, "non-zero padding bits");
        assert_eq!(from_base64("Z"), None);
    }

    #[test]
    fn a_key_is_read_in_base64_or_hex() {
        let key: Key = std::array::from_fn(|i| i as u8 * 7);
        assert_eq!(parse_key(&to_base64(&key)), Ok(key));
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_key(&hex), Ok(key));
        assert_eq!(parse_key(&hex.to_uppercase()), Ok(key));
        assert!(parse_key("abc")
            .unwrap_err()
            .contains("is 2 bytes, a key is 32"));
        assert!(parse_key("not a key!")
            .unwrap_err()
            .contains("is not a key"));
    }

    #[test]
    fn an_allow_list_takes_names_and_comments_and_names_bad_lines() {
        let a = to_base64(&[1; 32]);
        let b: String = [2u8; 32].iter().map(|b| format!("{b:02x}")).collect();
        let text = format!("# members\n\n{a} alice laptop\n  {b}   # bob\n");
        let list = parse_allow(&text).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].key, [1; 32]);
        assert_eq!(list[0].name.as_deref(), Some("alice laptop"));
        assert_eq!((list[1].key, list[1].name.as_deref()), ([2; 32], None));
        let e = parse_allow(&format!("{a}\n# ok\nbogus-key carol\n")).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e
            .to_string()
            .starts_with("line 3: 'bogus-key' is not a key"));
        let e = parse_allow("AAAA\n").unwrap_err();
        assert_eq!(e.to_string(), "line 1: 'AAAA' is 3 bytes, a key is 32");
    }

    #[test]
    fn a_low_order_key_is_no_member() {
        let zeros = "0".repeat(64);
        let one = format!("01{}", "0".repeat(62));
        for weak in [to_base64(&[0; 32]), zeros, one] {
            let text = format!("{} alice\n{weak} placeholder\n", to_base64(&[9; 32]));
            let e = parse_allow(&text).unwrap_err();
            assert_eq!(e.line, 2);
            assert!(e.reason.contains("low-order"), "{e}");
        }
    }

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("peercat-keys-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_pair_that_cannot_be_written_whole_leaves_no_private_key() {
        let dir = scratch("half");
        // A name the file system takes, whose .pub is one byte too long.
        let path = dir.join("k".repeat(252));
        let e = write_pair(&path, &[1; 32], &[2; 32], "0123456789abcdef").unwrap_err();
        assert!(e.contains(".pub"), "{e}");
        assert!(!path.exists(), "the private key was left behind");
        let e = write_pair(&dir, &[1; 32], &[2; 32], "0123456789abcdef").unwrap_err();
        assert!(e.contains("a directory"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_public_key_file_is_no_private_key() {
        let dir = scratch("pub");
        let path = dir.join("me.key");
        write_pair(&path, &[1; 32], &[2; 32], "0123456789abcdef").unwrap();
        assert_eq!(read_private(&path), Ok([1; 32]));
        let e = read_private(&pub_path(&path)).unwrap_err();
        assert!(e.contains("is a public key file"), "{e}");
        // Renamed, its header still tells.
        let renamed = dir.join("other");
        std::fs::copy(pub_path(&path), &renamed).unwrap();
        assert!(read_private(&renamed)
            .unwrap_err()
            .contains("public key file"));
        // With its header, any key reads; an all-zero one does not.
        let headed = |key: &str| format!("{PRIVATE_HEADER} 0123456789abcdef\n{key}\n");
        std::fs::write(&renamed, headed(&to_base64(&[3; 32]))).unwrap();
        assert_eq!(read_private(&renamed), Ok([3; 32]));
        std::fs::write(&renamed, headed(&"0".repeat(64))).unwrap();
        assert!(read_private(&renamed).unwrap_err().contains("all-zero"));
        let private = std::fs::read_to_string(&path).unwrap();
        assert!(is_private_key_file(&private));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_a_private_key_file_is_a_private_key_and_the_refusal_says_what_it_was() {
        let dir = scratch("bare");
        let path = dir.join("me.key");
        let refusal = |text: &str| {
            std::fs::write(&path, text).unwrap();
            read_private(&path).unwrap_err()
        };
        // A public key's line without its comment: anyone's key.
        let e = refusal(&format!("{}\n", to_base64(&[2; 32])));
        assert!(
            e.contains("is not a private key file") && e.contains("a bare key line"),
            "{e}"
        );
        let e = refusal(&format!(
            "{} alice\n{} bob\n",
            to_base64(&[2; 32]),
            "ab".repeat(32)
        ));
        assert!(e.contains("a list of 2 keys"), "{e}");
        assert!(refusal("hunter2\n").contains("one line of text, 'hunter2'"));
        assert!(refusal("# just a comment\n").contains("an empty file"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn keygen_refuses_a_path_ending_in_pub() {
        let dir = scratch("keygenpub");
        let path = dir.join("x.pub");
        let e = write_pair(&path, &[1; 32], &[2; 32], "0123456789abcdef").unwrap_err();
        assert!(e.contains("give the path without .pub"), "{e}");
        assert!(!path.exists() && !pub_path(&path).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Private groups: `--secret-file`, `--key`, `--allow` and `--keygen`.
//!
//! With a secret or an allow-list, every link runs a Noise handshake
//! ([`noise`]) before peercat's HELLO, and everything after it travels in
//! encrypted records ([`record`]); [`link`] is the seam the connection
//! threads read and write through, plaintext or encrypted alike. A node's id
//! is then derived from its static public key ([`node_id_of`]), so an id is
//! proven by the handshake instead of claimed in a HELLO.

pub mod keys;
pub mod link;
pub mod noise;
pub mod record;

use std::path::Path;

use snow::params::{DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};

use crate::config::Config;
use crate::frame::NodeId;
use keys::{Allowed, Key, KEY_LEN};

/// What this node holds to run private links.
pub struct Security {
    pub private: Key,
    pub public: Key,
    /// `--secret-file`, hashed: the Noise PSK.
    pub psk: Option<Key>,
    /// `--allow`: the only keys admitted. `None`: any key holding the secret.
    pub allow: Option<Vec<Allowed>>,
    /// Random for each process: tells a second node using our key file
    /// from ourselves (see [`noise`]).
    pub instance: [u8; INSTANCE_LEN],
}

pub const INSTANCE_LEN: usize = 16;

impl Security {
    /// Reads the files `config` names. `Ok(None)`: no `--secret-file` and
    /// no `--allow`, so links are plaintext. Errors name the file (and the
    /// line of an `--allow` file).
    pub fn load(config: &Config) -> Result<Option<Security>, String> {
        if config.secret_file.is_none() && config.allow.is_none() {
            return Ok(None);
        }
        let psk = config.secret_file.as_deref().map(read_secret).transpose()?;
        let allow = config.allow.as_deref().map(read_allow).transpose()?;
        let private = match &config.key {
            Some(path) => {
                // Read first: a public key file given as --key is refused,
                // not told to be chmod-ed.
                let key = keys::read_private(path)?;
                warn_if_readable_by_others(path);
                key
            }
            None => generate_keypair()?.0,
        };
        let security = Security {
            public: public_of(&private),
            private,
            psk,
            allow,
            instance: random_instance()?,
        };
        if let Some(allow) = &config.allow {
            security.warn_about_own_key(allow, config.key.is_some());
        }
        Ok(Some(security))
    }

    /// A key that no `--allow` list can hold, or that is missing from our
    /// own list (which the members usually share), is worth a warning.
    fn warn_about_own_key(&self, allow: &Path, from_file: bool) {
        if !from_file {
            log::warn!(
                "--allow without --key: this node's key is new at every start, so it is on \
                 no member's --allow list and they will refuse it; make one with \
                 `peercat --keygen me.key` and give --key me.key"
            );
        } else if !self.admits(&self.public) {
            log::warn!(
                "our own key (node {}) is not on our --allow list {}: members that share \
                 this list will refuse us",
                fingerprint(&self.public),
                allow.display()
            );
        }
    }

    /// This node's id: derived from its public key.
    pub fn node_id(&self) -> NodeId {
        node_id_of(&self.public)
    }

    /// Whether `key` may join: any key without `--allow`, else a listed one.
    pub fn admits(&self, key: &Key) -> bool {
        self.allow
            .as_ref()
            .map_or(true, |list| list.iter().any(|a| &a.key == key))
    }

    /// The name the allow-list gives `key`, if any.
    pub fn name_of(&self, key: &Key) -> Option<&str> {
        let list = self.allow.as_ref()?;
        list.iter().find(|a| &a.key == key)?.name.as_deref()
    }

    /// The name the allow-list gives the key of node `id`, if any: on a
    /// private link the id is the key's, so this is who the peer proved
    /// to be, whatever name its HELLO claims.
    pub fn listed_name(&self, id: NodeId) -> Option<&str> {
        let list = self.allow.as_ref()?;
        list.iter()
            .find(|a| node_id_of(&a.key) == id)?
            .name
            .as_deref()
    }

    /// A line for the start-up log.
    pub fn describe(&self) -> String {
        let how = match (&self.psk, &self.allow) {
            (Some(_), Some(list)) => {
                format!(
                    "a group secret and an allow-list of {}",
                    keys_count(list.len())
                )
            }
            (Some(_), None) => "a group secret".to_owned(),
            (None, Some(list)) => format!("an allow-list of {}", keys_count(list.len())),
            (None, None) => "nothing".to_owned(),
        };
        format!(
            "private group: every link is encrypted (Noise), admitted by {how}; our key {}",
            fingerprint(&self.public)
        )
    }
}

fn keys_count(n: usize) -> String {
    if n == 1 {
        "1 key".to_owned()
    } else {
        format!("{n} keys")
    }
}

/// BLAKE2s of `parts`, one after another.
pub fn blake2s(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = DefaultResolver
        .resolve_hash(&HashChoice::Blake2s)
        .expect("snow is built with BLAKE2s");
    for part in parts {
        hash.input(part);
    }
    let mut out = [0; 32];
    hash.result(&mut out);
    out
}

/// A node's id under a key: the first 8 bytes of BLAKE2s(public key).
pub fn node_id_of(public: &Key) -> NodeId {
    let hash = blake2s(&[public]);
    u64::from_be_bytes(hash[..8].try_into().expect("8 bytes"))
}

/// A key as the log shows it: the node id it stands for, in hex.
pub fn fingerprint(public: &Key) -> String {
    format!("{:016x}", node_id_of(public))
}

/// Whether `key` is a low-order Curve25519 point (all zeros, one, and the
/// few others of order 1, 2, 4 or 8, in any encoding): a Diffie-Hellman
/// with it gives all zeros whatever the private key, so anyone could
/// "prove" it without a private key. X25519 multiplies by a multiple of 8,
/// so such points, and only they, give zero for any private key.
pub fn is_low_order(key: &Key) -> bool {
    let mut dh = DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .expect("snow is built with Curve25519");
    dh.set(&[0x5a; KEY_LEN]);
    let mut out = [0u8; KEY_LEN];
    dh.dh(key, &mut out).is_err() || out == [0; KEY_LEN]
}

/// The salt of the group secret's derivation: its label and version (v1
/// was one BLAKE2s, see PROTOCOL.md).
const SECRET_LABEL: &[u8] = b"peercat group secret v2";
/// Argon2id's cost: 64 MiB, 3 passes, one lane. About 0.15 s once at start;
/// every guess of someone cracking a weak secret offline costs the same.
const SECRET_KIB: u32 = 64 * 1024;
const SECRET_PASSES: u32 = 3;

/// The group secret's key (the Noise PSK): Argon2id over the file's bytes
/// (any bytes; an empty file is refused, it would be no secret). Slow on
/// purpose: a node this node dials learns enough to test guesses offline.
pub fn derive_psk(secret: &[u8]) -> Key {
    let params = argon2::Params::new(SECRET_KIB, SECRET_PASSES, 1, Some(KEY_LEN))
        .expect("valid Argon2 parameters");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0; KEY_LEN];
    argon
        .hash_password_into(secret, SECRET_LABEL, &mut key)
        .expect("a non-empty secret and a long enough salt");
    key
}

/// Why a secret looks guessable, if it does: short, or typed text.
pub fn weak_secret(secret: &[u8]) -> Option<String> {
    let text = secret.iter().all(|&b| b.is_ascii_graphic() || b == b' ')
        || secret
            .strip_suffix(b"\n")
            .is_some_and(|s| s.iter().all(|&b| b.is_ascii_graphic() || b == b' '));
    if secret.len() < 16 {
        Some(format!("it is only {} bytes", secret.len()))
    } else if text && secret.len() < 32 {
        Some(format!("it is {} bytes of typed text", secret.len()))
    } else {
        None
    }
}

/// The most a secret file may hold: any secret worth having is far smaller.
pub const MAX_SECRET_FILE: u64 = 1 << 20;
/// The most an allow-list may hold (about 300,000 keys).
pub const MAX_ALLOW_FILE: u64 = 16 << 20;
/// The most a key file may hold.
pub const MAX_KEY_FILE: u64 = 64 << 10;

/// Reads a file of at most `limit` bytes: `--secret-file /dev/zero` must be
/// an error, not all of memory.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it is larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// [`read_bounded`] for a text file.
pub fn read_bounded_text(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_bounded(path, limit)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

fn read_secret(path: &Path) -> Result<Key, String> {
    let bytes = read_bounded(path, MAX_SECRET_FILE).map_err(|e| {
        format!(
            "cannot read --secret-file {}: {}",
            path.display(),
            crate::wire::describe(&e)
        )
    })?;
    if bytes.is_empty() {
        return Err(format!("--secret-file {} is empty", path.display()));
    }
    warn_if_readable_by_others(path);
    if let Some(why) = weak_secret(&bytes) {
        log::warn!(
            "--secret-file {} looks weak ({why}): a node this one dials can test guesses \
             offline; make one with: head -c 32 /dev/urandom > {}",
            path.display(),
            path.display()
        );
    }
    Ok(derive_psk(&bytes))
}

fn read_allow(path: &Path) -> Result<Vec<Allowed>, String> {
    let text = read_bounded_text(path, MAX_ALLOW_FILE).map_err(|e| {
        format!(
            "cannot read --allow {}: {}",
            path.display(),
            crate::wire::describe(&e)
        )
    })?;
    if keys::is_private_key_file(&text) {
        return Err(format!(
            "--allow {} is a private key file; list the members' public keys (their .pub files)",
            path.display()
        ));
    }
    let list = keys::parse_allow(&text).map_err(|e| format!("--allow {}, {e}", path.display()))?;
    if let Some(mode) = mode_of(path).filter(|m| m & 0o022 != 0) {
        log::warn!(
            "--allow {} can be changed by {} (mode {mode:o}), who could add their own key; \
             chmod go-w it",
            path.display(),
            others(mode & 0o022)
        );
    }
    let list = without_repeats(path, list);
    if list.is_empty() {
        return Err(format!(
            "--allow {} lists no key: no node could join",
            path.display()
        ));
    }
    Ok(list)
}

/// A key listed twice counts once; the second line is named, since it may
/// be a typo for another member's key.
fn without_repeats(path: &Path, list: Vec<Allowed>) -> Vec<Allowed> {
    let mut kept: Vec<Allowed> = Vec::with_capacity(list.len());
    for allowed in list {
        match kept.iter().find(|k| k.key == allowed.key) {
            Some(first) => log::warn!(
                "--allow {}, line {}: key {} is listed already on line {}; counted once",
                path.display(),
                allowed.line,
                fingerprint(&allowed.key),
                first.line
            ),
            None => kept.push(allowed),
        }
    }
    kept
}

/// The permission bits of `path` (unix; `None` elsewhere or unreadable).
fn mode_of(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .ok()
            .map(|meta| meta.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Who `bits` (the group and other bits of one kind, read or write) let
/// in: "the file's group", "any user", or both.
fn others(bits: u32) -> &'static str {
    match (bits & 0o070 != 0, bits & 0o007 != 0) {
        (true, true) => "its group and any user",
        (true, false) => "the users of its group",
        _ => "any user",
    }
}

/// A secret or private key others can read or change is worth a warning
/// (as ssh warns about its keys), not a stop: read, it lets them in; changed,
/// it makes this node someone else, or no member.
fn warn_if_readable_by_others(path: &Path) {
    let Some(mode) = mode_of(path).filter(|m| m & 0o066 != 0) else {
        return;
    };
    let can = match (mode & 0o044 != 0, mode & 0o022 != 0) {
        (true, true) => format!(
            "can be read by {} and changed by {}",
            others(mode & 0o044),
            others(mode & 0o022)
        ),
        (true, false) => format!("can be read by {}", others(mode & 0o044)),
        _ => format!("can be changed by {}", others(mode & 0o022)),
    };
    log::warn!("{} {can} (mode {mode:o}); chmod 600 it", path.display());
}

/// A random instance id from the OS's randomness.
fn random_instance() -> Result<[u8; INSTANCE_LEN], String> {
    let mut instance = [0; INSTANCE_LEN];
    DefaultResolver
        .resolve_rng()
        .expect("snow is built with getrandom")
        .try_fill_bytes(&mut instance)
        .map_err(|e| format!("cannot get random bytes: {e}"))?;
    Ok(instance)
}

/// A fresh Curve25519 key pair (private, public) from the OS's randomness.
pub fn generate_keypair() -> Result<(Key, Key), String> {
    let pair = snow::Builder::new(PARAMS_XX.parse().expect("valid Noise parameters"))
        .generate_keypair()
        .map_err(|e| format!("cannot generate a key: {e}"))?;
    let private: Key = pair.private[..KEY_LEN].try_into().expect("32 bytes");
    Ok((private, public_of(&private)))
}

/// The public key of a private key.
pub fn public_of(private: &Key) -> Key {
    let mut dh = DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .expect("snow is built with Curve25519");
    dh.set(private);
    dh.pubkey()[..KEY_LEN].try_into().expect("32 bytes")
}

/// `--keygen PATH`: writes a new pair and returns the public key (base64)
/// and its fingerprint (the node id the log shows).
pub fn keygen(path: &Path) -> Result<(String, String), String> {
    let (private, public) = generate_keypair()?;
    let fingerprint = fingerprint(&public);
    keys::write_pair(path, &private, &public, &fingerprint)?;
    Ok((keys::to_base64(&public), fingerprint))
}

/// The Noise protocols: with a group secret, and with keys alone.
pub const PARAMS_PSK: &str = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s";
pub const PARAMS_XX: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_secret_and_allow_files_are_read_only_up_to_their_limit() {
        let dir = std::env::temp_dir().join(format!("peercat-bounded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, vec![b'k'; 100]).unwrap();
        assert_eq!(read_bounded(&path, 100).unwrap().len(), 100);
        let e = read_bounded(&path, 99).unwrap_err().to_string();
        assert!(e.contains("larger than 99 bytes"), "{e}");
        // A device that never ends is cut at the limit, not read to the end.
        let e = read_bounded(Path::new("/dev/zero"), 4096).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_public_key_comes_from_its_private_key_and_names_the_node() {
        let (private, public) = generate_keypair().unwrap();
        assert_eq!(public_of(&private), public);
        let (_, other) = generate_keypair().unwrap();
        assert_ne!(public, other);
        assert_ne!(node_id_of(&public), node_id_of(&other));
        assert_eq!(
            fingerprint(&public),
            format!("{:016x}", node_id_of(&public))
        );
    }

    #[test]
    fn the_group_secret_is_stretched_slowly_and_a_weak_one_is_named() {
        let start = std::time::Instant::now();
        let psk = derive_psk(b"hunter2");
        let took = start.elapsed();
        // Each offline guess costs what a start costs: at least this much
        // even on a fast machine (64 MiB written three times).
        assert!(took >= std::time::Duration::from_millis(20), "{took:?}");
        assert_eq!(psk, derive_psk(b"hunter2"));
        assert_ne!(psk, derive_psk(b"hunter3"));
        assert_ne!(psk, blake2s(&[b"peercat group secret v1\0", b"hunter2"]));
        assert_eq!(weak_secret(b"x").unwrap(), "it is only 1 bytes");
        assert!(weak_secret(b"correct horse battery staple\n")
            .unwrap()
            .contains("typed text"));
        assert_eq!(weak_secret(&[0xa7; 32]), None);
        assert_eq!(
            weak_secret("ab".repeat(32).as_bytes()),
            None,
            "64 hex digits"
        );
    }

    #[test]
    fn blake2s_is_the_standard_one() {
        // RFC 7693, appendix B: BLAKE2s-256("abc").
        let hex: String = blake2s(&[b"abc"])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"
        );
    }
}

//! Session ticket keys: stateless resumption that works from any loop and
//! across restarts and processes that share the key file.
//!
//! # Key file
//!
//! Text, one key a line: 64 hex characters, 32 random bytes (for example
//! `openssl rand -hex 32`). Empty lines and lines starting with `#` are
//! ignored. The first key encrypts new tickets; every key listed still
//! decrypts. A key's id (the first 8 bytes of
//! SHA-256("sluice-tls ticket key id" || key)) is derived, not written, so
//! an id can never be paired with the wrong key. Rotation: add a new first
//! line, reload, and remove the old line once the tickets it encrypted have
//! expired ([`TICKET_LIFETIME`]).
//!
//! # Ticket format
//!
//! `key id (8) || nonce (12) || AES-256-GCM-SIV(ticket state) || tag (16)`,
//! with the key id and a digest of the client-authentication policy as
//! associated data. GCM-SIV because nonces are random and one key may seal
//! billions of tickets between rotations: a repeated nonce then leaks only
//! that two tickets are equal, where plain GCM would leak the key stream.
//! The policy digest makes a ticket issued under one client-certificate
//! policy (no mTLS, another CA, other SPIFFE prefixes) fail to decrypt under
//! another, so the client does a full handshake with full verification
//! instead of resuming an identity the current policy would not accept
//! (rustls leaves that check to the application; see its "Sharing
//! resumption storage between ServerConfigs").

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM_SIV, NONCE_LEN};
use aws_lc_rs::digest;

use crate::TlsError;

/// How long a client may use a ticket (the lifetime announced with it;
/// clients drop older tickets). The server enforces no age itself, as
/// rustls advises: a ticket resumes as long as its key is in the file, so
/// rotation is what bounds how long one session's secrets stay usable.
/// Keep a key at least this long after it stopped being first.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

const SECRET_LEN: usize = 32;
const KEY_ID_LEN: usize = 8;
const TAG_LEN: usize = 16;
const POLICY_LEN: usize = 32;
const HEX_LEN: usize = 2 * SECRET_LEN;

/// The header of a key file sluice creates.
const NEW_FILE_HEADER: &str = "\
# sluice TLS session ticket keys: one key a line, 64 hex characters (32 random bytes).
# The first key encrypts new tickets, every key listed decrypts. To rotate, add a new
# first line and reload (SIGHUP); remove an old line 12 hours after it stopped being first.
";

struct TicketKey {
    id: [u8; KEY_ID_LEN],
    aead: LessSafeKey,
}

/// The ticket keys of one configuration, first one encrypting.
pub(crate) struct TicketKeys {
    keys: Vec<TicketKey>,
}

impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key ids only: they are public (in every ticket), the keys are not.
        f.debug_list()
            .entries(self.keys.iter().map(|k| hex(&k.id)))
            .finish()
    }
}

impl TicketKeys {
    /// One fresh random key: tickets then resume on every loop of this
    /// process, not after a restart.
    pub(crate) fn generate() -> Result<Self, TlsError> {
        let secret = random_secret()?;
        Ok(TicketKeys {
            keys: vec![TicketKey::new(&secret)?],
        })
    }

    /// Loads the key file; creates it (mode 0600, one fresh key) if missing.
    pub(crate) fn load_or_create(path: &Path) -> Result<Self, TlsError> {
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(TlsError::io(path, e)),
        }
    }

    /// Loads the key file, which must exist (a reload never invents keys:
    /// a file removed by mistake would otherwise end every resumption).
    pub(crate) fn load(path: &Path) -> Result<Self, TlsError> {
        let text = fs::read_to_string(path).map_err(|e| TlsError::io(path, e))?;
        Self::parse(&text, path)
    }

    fn create(path: &Path) -> Result<Self, TlsError> {
        let text = format!("{NEW_FILE_HEADER}{}\n", new_ticket_key_line()?);
        // Written whole under a temporary name, then linked into place: a
        // second process starting at the same time either wins the link or
        // reads the complete file of the first, never a half-written one.
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = Path::new(&tmp_name);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            });
        if let Err(e) = written {
            let _ = fs::remove_file(tmp);
            return Err(TlsError::io(path, e));
        }
        let linked = fs::hard_link(tmp, path);
        let _ = fs::remove_file(tmp);
        match linked {
            Ok(()) => Self::parse(&text, path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::load(path),
            Err(e) => Err(TlsError::io(path, e)),
        }
    }

    /// Parses key file text; `path` only names the file in errors.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Self, TlsError> {
        let line_error = |line: usize, problem: String| TlsError::TicketKeyLine {
            path: path.to_owned(),
            line,
            problem,
        };
        let mut keys: Vec<TicketKey> = Vec::new();
        let mut key_lines: Vec<usize> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.len() != HEX_LEN {
                return Err(line_error(
                    number,
                    format!(
                        "expected {HEX_LEN} hex characters (32 bytes), found {}",
                        line.chars().count()
                    ),
                ));
            }
            let secret = decode_hex(line)
                .ok_or_else(|| line_error(number, "not a hex string".to_owned()))?;
            let key = TicketKey::new(&secret)?;
            if let Some(i) = keys.iter().position(|k| k.id == key.id) {
                return Err(line_error(
                    number,
                    format!("the same key as line {}", key_lines[i]),
                ));
            }
            keys.push(key);
            key_lines.push(number);
        }
        if keys.is_empty() {
            return Err(TlsError::NoTicketKey {
                path: path.to_owned(),
            });
        }
        Ok(TicketKeys { keys })
    }

    /// Seals `plain` under the first key. `policy` is bound as associated
    /// data: the ticket opens only under the same policy.
    pub(crate) fn seal(&self, policy: &[u8; POLICY_LEN], plain: &[u8]) -> Option<Vec<u8>> {
        let key = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(KEY_ID_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        ticket.extend_from_slice(&key.id);
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(plain);
        let tag = key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(&key.id, policy)),
                &mut ticket[KEY_ID_LEN + NONCE_LEN..],
            )
            .ok()?;
        ticket.extend_from_slice(tag.as_ref());
        Some(ticket)
    }

    /// Opens a ticket sealed by any of the keys. `ticket` comes from the
    /// client: anything malformed, unknown or forged is `None`.
    pub(crate) fn open(&self, policy: &[u8; POLICY_LEN], ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < KEY_ID_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (id, rest) = ticket.split_at(KEY_ID_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        for key in self.keys.iter().filter(|k| k.id == id) {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut buf = sealed.to_vec();
            if let Ok(plain) =
                key.aead
                    .open_in_place(nonce, Aad::from(associated_data(&key.id, policy)), &mut buf)
            {
                let len = plain.len();
                buf.truncate(len);
                return Some(buf);
            }
        }
        None
    }
}

impl TicketKey {
    fn new(secret: &[u8; SECRET_LEN]) -> Result<Self, TlsError> {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"sluice-tls ticket key id");
        ctx.update(secret);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&ctx.finish().as_ref()[..KEY_ID_LEN]);
        // Only fails for a key of the wrong length, which the type rules out.
        let unbound = UnboundKey::new(&AES_256_GCM_SIV, secret)
            .map_err(|_| TlsError::Setting("AES-256-GCM-SIV key setup failed".to_owned()))?;
        Ok(TicketKey {
            id,
            aead: LessSafeKey::new(unbound),
        })
    }
}

fn associated_data(
    id: &[u8; KEY_ID_LEN],
    policy: &[u8; POLICY_LEN],
) -> [u8; KEY_ID_LEN + POLICY_LEN] {
    let mut aad = [0u8; KEY_ID_LEN + POLICY_LEN];
    aad[..KEY_ID_LEN].copy_from_slice(id);
    aad[KEY_ID_LEN..].copy_from_slice(policy);
    aad
}

/// A fresh key line for the ticket key file (64 hex characters): what an
/// operator adds first to rotate keys.
pub fn new_ticket_key_line() -> Result<String, TlsError> {
    Ok(hex(&random_secret()?))
}

fn random_secret() -> Result<[u8; SECRET_LEN], TlsError> {
    let mut secret = [0u8; SECRET_LEN];
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| TlsError::Random)?;
    Ok(secret)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn decode_hex(text: &str) -> Option<[u8; SECRET_LEN]> {
    let digits = text.as_bytes();
    if digits.len() != HEX_LEN {
        return None;
    }
    let mut out = [0u8; SECRET_LEN];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *byte = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: [u8; POLICY_LEN] = [7; POLICY_LEN];

    fn keys(text: &str) -> TicketKeys {
        TicketKeys::parse(text, Path::new("keys")).unwrap()
    }

    #[test]
    fn first_key_seals_every_key_opens() {
        let (k1, k2) = (
            new_ticket_key_line().unwrap(),
            new_ticket_key_line().unwrap(),
        );
        let old = keys(&k1);
        let rotated = keys(&format!("# new first\n{k2}\n\n{k1}\n"));
        let only_new = keys(&k2);

        let old_ticket = old.seal(&POLICY, b"state").unwrap();
        assert_eq!(rotated.open(&POLICY, &old_ticket).unwrap(), b"state");
        assert!(only_new.open(&POLICY, &old_ticket).is_none());

        let new_ticket = rotated.seal(&POLICY, b"state 2").unwrap();
        assert_eq!(only_new.open(&POLICY, &new_ticket).unwrap(), b"state 2");
        assert!(old.open(&POLICY, &new_ticket).is_none());
    }

    #[test]
    fn tickets_are_bound_to_the_policy_and_tamper_evident() {
        let k = keys(&new_ticket_key_line().unwrap());
        let mut ticket = k.seal(&POLICY, b"state").unwrap();
        assert!(k.open(&[8; POLICY_LEN], &ticket).is_none());
        let last = ticket.len() - 1;
        ticket[last] ^= 1;
        assert!(k.open(&POLICY, &ticket).is_none());
        for len in 0..KEY_ID_LEN + NONCE_LEN + TAG_LEN {
            assert!(k.open(&POLICY, &ticket[..len]).is_none());
        }
        // Same plaintext twice: different nonces, different tickets.
        assert_ne!(k.seal(&POLICY, b"x"), k.seal(&POLICY, b"x"));
    }

    #[test]
    fn bad_lines_are_named() {
        let line = new_ticket_key_line().unwrap();
        let err = |text: &str| {
            TicketKeys::parse(text, Path::new("/etc/k"))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("# c\nabc\n"),
            "/etc/k: line 2: expected 64 hex characters (32 bytes), found 3"
        );
        assert_eq!(
            err(&format!("{line}\n{}\n", "g".repeat(64))),
            "/etc/k: line 2: not a hex string"
        );
        assert_eq!(
            err(&format!("{line}\n# x\n{line}\n")),
            "/etc/k: line 3: the same key as line 1"
        );
        assert_eq!(
            err("# only comments\n\n"),
            "/etc/k: no ticket key (one key a line: 64 hex characters, 32 random bytes)"
        );
        assert!(!err("é").contains('\n'));
    }

    #[test]
    fn hex_round_trips() {
        let secret = random_secret().unwrap();
        assert_eq!(decode_hex(&hex(&secret)), Some(secret));
        assert_eq!(decode_hex(&hex(&secret).to_uppercase()), Some(secret));
    }
}

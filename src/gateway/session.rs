//! Sealed session ids: the `Mcp-Session-Id` a client sees is the upstream's session id and the
//! backend that issued it, sealed with AES-256-GCM. Any gateway process holding the same key opens
//! it and routes the request, so replicas need no shared store and no sticky load balancing.
//!
//! Token: `base64url(version | key id (4) | nonce (12) | ciphertext+tag)`. The route's path is
//! the AEAD's associated data, so a token issued on one route is refused on every other. The AEAD
//! key is derived once per key (HKDF-SHA256), not per session: sealing costs one AES-GCM pass.
//! The key id is a hash of the key material, so a token names the key that sealed it and keys can
//! rotate: the first key seals, every key given opens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use super::routes::ServerKey;

const VERSION: u8 = 1;
/// The least key material accepted (the AEAD key is 256 bits).
pub const MIN_KEY_BYTES: usize = 32;
/// Longest token accepted: far above any real one (an upstream id of a few hundred bytes), so a
/// huge header is refused before any decoding.
const MAX_TOKEN: usize = 4096;
const SALT: &[u8] = b"hangar-gateway-session-v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("session key: {0} bytes of key material; at least {MIN_KEY_BYTES} are needed")]
    TooShort(usize),
    #[error("session key: the system's random source failed")]
    Random,
}

/// Why a token was not opened. Deliberately coarse: a client learns nothing about which check
/// failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("not a session token of this gateway")]
    Malformed,
    #[error("sealed with a key this gateway does not hold")]
    UnknownKey,
    #[error("token does not open (tampered, or for another route)")]
    Tampered,
}

struct Key {
    id: [u8; 4],
    aead: LessSafeKey,
}

/// What a token holds once opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub backend: ServerKey,
    /// The upstream's own `Mcp-Session-Id`.
    pub upstream: String,
    /// A container server's pod (`IP:PORT`) the session lives on; sealed after the backend as
    /// `NS/NAME#IP:PORT` (names are DNS-1123, so never hold `#`).
    pub endpoint: Option<String>,
}

/// The keys of a gateway process: the first seals, all open.
pub struct Sealer {
    keys: Vec<Key>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: never key material.
        f.debug_struct("Sealer")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

/// Key material as given: a file or variable holding the key as base64 (as
/// `head -c 32 /dev/urandom | base64` writes it), or the raw bytes (as a Kubernetes Secret's
/// value is mounted). Text that decodes to enough bytes is taken as base64.
pub fn key_material(given: &[u8]) -> Vec<u8> {
    let trimmed = given.trim_ascii();
    let b64 = base64::engine::general_purpose::STANDARD;
    match b64.decode(trimmed) {
        Ok(k) if k.len() >= MIN_KEY_BYTES => k,
        _ => given.to_vec(),
    }
}

/// Fresh random key material, for a local gateway started without a key.
pub fn generate_material() -> Result<Vec<u8>, KeyError> {
    let mut k = vec![0u8; MIN_KEY_BYTES];
    SystemRandom::new()
        .fill(&mut k)
        .map_err(|_| KeyError::Random)?;
    Ok(k)
}

struct KeyLen;

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        AES_256_GCM.key_len()
    }
}

impl Sealer {
    /// Keys from their material, the sealing key first.
    pub fn new(materials: &[Vec<u8>]) -> Result<Sealer, KeyError> {
        let mut keys = Vec::with_capacity(materials.len());
        for m in materials {
            if m.len() < MIN_KEY_BYTES {
                return Err(KeyError::TooShort(m.len()));
            }
            let digest = Sha256::digest(m);
            let mut id = [0u8; 4];
            id.copy_from_slice(&digest[..4]);
            let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(m);
            let mut bytes = [0u8; 32];
            prk.expand(&[b"aes-256-gcm"], KeyLen)
                .and_then(|okm| okm.fill(&mut bytes))
                .map_err(|_| KeyError::TooShort(m.len()))?;
            let unbound =
                UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| KeyError::TooShort(m.len()))?;
            keys.push(Key {
                id,
                aead: LessSafeKey::new(unbound),
            });
        }
        if keys.is_empty() {
            return Err(KeyError::TooShort(0));
        }
        Ok(Sealer {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// The key ids, hex: safe to log (a hash prefix of the key, not the key).
    pub fn key_ids(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.id.iter().map(|b| format!("{b:02x}")).collect())
            .collect()
    }

    /// Seals a session for `route` (the route's path).
    pub fn seal(&self, route: &str, s: &Session) -> Option<String> {
        let key = self.keys.first()?;
        let backend = match &s.endpoint {
            Some(e) => format!("{}#{e}", s.backend.id()),
            None => s.backend.id(),
        };
        let len = u16::try_from(backend.len()).ok()?;
        let mut plain = Vec::with_capacity(2 + backend.len() + s.upstream.len() + 16);
        plain.extend_from_slice(&len.to_be_bytes());
        plain.extend_from_slice(backend.as_bytes());
        plain.extend_from_slice(s.upstream.as_bytes());
        let mut nonce = [0u8; 12];
        self.rng.fill(&mut nonce).ok()?;
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(route.as_bytes()),
                &mut plain,
            )
            .ok()?;
        let mut token = Vec::with_capacity(17 + plain.len());
        token.push(VERSION);
        token.extend_from_slice(&key.id);
        token.extend_from_slice(&nonce);
        token.extend_from_slice(&plain);
        Some(URL_SAFE_NO_PAD.encode(token))
    }

    /// Opens a token presented on `route`.
    pub fn open(&self, route: &str, token: &str) -> Result<Session, OpenError> {
        if token.len() > MAX_TOKEN {
            return Err(OpenError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| OpenError::Malformed)?;
        if raw.len() < 1 + 4 + 12 + AES_256_GCM.tag_len() || raw[0] != VERSION {
            return Err(OpenError::Malformed);
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.id == raw[1..5])
            .ok_or(OpenError::UnknownKey)?;
        let nonce =
            Nonce::try_assume_unique_for_key(&raw[5..17]).map_err(|_| OpenError::Malformed)?;
        let mut sealed = raw[17..].to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(route.as_bytes()), &mut sealed)
            .map_err(|_| OpenError::Tampered)?;
        // Sealed by us, so well-formed; checked anyway (never a panic on a token).
        let (len, rest) = plain.split_at_checked(2).ok_or(OpenError::Malformed)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let (backend, upstream) = rest.split_at_checked(len).ok_or(OpenError::Malformed)?;
        let backend = std::str::from_utf8(backend).map_err(|_| OpenError::Malformed)?;
        let (backend, endpoint) = match backend.split_once('#') {
            Some((b, e)) => (b, Some(e.to_string())),
            None => (backend, None),
        };
        let (namespace, name) = backend.split_once('/').ok_or(OpenError::Malformed)?;
        let upstream = String::from_utf8(upstream.to_vec()).map_err(|_| OpenError::Malformed)?;
        Ok(Session {
            backend: ServerKey {
                namespace: namespace.into(),
                name: name.into(),
            },
            upstream,
            endpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            backend: ServerKey {
                namespace: "ns".into(),
                name: "echo".into(),
            },
            upstream: "0123abcd-upstream".into(),
            endpoint: None,
        }
    }

    #[test]
    fn a_pinned_endpoint_is_sealed_with_the_backend() {
        let a = Sealer::new(&[vec![7u8; 32]]).unwrap();
        let s = Session {
            endpoint: Some("10.1.2.3:8080".into()),
            ..session()
        };
        let t = a.seal("/servers/ns/echo/mcp", &s).unwrap();
        assert_eq!(a.open("/servers/ns/echo/mcp", &t).unwrap(), s);
        let t = a.seal("/servers/ns/echo/mcp", &session()).unwrap();
        assert_eq!(a.open("/servers/ns/echo/mcp", &t).unwrap().endpoint, None);
    }

    #[test]
    fn a_token_opens_with_the_same_key_on_the_same_route_only() {
        let a = Sealer::new(&[vec![7u8; 32]]).unwrap();
        let b = Sealer::new(&[vec![7u8; 32]]).unwrap();
        let other = Sealer::new(&[vec![8u8; 32]]).unwrap();
        let t = a.seal("/servers/ns/echo/mcp", &session()).unwrap();
        assert!(t.bytes().all(|c| (0x21..=0x7e).contains(&c)));
        assert_eq!(b.open("/servers/ns/echo/mcp", &t), Ok(session()));
        assert_eq!(
            b.open("/servers/ns/other/mcp", &t),
            Err(OpenError::Tampered)
        );
        assert_eq!(
            other.open("/servers/ns/echo/mcp", &t),
            Err(OpenError::UnknownKey)
        );
        // two seals of one session differ (fresh nonce), both open
        let t2 = a.seal("/servers/ns/echo/mcp", &session()).unwrap();
        assert_ne!(t, t2);
        assert!(a.open("/servers/ns/echo/mcp", &t2).is_ok());
    }

    #[test]
    fn rotation_opens_old_tokens_and_tampering_is_refused() {
        let old = Sealer::new(&[vec![1u8; 32]]).unwrap();
        let t = old.seal("/r", &session()).unwrap();
        let rotated = Sealer::new(&[vec![2u8; 32], vec![1u8; 32]]).unwrap();
        assert_eq!(rotated.open("/r", &t), Ok(session()));
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let bad = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(rotated.open("/r", &bad), Err(OpenError::Tampered));
        for junk in [
            "",
            "x",
            "!!!",
            &"A".repeat(5000),
            "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(rotated.open("/r", junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn key_material_is_base64_or_raw_and_long_enough() {
        let k = vec![9u8; 32];
        let b64 = base64::engine::general_purpose::STANDARD.encode(&k);
        assert_eq!(key_material(format!("{b64}\n").as_bytes()), k);
        assert_eq!(key_material(&k), k);
        assert!(matches!(
            Sealer::new(&[vec![1u8; 16]]),
            Err(KeyError::TooShort(16))
        ));
        assert_eq!(generate_material().unwrap().len(), 32);
    }
}

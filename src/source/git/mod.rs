//! Git repositories as a source of compiler inputs, read with libgit2 (`git2`).
//!
//! Blocking API (libgit2 is synchronous): async callers run [`GitCache::fetch`] inside
//! `spawn_blocking`. Every fetch first lists the remote's refs with the request's credentials (so
//! a cached repository is never read for a request that may not read the remote), resolves the
//! reference to a commit, downloads it only when the cache lacks it (shallow, depth 1, where the
//! transport allows it; forced refspecs, so a force-pushed branch is followed), and reads the
//! tree of that commit straight from the object database: no working tree is checked out.
//!
//! The cache holds one bare repository per remote URL and is bounded in bytes and in number of
//! repositories; the least recently used repositories are evicted first. Credentials are never
//! logged, never written to disk (remotes are anonymous: nothing lands in a git config) and never
//! appear in errors (URL userinfo is stripped and messages are redacted).

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use git2::{
    CertificateCheckStatus, Cred, CredentialType, Direction, ErrorClass, ErrorCode, FetchOptions,
    ObjectType, Oid, RemoteCallbacks, Repository,
};
use sha2::{Digest, Sha256};

use crate::compile::SourceFile;

mod cache;
mod fetch;
mod remote;

pub use cache::GitCache;
use cache::*;
use fetch::*;
use remote::*;

/// Extensions read from a directory of the repository (as from a directory on disk).
pub use super::files::EXTENSIONS;

/// Default bound on the files read from one commit.
pub const DEFAULT_MAX_FILES: usize = 10_000;
/// Default bound on the bytes read from one commit.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;
/// Default bound on the repositories kept in the cache.
pub const DEFAULT_MAX_REPOS: usize = 64;
/// One download may always take this much, even from a cache bounded below it.
const MIN_DOWNLOAD_BYTES: u64 = 64 << 20;
/// Tree entries visited in one commit, wanted or not, before the repository is refused.
const MAX_TREE_ENTRIES: usize = 1_000_000;
/// Default deadline of one fetch (listing, download and reading).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Username sent with a bare token (HTTP basic auth), unless the Secret gives `username`.
pub const TOKEN_USERNAME: &str = "x-access-token";

/// What to read: a repository, a reference in it, and a path in that commit's tree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GitRequest {
    /// `https://`, `http://`, `ssh://`, `git://` or `file://` URL, scp-like `user@host:path`, or a
    /// local path.
    pub url: String,
    /// Branch, tag, `refs/...` name, or full or abbreviated commit SHA. Default: the remote HEAD.
    pub reference: Option<String>,
    /// Directory or file inside the repository. Default: the root.
    pub path: Option<String>,
    pub auth: GitAuth,
}

impl GitRequest {
    pub fn new(url: impl Into<String>) -> Self {
        GitRequest {
            url: url.into(),
            reference: None,
            path: None,
            auth: GitAuth::None,
        }
    }

    /// The request of a discovery source's `git` block (credentials read from its Secret with
    /// [`auth_from_secret_data`]). No `ref`: the remote HEAD; no `path` or `/`: the root.
    pub fn from_source(git: &crate::api::discovery::GitSource, auth: GitAuth) -> Self {
        let some = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "/")
                .map(str::to_string)
        };
        GitRequest {
            url: git.url.clone(),
            reference: some(&git.ref_),
            path: some(&git.path),
            auth,
        }
    }
}

/// Credentials. `Debug` never prints a secret.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum GitAuth {
    #[default]
    None,
    /// HTTP basic auth.
    Basic { username: String, password: String },
    /// An HTTPS token: sent as the basic-auth password of [`TOKEN_USERNAME`].
    Token(String),
    /// An SSH private key (PEM or OpenSSH format), its passphrase, and `known_hosts` lines that
    /// the server's host key must match (without them, libgit2 checks `~/.ssh/known_hosts`).
    SshKey {
        private_key: String,
        passphrase: Option<String>,
        known_hosts: Option<String>,
    },
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitAuth::None => write!(f, "None"),
            GitAuth::Basic { username, .. } => write!(f, "Basic({username:?}, <redacted>)"),
            GitAuth::Token(_) => write!(f, "Token(<redacted>)"),
            GitAuth::SshKey { known_hosts, .. } => write!(
                f,
                "SshKey(<redacted>, known_hosts: {})",
                known_hosts.is_some()
            ),
        }
    }
}

impl GitAuth {
    /// The secret strings, for redaction.
    fn secrets(&self) -> Vec<&str> {
        match self {
            GitAuth::None => vec![],
            GitAuth::Basic { password, .. } => vec![password.as_str()],
            GitAuth::Token(t) => vec![t.as_str()],
            GitAuth::SshKey {
                private_key,
                passphrase,
                ..
            } => {
                let mut v = vec![private_key.as_str()];
                v.extend(passphrase.as_deref());
                v
            }
        }
    }
}

/// The files of one commit.
#[derive(Clone, Debug)]
pub struct Checkout {
    /// Full SHA of the resolved commit.
    pub commit: String,
    /// `.yaml .yml .json .toml` files (or the one file the path names), sorted by path, hidden
    /// files and directories skipped; each named `git+URL@<short-sha>:path/in/repo.yaml`.
    pub files: Vec<SourceFile>,
}

/// Why a fetch failed. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{url}: invalid Git repository URL: {message}")]
    InvalidUrl { url: String, message: String },
    #[error("{url}: remote unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("{url}: authentication failed: {message}")]
    Auth { url: String, message: String },
    #[error("{url}: no branch, tag or commit named {reference:?} in the repository")]
    RefNotFound { url: String, reference: String },
    #[error("{url}@{commit}: no file or directory {path:?} in the repository")]
    PathNotFound {
        url: String,
        commit: String,
        path: String,
    },
    #[error("{url}: {message}")]
    TooLarge { url: String, message: String },
    #[error("{location}: not valid UTF-8 text (is this a binary file?)")]
    NotUtf8 { location: String },
    #[error("{location}: {message}")]
    Ignore { location: String, message: String },
    #[error("Git credentials: {0}")]
    InvalidSecret(String),
    #[error("Git cache {path}: {message}")]
    Io { path: String, message: String },
    #[error("{url}: {message}")]
    Git { url: String, message: String },
}

impl GitError {
    /// CamelCase reason for status conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            GitError::InvalidUrl { .. } => "InvalidURL",
            GitError::Unreachable { .. } => "Unreachable",
            GitError::Auth { .. } => "AuthFailed",
            GitError::RefNotFound { .. } => "RefNotFound",
            GitError::PathNotFound { .. } => "PathNotFound",
            GitError::TooLarge { .. } => "TooLarge",
            GitError::NotUtf8 { .. } | GitError::Ignore { .. } => "InvalidContent",
            GitError::InvalidSecret(_) => "InvalidSecret",
            GitError::Io { .. } => "CacheError",
            GitError::Git { .. } => "GitError",
        }
    }
}

/// Reads credentials from a Secret's data. Keys: `username` + `password` (basic auth); `token`
/// (with an optional `username`, default [`TOKEN_USERNAME`]); `ssh-privatekey` (+ optional
/// `passphrase`, `known_hosts`). Trailing newlines of single-line values are dropped.
pub fn auth_from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<GitAuth, GitError> {
    let text = |k: &str| -> Result<Option<String>, GitError> {
        match data.get(k) {
            None => Ok(None),
            Some(v) => String::from_utf8(v.clone())
                .map(Some)
                .map_err(|_| GitError::InvalidSecret(format!("key {k:?} is not UTF-8 text"))),
        }
    };
    let line = |k: &str| -> Result<Option<String>, GitError> {
        Ok(text(k)?
            .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
            .filter(|s| !s.is_empty()))
    };
    let (username, password, token) = (line("username")?, line("password")?, line("token")?);
    if let Some(private_key) = text("ssh-privatekey")? {
        if password.is_some() || token.is_some() {
            return Err(GitError::InvalidSecret(
                "both `ssh-privatekey` and `password`/`token` are set; keep one kind of credential"
                    .into(),
            ));
        }
        return Ok(GitAuth::SshKey {
            private_key,
            passphrase: line("passphrase")?,
            known_hosts: text("known_hosts")?.filter(|s| !s.trim().is_empty()),
        });
    }
    match (username, password, token) {
        (_, Some(_), Some(_)) => Err(GitError::InvalidSecret(
            "both `password` and `token` are set; keep one".into(),
        )),
        (None, None, Some(t)) => Ok(GitAuth::Token(t)),
        (Some(username), None, Some(password)) | (Some(username), Some(password), None) => {
            Ok(GitAuth::Basic { username, password })
        }
        (None, Some(_), None) => Err(GitError::InvalidSecret(
            "`password` is set without `username`".into(),
        )),
        (Some(_), None, None) => Err(GitError::InvalidSecret(
            "`username` is set without `password` or `token`".into(),
        )),
        (None, None, None) => Err(GitError::InvalidSecret(
            "no credentials: expected `token`, `username` + `password`, or `ssh-privatekey`".into(),
        )),
    }
}

/// `git+URL[#[REF][:PATH]]` as `--catalog` takes it: everything after the first `#` is the
/// fragment (a repository URL never needs `#`), split at its first `:` (a Git ref cannot contain
/// `:`). `None` when `spec` does not start with `git+`.
pub fn parse_catalog_spec(spec: &str) -> Option<Result<GitRequest, GitError>> {
    let rest = spec.strip_prefix("git+")?;
    let (url, fragment) = match rest.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (rest, None),
    };
    let (reference, path) = match fragment.map(|f| f.split_once(':').unwrap_or((f, ""))) {
        None => (None, None),
        Some((r, p)) => (
            Some(r.to_string()).filter(|r| !r.is_empty()),
            Some(p.to_string()).filter(|p| !p.is_empty()),
        ),
    };
    if url.is_empty() {
        return Some(Err(GitError::InvalidUrl {
            url: spec.to_string(),
            message: "no repository URL after `git+`".into(),
        }));
    }
    Some(Ok(GitRequest {
        url: url.to_string(),
        reference,
        path,
        auth: GitAuth::None,
    }))
}

/// A repository's files as compiler inputs for the discovery source `bind` (`NS/NAME`): files
/// holding only catalogs (`servers:`/`providers:` lists) are bound to the source, so its
/// `providerTemplate` applies; every other file holds resources. The controller and
/// `hangar render --fetch-git` both read repositories this way.
pub fn repo_inputs(files: Vec<SourceFile>, bind: &str) -> Vec<crate::compile::InputFile> {
    use crate::compile::{FileRole, InputFile};
    files
        .into_iter()
        .map(|file| {
            let role = if holds_catalogs(&file) {
                FileRole::Catalog {
                    bind: Some(bind.to_string()),
                }
            } else {
                FileRole::Inputs
            };
            InputFile { file, role }
        })
        .collect()
}

fn holds_catalogs(f: &SourceFile) -> bool {
    let mut scratch = crate::compile::Diagnostics::default();
    let loaded = crate::compile::load::load_file(0, &f.path, &f.text, &mut scratch);
    !loaded.docs.is_empty()
        && loaded.docs.iter().all(|d| {
            (d.get("servers").is_some() || d.get("providers").is_some()) && d.get("kind").is_none()
        })
}

/// Where Git repositories are kept (`--catalog git+URL`, `--fetch-git`, the controller's Git
/// sources) unless told otherwise: `$HANGAR_CACHE_DIR/git`, else
/// `$XDG_CACHE_HOME/hangar/git`, else `~/.cache/hangar/git`.
pub fn default_cache_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env("HANGAR_CACHE_DIR") {
        return d.join("git");
    }
    if let Some(d) = env("XDG_CACHE_HOME") {
        return d.join("hangar/git");
    }
    match env("HOME") {
        Some(h) => h.join(".cache/hangar/git"),
        None => std::env::temp_dir().join("hangar-cache/git"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn secret_keys() {
        assert_eq!(
            auth_from_secret_data(&data(&[("token", "abc\n")])).ok(),
            Some(GitAuth::Token("abc".into()))
        );
        assert_eq!(
            auth_from_secret_data(&data(&[("token", "abc"), ("username", "oauth2")])).ok(),
            Some(GitAuth::Basic {
                username: "oauth2".into(),
                password: "abc".into()
            })
        );
        assert_eq!(
            auth_from_secret_data(&data(&[("username", "u"), ("password", "p")])).ok(),
            Some(GitAuth::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n";
        assert_eq!(
            auth_from_secret_data(&data(&[("ssh-privatekey", key), ("known_hosts", "h k v")])).ok(),
            Some(GitAuth::SshKey {
                private_key: key.into(),
                passphrase: None,
                known_hosts: Some("h k v".into())
            })
        );
        for bad in [
            data(&[]),
            data(&[("password", "p")]),
            data(&[("username", "u")]),
            data(&[("token", "t"), ("password", "p"), ("username", "u")]),
            data(&[("ssh-privatekey", key), ("token", "t")]),
        ] {
            let e = auth_from_secret_data(&bad).err();
            assert_eq!(e.as_ref().map(GitError::reason), Some("InvalidSecret"));
        }
        assert!(!format!("{:?}", GitAuth::Token("s3cret".into())).contains("s3cret"));
    }

    #[test]
    fn urls_lose_their_credentials() {
        let r = parse_remote("https://bob:s3cret@example.com/org/repo.git").ok();
        let r = r.as_ref();
        assert_eq!(
            r.map(|r| r.display.as_str()),
            Some("https://example.com/org/repo.git")
        );
        assert_eq!(r.map(|r| r.url.as_str()), r.map(|r| r.display.as_str()));
        assert_eq!(
            r.and_then(|r| r.userinfo.clone()),
            Some(("bob".into(), "s3cret".into()))
        );
        let e = parse_remote("ftp://bob:s3cret@example.com/r").err();
        assert!(e.is_some_and(|e| !e.to_string().contains("s3cret")));
        let ssh = parse_remote("ssh://git@example.com:2222/org/repo.git").ok();
        assert_eq!(
            ssh.and_then(|r| r.ssh_host),
            Some(("example.com".into(), 2222))
        );
        let scp = parse_remote("git@example.com:org/repo.git").ok();
        assert_eq!(
            scp.and_then(|r| r.ssh_host),
            Some(("example.com".into(), 22))
        );
        assert!(parse_remote("/srv/git/repo").is_ok_and(|r| r.local));
        assert!(parse_remote("file:///srv/git/repo").is_ok_and(|r| r.local));
        assert_eq!(
            redact_userinfo("weird://u:p@h/x"),
            "weird://h/x".to_string()
        );
    }

    #[test]
    fn catalog_spec_grammar() {
        let p = |s: &str| {
            parse_catalog_spec(s)
                .and_then(Result::ok)
                .map(|r| (r.url, r.reference, r.path))
        };
        assert_eq!(
            p("git+https://h/r.git"),
            Some(("https://h/r.git".into(), None, None))
        );
        assert_eq!(
            p("git+https://h:8443/r.git#v1.2"),
            Some(("https://h:8443/r.git".into(), Some("v1.2".into()), None))
        );
        assert_eq!(
            p("git+file:///tmp/r#main:catalogs/prod.yaml"),
            Some((
                "file:///tmp/r".into(),
                Some("main".into()),
                Some("catalogs/prod.yaml".into())
            ))
        );
        assert_eq!(
            p("git+git@h:org/r.git#:dir"),
            Some(("git@h:org/r.git".into(), None, Some("dir".into())))
        );
        assert!(parse_catalog_spec("catalog.yaml").is_none());
        assert!(parse_catalog_spec("git+").is_some_and(|r| r.is_err()));
    }

    #[test]
    fn references_resolve_against_the_advertisement() {
        let a = Oid::from_str("1111111111111111111111111111111111111111").ok();
        let b = Oid::from_str("2222222222222222222222222222222222222222").ok();
        let t = Oid::from_str("3333333333333333333333333333333333333333").ok();
        let (Some(a), Some(b), Some(t)) = (a, b, t) else {
            panic!("oids")
        };
        let heads = vec![
            ("HEAD".to_string(), a),
            ("refs/heads/main".to_string(), a),
            ("refs/heads/dev".to_string(), b),
            ("refs/tags/v1".to_string(), t),
            ("refs/tags/v1^{}".to_string(), b),
        ];
        let name = |r: Option<&str>| match resolve_ref(&heads, r) {
            Some(Target::Ref { name, .. }) => name,
            Some(Target::Commit { prefix }) => format!("commit {prefix}"),
            None => "none".into(),
        };
        assert_eq!(name(None), "HEAD");
        assert_eq!(name(Some("dev")), "refs/heads/dev");
        assert_eq!(name(Some("v1")), "refs/tags/v1");
        assert_eq!(name(Some("2222222")), "refs/heads/dev");
        assert_eq!(name(Some("abcdef1")), "commit abcdef1");
        assert_eq!(name(Some("nope")), "none");
        assert_eq!(name(Some("refs/heads/nope")), "none");
    }

    #[test]
    fn known_hosts_lines() {
        use base64::Engine as _;
        let key = b"\x00\x00\x00\x0bssh-ed25519 fake key";
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let known = format!(
            "# comment\ngit.example.com,10.0.0.1 ssh-ed25519 {b64}\n[h]:2222 ssh-ed25519 {b64}\n"
        );
        assert!(known_hosts_match(
            &known,
            "git.example.com",
            22,
            "ssh-ed25519",
            key
        ));
        assert!(known_hosts_match(
            &known,
            "10.0.0.1",
            22,
            "ssh-ed25519",
            key
        ));
        assert!(known_hosts_match(&known, "h", 2222, "ssh-ed25519", key));
        assert!(!known_hosts_match(&known, "h", 22, "ssh-ed25519", key));
        assert!(!known_hosts_match(
            &known,
            "git.example.com",
            22,
            "ssh-rsa",
            key
        ));
        assert!(!known_hosts_match(
            &known,
            "git.example.com",
            22,
            "ssh-ed25519",
            b"other"
        ));
    }

    #[test]
    fn request_from_a_discovery_source() {
        let src = crate::api::discovery::GitSource {
            url: "https://h/r.git".into(),
            ref_: Some("v1".into()),
            path: Some("/".into()),
            secret_ref: None,
        };
        let r = GitRequest::from_source(&src, GitAuth::Token("t".into()));
        assert_eq!(
            (r.url.as_str(), r.reference.as_deref(), r.path.as_deref()),
            ("https://h/r.git", Some("v1"), None)
        );
        assert_eq!(r.auth, GitAuth::Token("t".into()));
    }

    #[test]
    fn cache_keys_are_readable_and_distinct() {
        let a = cache_key("https://h/org/tools.git");
        assert!(a.starts_with("tools-"), "{a}");
        assert_ne!(a, cache_key("https://other/org/tools.git"));
    }
}

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
            GitError::NotUtf8 { .. } => "InvalidContent",
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

/// A remote URL split into what libgit2 is given and what is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Remote {
    /// Handed to libgit2: no password, and no username for http(s).
    url: String,
    /// Shown in file names, errors and logs: no credentials.
    display: String,
    /// Credentials found in an http(s) URL's userinfo.
    userinfo: Option<(String, String)>,
    /// Host and port of an ssh remote (for `known_hosts`).
    ssh_host: Option<(String, u16)>,
    local: bool,
}

fn parse_remote(raw: &str) -> Result<Remote, GitError> {
    let invalid = |m: &str| GitError::InvalidUrl {
        url: redact_userinfo(raw),
        message: m.to_string(),
    };
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(invalid("empty URL"));
    }
    if raw.contains('#') {
        return Err(invalid("`#` is not allowed in a repository URL"));
    }
    if raw.contains("://") {
        let mut u = url::Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
        let scheme = u.scheme().to_string();
        match scheme.as_str() {
            "https" | "http" => {
                let user = percent_decode(u.username());
                let pass = u.password().map(percent_decode);
                let _ = u.set_username("");
                let _ = u.set_password(None);
                let userinfo = match (user.is_empty(), pass) {
                    (true, None) => None,
                    (false, Some(p)) => Some((user, p)),
                    // `https://TOKEN@host/...`: the username is the token.
                    (false, None) => Some((TOKEN_USERNAME.to_string(), user)),
                    (true, Some(p)) => Some((TOKEN_USERNAME.to_string(), p)),
                };
                let s = u.to_string();
                Ok(Remote {
                    url: s.clone(),
                    display: s,
                    userinfo,
                    ssh_host: None,
                    local: false,
                })
            }
            "ssh" | "git" | "file" => {
                let _ = u.set_password(None);
                let host = u.host_str().unwrap_or_default().to_string();
                let port = u.port().unwrap_or(22);
                let s = u.to_string();
                Ok(Remote {
                    url: s.clone(),
                    display: s,
                    userinfo: None,
                    ssh_host: (scheme == "ssh").then_some((host, port)),
                    local: scheme == "file",
                })
            }
            other => Err(invalid(&format!(
                "unsupported scheme {other:?} (use https, http, ssh, git or file)"
            ))),
        }
    } else if let Some((userhost, _)) = raw.split_once(':').filter(|(h, _)| !h.contains('/')) {
        // scp-like `user@host:path`.
        let host = userhost.rsplit('@').next().unwrap_or(userhost);
        if host.is_empty() {
            return Err(invalid("no host before `:`"));
        }
        Ok(Remote {
            url: raw.to_string(),
            display: raw.to_string(),
            userinfo: None,
            ssh_host: Some((host.to_string(), 22)),
            local: false,
        })
    } else {
        Ok(Remote {
            url: raw.to_string(),
            display: raw.to_string(),
            userinfo: None,
            ssh_host: None,
            local: true,
        })
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A URL as it may be shown: userinfo dropped (best effort, for URLs that did not parse).
fn redact_userinfo(raw: &str) -> String {
    match raw.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => raw.to_string(),
            }
        }
        None => raw.to_string(),
    }
}

/// A bounded on-disk cache of bare repositories, one per remote URL.
#[derive(Clone, Debug)]
pub struct GitCache {
    dir: PathBuf,
    max_bytes: u64,
    max_repos: usize,
    max_files: usize,
    max_file_bytes: u64,
    max_download_bytes: Option<u64>,
    timeout: Duration,
    busy: Arc<(Mutex<HashSet<PathBuf>>, Condvar)>,
}

impl GitCache {
    /// A cache in `dir` (created on first use) holding at most `max_bytes` of repositories.
    pub fn new(dir: PathBuf, max_bytes: u64) -> Self {
        GitCache {
            dir,
            max_bytes,
            max_repos: DEFAULT_MAX_REPOS,
            max_files: DEFAULT_MAX_FILES,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_download_bytes: None,
            timeout: DEFAULT_TIMEOUT,
            busy: Arc::default(),
        }
    }

    /// At most this many repositories are kept.
    pub fn with_max_repos(mut self, n: usize) -> Self {
        self.max_repos = n.max(1);
        self
    }

    /// Bounds on what one commit may hand to the compiler.
    pub fn with_file_limits(mut self, max_files: usize, max_bytes: u64) -> Self {
        self.max_files = max_files;
        self.max_file_bytes = max_bytes;
        self
    }

    /// Bound on what one fetch may download (default: the cache's byte bound, at least 64 MiB).
    pub fn with_download_limit(mut self, bytes: u64) -> Self {
        self.max_download_bytes = Some(bytes);
        self
    }

    /// Deadline of one fetch; past it the fetch is reported `Unreachable`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Resolves the request's reference on the remote and reads the files of that commit.
    pub fn fetch(&self, req: &GitRequest) -> Result<Checkout, GitError> {
        let started = Instant::now();
        let remote = parse_remote(&req.url)?;
        let mut req = req.clone();
        if let (GitAuth::None, Some((username, password))) = (&req.auth, &remote.userinfo) {
            req.auth = GitAuth::Basic {
                username: username.clone(),
                password: password.clone(),
            };
        }
        let repo_dir = self.dir.join(cache_key(&remote.display));
        let deadline = started + self.timeout;
        let guard = Busy::acquire(&self.busy, &repo_dir, deadline).ok_or_else(|| {
            GitError::Unreachable {
                url: remote.display.clone(),
                message: format!(
                    "an earlier fetch of this repository is still running after {}s",
                    self.timeout.as_secs()
                ),
            }
        })?;
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let job = Job {
            req,
            remote: remote.clone(),
            repo_dir: repo_dir.clone(),
            cancel: cancel.clone(),
            max_files: self.max_files,
            max_file_bytes: self.max_file_bytes,
            max_download_bytes: self
                .max_download_bytes
                .unwrap_or(self.max_bytes.max(MIN_DOWNLOAD_BYTES)),
        };
        let cache = self.clone();
        let spawned = std::thread::Builder::new()
            .name("hangar-git-fetch".into())
            .spawn(move || {
                let _guard = guard;
                let result = job.run();
                if result.is_ok() {
                    // While this repository is still marked in use.
                    cache.evict(&job.repo_dir);
                }
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            return Err(GitError::Git {
                url: remote.display,
                message: format!("cannot start the fetch thread: {e}"),
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let result = match rx.recv_timeout(left) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // libgit2 has no deadline of its own that safe code can set: abandon the thread
                // (its callbacks see the flag and abort at the next chance) and say so.
                cancel.store(true, Ordering::Relaxed);
                Err(GitError::Unreachable {
                    url: remote.display.clone(),
                    message: format!("no answer within {}s", self.timeout.as_secs()),
                })
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(GitError::Git {
                url: remote.display.clone(),
                message: "the fetch thread stopped without a result".into(),
            }),
        };
        match &result {
            Ok(c) => {
                tracing::debug!(url = %remote.display, commit = %c.commit, files = c.files.len(), ms = started.elapsed().as_millis() as u64, "git fetch");
            }
            Err(e) => {
                tracing::debug!(url = %remote.display, reason = e.reason(), error = %e, "git fetch failed")
            }
        }
        result
    }

    /// Removes least recently used repositories until the cache is within its bounds;
    /// repositories in use stay. `keep` (the one just read) goes last, only when it alone is over
    /// the byte bound (it is fetched afresh, shallow, next time).
    fn evict(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut repos: Vec<(SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .map(|p| {
                let used = std::fs::metadata(p.join(USED_MARKER))
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (used, dir_size(&p), p)
            })
            .collect();
        let mut total: u64 = repos.iter().map(|r| r.1).sum();
        let mut count = repos.len();
        repos.sort();
        let busy = self.busy.0.lock().map(|b| b.clone()).unwrap_or_default();
        for (_, size, path) in repos {
            if total <= self.max_bytes && count <= self.max_repos {
                break;
            }
            if path == keep || busy.contains(&path) {
                continue;
            }
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::debug!(path = %path.display(), bytes = size, "git cache: evicted");
                    total = total.saturating_sub(size);
                    count -= 1;
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "git cache: cannot evict")
                }
            }
        }
        if total > self.max_bytes {
            tracing::warn!(
                bytes = total,
                max = self.max_bytes,
                path = %keep.display(),
                "git cache: a repository larger than the cache bound; removed after use"
            );
            let _ = std::fs::remove_dir_all(keep);
        }
    }
}

const USED_MARKER: &str = "hangar-last-used";

fn cache_key(display: &str) -> String {
    let hash = Sha256::digest(display.as_bytes());
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let name: String = display
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repo")
        .trim_end_matches(".git")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(40)
        .collect();
    format!("{}-{hex}", if name.is_empty() { "repo" } else { &name })
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

/// Marks a cache repository as in use until dropped.
struct Busy {
    set: Arc<(Mutex<HashSet<PathBuf>>, Condvar)>,
    key: PathBuf,
}

impl Busy {
    fn acquire(
        set: &Arc<(Mutex<HashSet<PathBuf>>, Condvar)>,
        key: &Path,
        deadline: Instant,
    ) -> Option<Busy> {
        let (lock, cv) = &**set;
        let mut held = lock.lock().ok()?;
        while held.contains(key) {
            let left = deadline.checked_duration_since(Instant::now())?;
            held = cv.wait_timeout(held, left).ok()?.0;
        }
        held.insert(key.to_path_buf());
        Some(Busy {
            set: set.clone(),
            key: key.to_path_buf(),
        })
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let (lock, cv) = &*self.set;
        if let Ok(mut held) = lock.lock() {
            held.remove(&self.key);
        }
        cv.notify_all();
    }
}

/// One fetch, run on its own thread.
struct Job {
    req: GitRequest,
    remote: Remote,
    repo_dir: PathBuf,
    cancel: Arc<AtomicBool>,
    max_files: usize,
    max_file_bytes: u64,
    max_download_bytes: u64,
}

/// What the callbacks saw, to tell authentication failures from others.
#[derive(Default)]
struct AuthState {
    /// Credentials were handed out this many times.
    given: Cell<u32>,
    /// The remote asked for credentials we do not have (or rejected the ones given).
    failed: Cell<Option<String>>,
    host_key: Cell<Option<String>>,
    /// The download went over the cache's byte bound.
    too_large: Cell<bool>,
}

/// What a reference resolved to on the remote.
enum Target {
    /// An advertised ref: fetched by name.
    Ref { name: String, oid: Oid },
    /// A commit SHA (possibly abbreviated) that no ref points at.
    Commit { prefix: String },
}

impl Job {
    fn run(&self) -> Result<Checkout, GitError> {
        let fresh = !self.repo_dir.exists();
        let result = self.run_in_cache();
        if fresh && result.is_err() {
            // Nothing worth keeping: do not leave an empty repository per failed URL.
            let _ = std::fs::remove_dir_all(&self.repo_dir);
        }
        result
    }

    fn run_in_cache(&self) -> Result<Checkout, GitError> {
        std::fs::create_dir_all(&self.repo_dir).map_err(|e| self.io(&e.to_string()))?;
        let repo = self.open_repo()?;
        // Marks this repository as recently used, for eviction.
        let _ = std::fs::write(self.repo_dir.join(USED_MARKER), b"");
        let heads = self.list(&repo)?;
        let reference = self.req.reference.as_deref().map(str::trim);
        let target = resolve_ref(&heads, reference).ok_or_else(|| GitError::RefNotFound {
            url: self.remote.display.clone(),
            reference: reference.unwrap_or("HEAD").to_string(),
        })?;
        let oid = match target {
            Target::Ref { name, oid } => {
                if repo.find_object(oid, None).is_err() {
                    let local = format!("refs/hangar/{}", name.trim_start_matches("refs/"));
                    self.download(&repo, &format!("+{name}:{local}"), true)?;
                }
                oid
            }
            Target::Commit { prefix } => self.find_commit(&repo, &prefix)?,
        };
        let commit = repo
            .find_object(oid, None)
            .and_then(|o| o.peel_to_commit())
            .map_err(|e| self.git(&e))?;
        // Pins the commit so it stays in the cache's object database.
        let _ = repo.reference("refs/hangar/last", commit.id(), true, "hangar");
        let files = self.read_files(&repo, &commit)?;
        Ok(Checkout {
            commit: commit.id().to_string(),
            files,
        })
    }

    fn open_repo(&self) -> Result<Repository, GitError> {
        match Repository::open_bare(&self.repo_dir) {
            Ok(r) => Ok(r),
            Err(_) => {
                // Missing or damaged: start afresh (the cache is only a cache).
                let _ = std::fs::remove_dir_all(&self.repo_dir);
                Repository::init_bare(&self.repo_dir).map_err(|e| self.io(e.message()))
            }
        }
    }

    fn callbacks<'a>(&'a self, st: &'a AuthState) -> RemoteCallbacks<'a> {
        let mut cb = RemoteCallbacks::new();
        let cancel = &self.cancel;
        cb.credentials(move |_url, user_from_url, allowed| {
            if cancel.load(Ordering::Relaxed) {
                return Err(git2::Error::from_str("cancelled"));
            }
            self.credentials(st, user_from_url, allowed)
        });
        let max_download = self.max_download_bytes;
        cb.transfer_progress(move |p| {
            if p.received_bytes() as u64 > max_download {
                st.too_large.set(true);
                return false;
            }
            !cancel.load(Ordering::Relaxed)
        });
        cb.sideband_progress(move |_| !cancel.load(Ordering::Relaxed));
        cb.certificate_check(move |cert, host| {
            let known = match &self.req.auth {
                GitAuth::SshKey {
                    known_hosts: Some(k),
                    ..
                } => k,
                _ => return Ok(CertificateCheckStatus::CertificatePassthrough),
            };
            let Some(hk) = cert.as_hostkey() else {
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let port = self.remote.ssh_host.as_ref().map_or(22, |h| h.1);
            let (Some(key), Some(kind)) = (hk.hostkey(), hk.hostkey_type()) else {
                st.host_key
                    .set(Some("the server's host key could not be read".into()));
                return Err(git2::Error::from_str("host key unavailable"));
            };
            if known_hosts_match(known, host, port, kind.name(), key) {
                Ok(CertificateCheckStatus::CertificateOk)
            } else {
                st.host_key.set(Some(format!(
                    "the {} host key of {host} is not in the Secret's known_hosts",
                    kind.name()
                )));
                Err(git2::Error::from_str("host key not in known_hosts"))
            }
        });
        cb
    }

    fn credentials(
        &self,
        st: &AuthState,
        user_from_url: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        let fail = |m: &str| {
            st.failed.set(Some(m.to_string()));
            Err(git2::Error::from_str(m))
        };
        if st.given.get() >= 1 {
            return fail("the remote rejected the credentials");
        }
        let ssh_user = user_from_url.unwrap_or("git");
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(ssh_user);
        }
        match &self.req.auth {
            GitAuth::None => fail("the remote asks for credentials and none were given"),
            GitAuth::Basic { username, password } => {
                if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                    return fail(
                        "username/password credentials do not apply to this remote (an ssh remote needs `ssh-privatekey`)",
                    );
                }
                st.given.set(st.given.get() + 1);
                Cred::userpass_plaintext(username, password)
            }
            GitAuth::Token(token) => {
                if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                    return fail(
                        "a token does not apply to this remote (an ssh remote needs `ssh-privatekey`)",
                    );
                }
                st.given.set(st.given.get() + 1);
                Cred::userpass_plaintext(TOKEN_USERNAME, token)
            }
            GitAuth::SshKey {
                private_key,
                passphrase,
                ..
            } => {
                if !allowed.contains(CredentialType::SSH_KEY) {
                    return fail(
                        "an ssh key does not apply to this remote (https needs `token` or `username` + `password`)",
                    );
                }
                st.given.set(st.given.get() + 1);
                Cred::ssh_key_from_memory(ssh_user, None, private_key, passphrase.as_deref())
            }
        }
    }

    /// The remote's refs: (name, oid), with peeled tags as `refs/tags/NAME^{}`.
    fn list(&self, repo: &Repository) -> Result<Vec<(String, Oid)>, GitError> {
        let st = AuthState::default();
        let mut remote = repo
            .remote_anonymous(&self.remote.url)
            .map_err(|e| self.classify(&e, &st, true))?;
        let conn = remote
            .connect_auth(Direction::Fetch, Some(self.callbacks(&st)), None)
            .map_err(|e| self.classify(&e, &st, true))?;
        let heads = conn.list().map_err(|e| self.classify(&e, &st, true))?;
        Ok(heads
            .iter()
            .map(|h| (h.name().to_string(), h.oid()))
            .collect())
    }

    /// Fetches one refspec; shallow when asked and the transport allows it.
    fn download(&self, repo: &Repository, refspec: &str, shallow: bool) -> Result<(), GitError> {
        let attempt = |depth: Option<i32>| -> Result<(), GitError> {
            let st = AuthState::default();
            let mut remote = repo
                .remote_anonymous(&self.remote.url)
                .map_err(|e| self.classify(&e, &st, false))?;
            let mut fo = FetchOptions::new();
            fo.remote_callbacks(self.callbacks(&st));
            fo.download_tags(git2::AutotagOption::None);
            fo.update_fetchhead(false);
            if let Some(d) = depth {
                fo.depth(d);
            }
            remote
                .fetch(&[refspec], Some(&mut fo), None)
                .map_err(|e| self.classify(&e, &st, false))
        };
        // libgit2's local transport cannot fetch shallow: it copies what it needs.
        if shallow && !self.remote.local {
            match attempt(Some(1)) {
                Err(GitError::Git { message, .. }) if message.contains("shallow") => {
                    tracing::debug!(url = %self.remote.display, "shallow fetch refused; fetching in full");
                    attempt(None)
                }
                r => r,
            }
        } else if repo.is_shallow() {
            attempt(Some(i32::MAX))
        } else {
            attempt(None)
        }
    }

    /// A commit that no ref points at: from the cache, or by fetching every branch and tag in full.
    fn find_commit(&self, repo: &Repository, prefix: &str) -> Result<Oid, GitError> {
        let lookup = |repo: &Repository| {
            repo.find_object_by_prefix(prefix, None)
                .ok()
                .and_then(|o| o.peel_to_commit().ok())
                .map(|c| c.id())
        };
        if let Some(oid) = lookup(repo) {
            return Ok(oid);
        }
        self.download(repo, "+refs/heads/*:refs/hangar/all/heads/*", false)?;
        self.download(repo, "+refs/tags/*:refs/hangar/all/tags/*", false)?;
        lookup(repo).ok_or_else(|| GitError::RefNotFound {
            url: self.remote.display.clone(),
            reference: prefix.to_string(),
        })
    }

    fn read_files(
        &self,
        repo: &Repository,
        commit: &git2::Commit<'_>,
    ) -> Result<Vec<SourceFile>, GitError> {
        let sha = commit.id().to_string();
        let short = &sha[..sha.len().min(7)];
        let tree = commit.tree().map_err(|e| self.git(&e))?;
        let sub = self
            .req
            .path
            .as_deref()
            .map(|p| p.trim().trim_matches('/'))
            .filter(|p| !p.is_empty() && *p != ".");
        let not_found = |p: &str| GitError::PathNotFound {
            url: self.remote.display.clone(),
            commit: short.to_string(),
            path: p.to_string(),
        };
        // (path in repo, blob id)
        let mut blobs: Vec<(String, Oid)> = Vec::new();
        let root = match sub {
            None => tree,
            Some(p) => {
                if p.split('/').any(|c| c == ".." || c.is_empty()) {
                    return Err(not_found(p));
                }
                let entry = tree.get_path(Path::new(p)).map_err(|_| not_found(p))?;
                match entry.kind() {
                    Some(ObjectType::Blob) => {
                        blobs.push((p.to_string(), entry.id()));
                        return self.read_blobs(repo, blobs, short);
                    }
                    Some(ObjectType::Tree) => {
                        repo.find_tree(entry.id()).map_err(|e| self.git(&e))?
                    }
                    _ => return Err(not_found(p)),
                }
            }
        };
        let prefix = sub.map(|p| format!("{p}/")).unwrap_or_default();
        let mut too_many = false;
        let mut visited = 0usize;
        let walked = root.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            visited += 1;
            if visited > MAX_TREE_ENTRIES {
                too_many = true;
                return git2::TreeWalkResult::Abort;
            }
            let name = entry.name().unwrap_or_default();
            if name.starts_with('.') || name.is_empty() {
                return git2::TreeWalkResult::Skip;
            }
            // Blobs only (no symlinks, no submodules).
            let is_file = entry.kind() == Some(ObjectType::Blob) && entry.filemode() != 0o120000;
            let wanted = Path::new(name)
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e));
            if is_file && wanted {
                if blobs.len() >= self.max_files {
                    too_many = true;
                    return git2::TreeWalkResult::Abort;
                }
                blobs.push((format!("{prefix}{dir}{name}"), entry.id()));
            }
            git2::TreeWalkResult::Ok
        });
        if too_many {
            return Err(GitError::TooLarge {
                url: self.remote.display.clone(),
                message: format!(
                    "commit {short}: more than {} .yaml/.yml/.json/.toml files (or {MAX_TREE_ENTRIES} entries) under {:?}",
                    self.max_files,
                    sub.unwrap_or("/")
                ),
            });
        }
        walked.map_err(|e| self.git(&e))?;
        // The order files on disk are read in: by path components.
        blobs.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));
        self.read_blobs(repo, blobs, short)
    }

    fn read_blobs(
        &self,
        repo: &Repository,
        blobs: Vec<(String, Oid)>,
        short: &str,
    ) -> Result<Vec<SourceFile>, GitError> {
        let odb = repo.odb().map_err(|e| self.git(&e))?;
        let mut total: u64 = 0;
        for (path, oid) in &blobs {
            let (size, _) = odb.read_header(*oid).map_err(|e| self.git(&e))?;
            total += size as u64;
            if total > self.max_file_bytes {
                return Err(GitError::TooLarge {
                    url: self.remote.display.clone(),
                    message: format!(
                        "commit {short}: the files read exceed {} bytes (at {path})",
                        self.max_file_bytes
                    ),
                });
            }
        }
        let mut files = Vec::with_capacity(blobs.len());
        for (path, oid) in blobs {
            let location = format!("git+{}@{short}:{path}", self.remote.display);
            let blob = repo.find_blob(oid).map_err(|e| self.git(&e))?;
            let text = std::str::from_utf8(blob.content())
                .map_err(|_| GitError::NotUtf8 {
                    location: location.clone(),
                })?
                .to_string();
            files.push(SourceFile::new(location, text));
        }
        Ok(files)
    }

    fn redact(&self, message: &str) -> String {
        let mut m = message.replace(&self.req.url, &self.remote.display);
        for s in self.req.auth.secrets() {
            if s.len() >= 3 {
                m = m.replace(s, "<redacted>");
            }
        }
        m
    }

    fn io(&self, message: &str) -> GitError {
        GitError::Io {
            path: self.repo_dir.display().to_string(),
            message: self.redact(message),
        }
    }

    fn git(&self, e: &git2::Error) -> GitError {
        GitError::Git {
            url: self.remote.display.clone(),
            message: self.redact(e.message()),
        }
    }

    /// Sorts a libgit2 error into the cases status conditions tell apart.
    fn classify(&self, e: &git2::Error, st: &AuthState, connecting: bool) -> GitError {
        let url = self.remote.display.clone();
        if self.cancel.load(Ordering::Relaxed) {
            return GitError::Unreachable {
                url,
                message: "cancelled at the deadline".into(),
            };
        }
        if let Some(m) = st.failed.take() {
            return GitError::Auth { url, message: m };
        }
        if st.too_large.get() {
            return GitError::TooLarge {
                url,
                message: format!(
                    "the fetch received more than the cache's bound of {} bytes",
                    self.max_download_bytes
                ),
            };
        }
        if let Some(m) = st.host_key.take() {
            return GitError::Auth { url, message: m };
        }
        let message = self.redact(e.message());
        let lower = message.to_ascii_lowercase();
        if e.code() == ErrorCode::Auth
            || lower.contains("status code: 401")
            || lower.contains("status code: 403")
            || lower.contains("authenticat")
        {
            return GitError::Auth { url, message };
        }
        if e.code() == ErrorCode::Certificate {
            return GitError::Unreachable {
                url,
                message: format!("TLS certificate not trusted: {message}"),
            };
        }
        let network = matches!(
            e.class(),
            ErrorClass::Net | ErrorClass::Os | ErrorClass::Ssl | ErrorClass::Ssh | ErrorClass::Http
        );
        if connecting || network {
            return GitError::Unreachable { url, message };
        }
        GitError::Git { url, message }
    }
}

/// Resolves a reference against the remote's advertised refs.
fn resolve_ref(heads: &[(String, Oid)], reference: Option<&str>) -> Option<Target> {
    let find = |name: &str| heads.iter().find(|(n, _)| n == name).map(|(_, o)| *o);
    let named = |name: String| find(&name).map(|oid| Target::Ref { name, oid });
    let Some(r) = reference.filter(|r| !r.is_empty()) else {
        return named("HEAD".into());
    };
    if r == "HEAD" || r.starts_with("refs/") {
        return named(r.to_string());
    }
    if let Some(t) = named(format!("refs/heads/{r}")).or_else(|| named(format!("refs/tags/{r}"))) {
        return Some(t);
    }
    let hex = (4..=40).contains(&r.len()) && r.chars().all(|c| c.is_ascii_hexdigit());
    if !hex {
        return None;
    }
    let r = r.to_ascii_lowercase();
    // The tip of an advertised ref (a peeled tag's target is fetched through its tag).
    if let Some((name, oid)) = heads
        .iter()
        .find(|(n, o)| n.starts_with("refs/") && o.to_string().starts_with(&r))
    {
        let name = name.trim_end_matches("^{}").to_string();
        let oid = find(&name).unwrap_or(*oid);
        return Some(Target::Ref { name, oid });
    }
    Some(Target::Commit { prefix: r })
}

/// Whether `known_hosts` lines hold `key` of type `kind` for `host` (port 22: `host`; other
/// ports: `[host]:port`). Plain host names only; hashed entries (`|1|...`) are not matched.
fn known_hosts_match(known_hosts: &str, host: &str, port: u16, kind: &str, key: &[u8]) -> bool {
    use base64::Engine as _;
    let wanted = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    known_hosts.lines().any(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            return false;
        }
        let mut fields = line.split_whitespace();
        let (Some(hosts), Some(t), Some(k)) = (fields.next(), fields.next(), fields.next()) else {
            return false;
        };
        hosts.split(',').any(|h| h.eq_ignore_ascii_case(&wanted))
            && t == kind
            && base64::engine::general_purpose::STANDARD
                .decode(k)
                .is_ok_and(|k| k == key)
    })
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

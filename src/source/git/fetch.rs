//! One fetch: connect (credentials, host keys), resolve the reference, check out the tree within the limits.

use super::*;
use crate::source::files::{IGNORE_FILE, Ignore};

/// One fetch, run on its own thread.
pub(super) struct Job {
    pub(super) req: GitRequest,
    pub(super) remote: Remote,
    pub(super) repo_dir: PathBuf,
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) max_files: usize,
    pub(super) max_file_bytes: u64,
    pub(super) max_download_bytes: u64,
}

/// What the callbacks saw, to tell authentication failures from others.
#[derive(Default)]
pub(super) struct AuthState {
    /// Credentials were handed out this many times.
    pub(super) given: Cell<u32>,
    /// The remote asked for credentials we do not have (or rejected the ones given).
    pub(super) failed: Cell<Option<String>>,
    pub(super) host_key: Cell<Option<String>>,
    /// The download went over the cache's byte bound.
    pub(super) too_large: Cell<bool>,
}

/// What a reference resolved to on the remote.
pub(super) enum Target {
    /// An advertised ref: fetched by name.
    Ref { name: String, oid: Oid },
    /// A commit SHA (possibly abbreviated) that no ref points at.
    Commit { prefix: String },
}

impl Job {
    pub(super) fn run(&self) -> Result<Checkout, GitError> {
        let fresh = !self.repo_dir.exists();
        let result = self.run_in_cache();
        if fresh && result.is_err() {
            // Nothing worth keeping: do not leave an empty repository per failed URL.
            let _ = std::fs::remove_dir_all(&self.repo_dir);
        }
        result
    }

    pub(super) fn run_in_cache(&self) -> Result<Checkout, GitError> {
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

    pub(super) fn open_repo(&self) -> Result<Repository, GitError> {
        match Repository::open_bare(&self.repo_dir) {
            Ok(r) => Ok(r),
            Err(_) => {
                // Missing or damaged: start afresh (the cache is only a cache).
                let _ = std::fs::remove_dir_all(&self.repo_dir);
                Repository::init_bare(&self.repo_dir).map_err(|e| self.io(e.message()))
            }
        }
    }

    pub(super) fn callbacks<'a>(&'a self, st: &'a AuthState) -> RemoteCallbacks<'a> {
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

    pub(super) fn credentials(
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
    pub(super) fn list(&self, repo: &Repository) -> Result<Vec<(String, Oid)>, GitError> {
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
    pub(super) fn download(
        &self,
        repo: &Repository,
        refspec: &str,
        shallow: bool,
    ) -> Result<(), GitError> {
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
    pub(super) fn find_commit(&self, repo: &Repository, prefix: &str) -> Result<Oid, GitError> {
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

    pub(super) fn read_files(
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
        let ignore = self.ignore_file(repo, &root, &prefix, short)?;
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
            let is_dir = entry.kind() == Some(ObjectType::Tree);
            if ignore.ignores(&Path::new(dir).join(name), is_dir) {
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

    /// The `.hangarignore` at the top of the source's path, as on disk for a PATH argument.
    fn ignore_file(
        &self,
        repo: &Repository,
        root: &git2::Tree<'_>,
        prefix: &str,
        short: &str,
    ) -> Result<Ignore, GitError> {
        let Some(entry) = root.get_name(IGNORE_FILE) else {
            return Ok(Ignore::none());
        };
        let location = format!("git+{}@{short}:{prefix}{IGNORE_FILE}", self.remote.display);
        let blob = repo.find_blob(entry.id()).map_err(|e| self.git(&e))?;
        let text = std::str::from_utf8(blob.content()).map_err(|_| GitError::NotUtf8 {
            location: location.clone(),
        })?;
        Ignore::parse(text).map_err(|message| GitError::Ignore { location, message })
    }

    pub(super) fn read_blobs(
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

    pub(super) fn redact(&self, message: &str) -> String {
        let mut m = message.replace(&self.req.url, &self.remote.display);
        for s in self.req.auth.secrets() {
            if s.len() >= 3 {
                m = m.replace(s, "<redacted>");
            }
        }
        m
    }

    pub(super) fn io(&self, message: &str) -> GitError {
        GitError::Io {
            path: self.repo_dir.display().to_string(),
            message: self.redact(message),
        }
    }

    pub(super) fn git(&self, e: &git2::Error) -> GitError {
        GitError::Git {
            url: self.remote.display.clone(),
            message: self.redact(e.message()),
        }
    }

    /// Sorts a libgit2 error into the cases status conditions tell apart.
    pub(super) fn classify(&self, e: &git2::Error, st: &AuthState, connecting: bool) -> GitError {
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
pub(super) fn resolve_ref(heads: &[(String, Oid)], reference: Option<&str>) -> Option<Target> {
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
pub(super) fn known_hosts_match(
    known_hosts: &str,
    host: &str,
    port: u16,
    kind: &str,
    key: &[u8],
) -> bool {
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

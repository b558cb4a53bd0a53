//! The on-disk cache of fetched repositories: one directory a remote, bounded in size (least recently used go first), one fetch at a time per repository.

use super::*;

/// A bounded on-disk cache of bare repositories, one per remote URL.
#[derive(Clone, Debug)]
pub struct GitCache {
    pub(super) dir: PathBuf,
    pub(super) max_bytes: u64,
    pub(super) max_repos: usize,
    pub(super) max_files: usize,
    pub(super) max_file_bytes: u64,
    pub(super) max_download_bytes: Option<u64>,
    pub(super) timeout: Duration,
    pub(super) busy: Arc<(Mutex<HashSet<PathBuf>>, Condvar)>,
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

pub(super) const USED_MARKER: &str = "hangar-last-used";

pub(super) fn cache_key(display: &str) -> String {
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

pub(super) fn dir_size(p: &Path) -> u64 {
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

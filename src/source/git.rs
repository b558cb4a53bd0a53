//! Placeholder for the Git source (being written on the `git` branch); replaced at merge.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::compile::SourceFile;

pub struct GitRequest {
    pub url: String,
    pub reference: Option<String>,
    pub path: Option<String>,
    pub auth: GitAuth,
}

pub enum GitAuth {
    None,
}

pub struct Checkout {
    pub commit: String,
    pub files: Vec<SourceFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git support is not built yet")]
    Unsupported,
}

impl GitError {
    pub fn reason(&self) -> &'static str {
        "Unsupported"
    }
}

pub struct GitCache {
    _dir: PathBuf,
}

impl GitCache {
    pub fn new(dir: PathBuf, _max_bytes: u64) -> Self {
        GitCache { _dir: dir }
    }

    pub fn fetch(&self, _req: &GitRequest) -> Result<Checkout, GitError> {
        Err(GitError::Unsupported)
    }
}

pub fn auth_from_secret_data(_data: &BTreeMap<String, Vec<u8>>) -> Result<GitAuth, GitError> {
    Ok(GitAuth::None)
}

//! Repository URLs: parsing, percent-decoding, and redacting credentials for display.

use super::*;

/// A remote URL split into what libgit2 is given and what is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Remote {
    /// Handed to libgit2: no password, and no username for http(s).
    pub(super) url: String,
    /// Shown in file names, errors and logs: no credentials.
    pub(super) display: String,
    /// Credentials found in an http(s) URL's userinfo.
    pub(super) userinfo: Option<(String, String)>,
    /// Host and port of an ssh remote (for `known_hosts`).
    pub(super) ssh_host: Option<(String, u16)>,
    pub(super) local: bool,
}

pub(super) fn parse_remote(raw: &str) -> Result<Remote, GitError> {
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

pub(super) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A URL as it may be shown: userinfo dropped (best effort, for URLs that did not parse).
pub(super) fn redact_userinfo(raw: &str) -> String {
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

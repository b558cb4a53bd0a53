//! Checks for the value types the API carries as strings: durations, quantities, URLs, image
//! references, DNS names, label keys and values. Each returns a message that says what is wrong.

use std::time::Duration;

/// Parses a Go-style duration: `500ms`, `30s`, `5m`, `1h30m`, `1.5h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.is_empty() {
        return Err("a duration may not be empty; write for example `30s`".into());
    }
    if s.starts_with('-') {
        return Err(format!("`{s}` is negative; durations must be positive"));
    }
    if s.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "`{s}` has no unit; write `{s}s` for seconds or `{s}m` for minutes"
        ));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "`{s}` is not a duration: expected a number at `{rest}`"
            ));
        }
        let num: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("`{s}` is not a duration: bad number `{}`", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "`{s}` has a number without a unit; units are ms, s, m, h"
                ));
            }
            "d" => {
                return Err(format!(
                    "`{s}`: days are not a duration unit; write hours, e.g. `24h`"
                ));
            }
            other => {
                return Err(format!(
                    "`{s}` has an unknown unit `{other}`; units are ns, us, ms, s, m, h"
                ));
            }
        };
        total += num * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e9 {
        return Err(format!("`{s}` is too long a duration"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// A duration in the largest unit that writes it whole (`1500ms`, `30s`, `5m`, `1h`): how
/// decided durations are printed, read back by [`parse_duration`] as the same value.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        0 => "0s".into(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Checks a Kubernetes resource quantity (`100m`, `128Mi`, `1.5`, `1e3`).
pub fn check_quantity(s: &str) -> Result<(), String> {
    let (num, suffix) = split_quantity(s);
    let num_ok = {
        let n = num.strip_prefix(['+', '-']).unwrap_or(num);
        match n.split_once('.') {
            Some((a, b)) => {
                (!a.is_empty() || !b.is_empty())
                    && a.chars().all(|c| c.is_ascii_digit())
                    && b.chars().all(|c| c.is_ascii_digit())
            }
            None => !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()),
        }
    };
    let suffix_ok = matches!(
        suffix,
        "" | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
            | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
    ) || (suffix.starts_with(['e', 'E']) && {
        let e = &suffix[1..];
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    if num_ok && suffix_ok {
        return Ok(());
    }
    let hint = match suffix {
        "MB" | "mb" | "Mb" => " (use `Mi` for mebibytes or `M` for megabytes)",
        "GB" | "gb" | "Gb" => " (use `Gi` for gibibytes or `G` for gigabytes)",
        "KB" | "kb" | "Kb" | "K" => " (use `Ki` for kibibytes or `k` for kilobytes)",
        "mi" | "gi" => " (binary suffixes are capitalised: `Mi`, `Gi`)",
        _ => "",
    };
    Err(format!(
        "`{s}` is not a resource quantity{hint}; write a number with an optional suffix: m, k, M, G, T, Ki, Mi, Gi, Ti (e.g. `100m`, `128Mi`)"
    ))
}

fn split_quantity(s: &str) -> (&str, &str) {
    let idx = s
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || ((*c == '+' || *c == '-') && *i == 0)))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    (&s[..idx], &s[idx..])
}

/// Checks an MCP endpoint URL: http(s), a host, no credentials in it.
pub fn check_endpoint_url(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| {
        let shown = crate::compile::diag::mask_passwords(s);
        match e {
            // `mcp.example.com/mcp`: the scheme is missing.
            url::ParseError::RelativeUrlWithoutBase => match shown.split_once("//") {
                // `https//host/mcp`: the scheme's `:` is missing.
                Some((scheme, rest))
                    if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphabetic()) =>
                {
                    format!("`{shown}` is not a valid URL: a scheme ends with `://`; did you mean `{scheme}://{rest}`?")
                }
                _ => format!(
                    "`{shown}` is not a valid URL: it has no scheme; write `https://{shown}` (or `http://` for a plain-HTTP server)"
                ),
            },
            e => format!("`{shown}` is not a valid URL: {e}"),
        }
    })?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "`{}` uses scheme `{}`; an MCP endpoint must be http:// or https://",
            crate::compile::diag::mask_passwords(s),
            u.scheme()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{s}` has no host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "`{}` carries credentials in the URL; put them in a Secret instead",
            redact(&u)
        ));
    }
    Ok(u)
}

fn redact(u: &url::Url) -> String {
    let mut u = u.clone();
    let _ = u.set_username("***");
    let _ = u.set_password(None);
    u.to_string()
}

/// Checks a Git repository URL (https, http, ssh, git, file, or scp-like `user@host:path`).
pub fn check_git_url(s: &str) -> Result<(), String> {
    if let Ok(u) = url::Url::parse(s) {
        if !matches!(u.scheme(), "https" | "http" | "ssh" | "git" | "file") {
            return Err(format!(
                "`{}` uses scheme `{}`; a Git URL is https://, ssh://, git:// or file://",
                crate::compile::diag::mask_passwords(s),
                u.scheme()
            ));
        }
        if u.password().is_some() {
            return Err("the Git URL carries a password; put credentials in the Secret named by git.secretRef".into());
        }
        // Over http(s) a user alone is a token (`https://ghp_x@github.com/...`); ssh's `git@`
        // is a user name.
        if matches!(u.scheme(), "https" | "http") && !u.username().is_empty() {
            return Err("the Git URL carries a user name or token before `@`; put credentials in the Secret named by git.secretRef".into());
        }
        return Ok(());
    }
    // scp-like: git@github.com:org/repo.git (a `user:password@` carries a password).
    if s.split_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':') && !userinfo.contains('/'))
    {
        return Err("the Git URL carries a password (`user:password@host:path`); put credentials in the Secret named by git.secretRef".into());
    }
    if let Some((host, path)) = s.split_once(':') {
        if !host.is_empty()
            && !path.is_empty()
            && !host.contains('/')
            && !s.contains(char::is_whitespace)
        {
            return Ok(());
        }
    }
    Err(format!(
        "`{s}` is not a Git URL; use https://host/repo.git, ssh://git@host/repo.git or file:///path"
    ))
}

/// DNS-1123 label: at most 63 of `a-z 0-9 -`, alphanumeric at both ends.
pub fn check_dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("may not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!(
            "`{s}` is {} characters long; at most 63 are allowed",
            s.len()
        ));
    }
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends = s.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && s.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric);
    if !ok_chars || !ends {
        let lower = s.to_lowercase().replace(['_', '.', ' '], "-");
        let hint = if lower != s {
            format!(" (e.g. `{}`)", lower.trim_matches('-'))
        } else {
            String::new()
        };
        return Err(format!(
            "`{s}` must consist of lower-case letters, digits and '-', and start and end with a letter or digit{hint}"
        ));
    }
    Ok(())
}

/// DNS-1035 label: a DNS-1123 label that starts with a letter (Service names).
pub fn check_dns1035_label(s: &str) -> Result<(), String> {
    check_dns1123_label(s)?;
    if !s.as_bytes().first().is_some_and(u8::is_ascii_lowercase) {
        return Err(format!(
            "`{s}` must start with a lower-case letter (it names a Service)"
        ));
    }
    Ok(())
}

/// DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn check_dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err(format!("`{s}` is longer than 253 characters"));
    }
    for part in s.split('.') {
        check_dns1123_label(part).map_err(|_| {
            format!("`{s}` must be lower-case letters, digits, '-' and '.', each part starting and ending with a letter or digit")
        })?;
    }
    Ok(())
}

fn qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && s.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A label or annotation key: `[prefix/]name`.
pub fn check_label_key(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        check_dns1123_subdomain(p).map_err(|_| {
            format!("label key `{s}` has an invalid prefix `{p}` (a DNS subdomain is expected)")
        })?;
    }
    if !qualified_name_part(name) {
        return Err(format!(
            "label key `{s}`: the name part must be 1-63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A label value: empty, or a qualified name part.
pub fn check_label_value(s: &str) -> Result<(), String> {
    if s.is_empty() || qualified_name_part(s) {
        Ok(())
    } else {
        Err(format!(
            "label value `{s}` must be at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ))
    }
}

/// A container image reference: `[registry[:port]/]repository[:tag][@digest]`.
pub fn check_image(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the image may not be empty".into());
    }
    if s.contains(char::is_whitespace) {
        return Err(format!("image `{s}` contains whitespace"));
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty()
                && alg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+._-".contains(&b))
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !ok {
            return Err(format!(
                "image `{s}` has an invalid digest `{d}` (expected e.g. sha256:<64 hex digits>)"
            ));
        }
    }
    // The tag is after the last ':' that follows the last '/'.
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (repo, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && t.as_bytes()
                .first()
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        if !ok {
            return Err(format!("image `{s}` has an invalid tag `{t}`"));
        }
    }
    let mut parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            parts.remove(0); // registry host, may contain upper case and a port
        }
    }
    for p in parts {
        let ok = !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && p.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
            && p.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric);
        if !ok {
            let hint = if p.bytes().any(|b| b.is_ascii_uppercase()) {
                " (repository names are lower case)"
            } else {
                ""
            };
            return Err(format!(
                "image `{s}` has an invalid repository component `{p}`{hint}"
            ));
        }
    }
    Ok(())
}

/// True when the image has no tag or the tag `latest` (Kubernetes then pulls always).
pub fn image_is_latest(s: &str) -> bool {
    if s.contains('@') {
        return false;
    }
    let last_slash = s.rfind('/').map(|i| i + 1).unwrap_or(0);
    match s[last_slash..].rfind(':') {
        Some(i) => &s[last_slash + i + 1..] == "latest",
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_formatted_duration_parses_back_to_itself() {
        for (d, text) in [
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(7200), "2h"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("5 m").is_err());
        assert!(parse_duration("1d").unwrap_err().contains("24h"));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn quantities() {
        for ok in ["100m", "128Mi", "1", "0.5", "1e3", "2Gi", ".5"] {
            assert!(check_quantity(ok).is_ok(), "{ok}");
        }
        for bad in ["128MB", "lots", "1.2.3", "", "Mi"] {
            assert!(check_quantity(bad).is_err(), "{bad}");
        }
        assert!(check_quantity("512MB").unwrap_err().contains("Mi"));
    }

    #[test]
    fn urls_images_names() {
        assert!(check_endpoint_url("https://api.example.com/mcp").is_ok());
        assert!(check_endpoint_url("ftp://x/y").is_err());
        assert!(check_endpoint_url("not a url").is_err());
        assert!(
            check_endpoint_url("https://user:pw@h/mcp")
                .unwrap_err()
                .contains("Secret")
        );
        assert!(check_image("ghcr.io/modelcontextprotocol/mcp-sqlite:latest").is_ok());
        assert!(check_image("localhost:5000/a/b:1.0").is_ok());
        assert!(
            check_image(
                "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            )
            .is_ok()
        );
        assert!(check_image("Ghcr.io/Team/Tools:1").is_err());
        assert!(check_image("a b").is_err());
        assert!(check_image("repo:").is_err());
        assert!(image_is_latest("nginx"));
        assert!(image_is_latest("localhost:5000/nginx"));
        assert!(!image_is_latest("nginx:1.2"));
        assert!(check_dns1035_label("sqlite-tools").is_ok());
        assert!(check_dns1035_label("1abc").is_err());
        assert!(check_dns1123_label("Bad_Name").is_err());
        assert!(check_label_key("mcp-hangar.io/category").is_ok());
        assert!(check_label_key("bad key").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("-x").is_err());
        assert!(check_git_url("git@github.com:org/repo.git").is_ok());
        assert!(check_git_url("file:///tmp/repo").is_ok());
        assert!(check_git_url("ftp://x").is_err());
        // Credentials never ride in the URL, whichever way they are written.
        for bad in [
            "https://bob:pw@host/r.git",
            "https://ghp_TOKEN@github.com/o/r.git",
            "http://TOKEN@host/r.git",
            "bob:TOKEN@host.example:org/r.git",
        ] {
            let e = check_git_url(bad).expect_err(bad);
            assert!(!e.contains("TOKEN") && !e.contains("pw@"), "{e}");
        }
        assert!(check_git_url("ssh://git@host/r.git").is_ok());
        assert!(check_git_url("git@host.example:org/r@v1.git").is_ok());
    }
}

//! The two ways to build the hangar image declare the same thing: `deploy/Dockerfile` (Docker,
//! static musl) and `deploy/image/build.sh` (Debian packages, no Docker): entrypoint, command,
//! user, and the files the controller needs (the binary at /hangar, the CA bundle).

use std::path::Path;

fn read(p: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).expect(p)
}

/// The value of a Dockerfile instruction (the last one, as Docker takes it).
fn instruction(dockerfile: &str, name: &str) -> String {
    dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .next_back()
        .unwrap_or_else(|| panic!("no {name} in deploy/Dockerfile"))
        .trim()
        .to_string()
}

/// `assemble hangar REF OUT ROOTFS USER ENTRYPOINT CMD` in build.sh, as its words.
fn assemble_hangar(script: &str) -> Vec<String> {
    let line = script
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("assemble hangar "))
        .expect("an `assemble hangar` line in deploy/image/build.sh");
    // words split at spaces, with '...' kept whole
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn dockerfile_and_debian_image_declare_the_same_entrypoint_user_and_files() {
    let docker = read("deploy/Dockerfile");
    let script = read("deploy/image/build.sh");
    let w = assemble_hangar(&script);
    assert_eq!(w.len(), 8, "{w:?}");
    assert_eq!(
        json_list(&instruction(&docker, "ENTRYPOINT")),
        json_list(&w[6])
    );
    assert_eq!(json_list(&instruction(&docker, "CMD")), json_list(&w[7]));
    assert_eq!(instruction(&docker, "USER"), w[5]);
    // The files: the binary at /hangar and the CA bundle where rustls-native-certs looks.
    assert!(
        docker.contains("COPY --from=build /hangar /hangar"),
        "{docker}"
    );
    assert!(script.contains(r#"cp "$bin" "$STAGE/hangar""#), "{script}");
    let ca = "/etc/ssl/certs/ca-certificates.crt";
    assert!(docker.contains(ca), "{docker}");
    assert!(
        script.contains(ca) && script.contains("ca-certificates"),
        "{script}"
    );
    // The chart runs it as the same user.
    let values = read("deploy/helm/hangar/values.yaml");
    let uid = w[5].split(':').next().unwrap_or_default().to_string();
    assert!(
        values.contains(&format!("runAsUser: {uid}")),
        "chart runAsUser {uid}"
    );
}

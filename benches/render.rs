//! Render throughput: N generated MCPServers in one multi-document YAML text.
//!
//! `cargo bench --bench render` measures N = 1,000 and 10,000:
//!   - `compile/N`: `hangar::compile::compile` alone;
//!   - `compile+yaml/N`: compile, then serialise the bundle as `hangar render` prints it.
//!
//! `HANGAR_BENCH_BIG=1` adds N = 100,000 (slow: opt-in).
//! `HANGAR_BENCH_GEN=DIR` writes `DIR/servers-{1000,10000,100000}.yaml` and exits without
//! measuring (used by `benches/render-cli.sh`).
//!
//! See benches/README.md for results.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use hangar::compile::{FileRole, InputFile, Inputs, SourceFile, compile};

const NAMESPACES: [&str; 5] = ["team-a", "team-b", "team-c", "platform", "data"];
const CATEGORIES: [&str; 4] = ["database", "search", "web", "files"];
const STRATEGIES: [&str; 4] = ["RoundRobin", "LeastConnections", "Failover", "Random"];

/// A deterministic multi-document YAML text with `n` MCPServers: ~70% plain containers (with
/// resources, env, volumes), ~20% remote, ~10% containers with an HPA and a PDB; spread over
/// five namespaces, each with one MCPServerGroup per category.
fn generate(n: usize) -> String {
    let mut out = String::with_capacity(n * 700);
    for ns in NAMESPACES {
        for (c, category) in CATEGORIES.iter().enumerate() {
            let strategy = STRATEGIES[c % STRATEGIES.len()];
            // Writing into a String cannot fail.
            let _ = write!(
                out,
                "apiVersion: mcp-hangar.io/v1alpha1
kind: MCPServerGroup
metadata:
  name: {category}-group
  namespace: {ns}
spec:
  selector:
    matchLabels:
      mcp-hangar.io/category: {category}
  strategy: {strategy}
  failover:
    enabled: true
    maxRetries: 2
---
"
            );
        }
    }
    for i in 0..n {
        if i > 0 {
            out.push_str("---\n");
        }
        server(&mut out, i);
    }
    out
}

fn server(out: &mut String, i: usize) {
    let ns = NAMESPACES[i % NAMESPACES.len()];
    // A different stride from the namespace one, so every namespace gets every category.
    let kind = i % 10;
    let remote = kind == 7 || kind == 8;
    // Groups only front container servers: keep remote ones out of every group's selector.
    let category = if remote {
        "external"
    } else {
        CATEGORIES[(i / 3) % CATEGORIES.len()]
    };
    let _ = write!(
        out,
        "apiVersion: mcp-hangar.io/v1alpha1
kind: MCPServer
metadata:
  name: srv-{i:06}
  namespace: {ns}
  labels:
    mcp-hangar.io/category: {category}
    app.kubernetes.io/part-of: bench
spec:
"
    );
    if remote {
        let _ = write!(
            out,
            "  mode: remote
  endpoint: https://mcp-{i}.{ns}.example.com/mcp
  transport: streamable-http
  healthCheck:
    enabled: true
    interval: {iv}s
    timeout: 10s
  circuitBreaker:
    enabled: true
    failureThreshold: 5
    resetTimeout: 30s
",
            iv = 15 + (i % 4) * 15,
        );
        return;
    }
    let cpu = 50 + (i % 8) * 50;
    let mem = 64 << (i % 4);
    let _ = write!(
        out,
        "  mode: container
  image: ghcr.io/org/tool-{t}:1.{minor}.{patch}
  idleTTL: {ttl}m
  port: {port}
  resources:
    requests:
      cpu: {cpu}m
      memory: {mem}Mi
    limits:
      cpu: \"{lcpu}\"
      memory: {lmem}Mi
  env:
    - name: LOG_LEVEL
      value: info
    - name: SERVER_INDEX
      value: \"{i}\"
    - name: API_TOKEN
      valueFrom:
        secretKeyRef:
          name: tool-{t}-credentials
          key: token
  volumes:
    - name: data
      mountPath: /data
      emptyDir:
        sizeLimit: 1Gi
    - name: config
      mountPath: /etc/tool
      readOnly: true
      configMap:
        name: tool-{t}-config
",
        t = i % 50,
        minor = i % 7,
        patch = i % 13,
        ttl = 5 + i % 20,
        port = 3000 + i % 3,
        lcpu = 1 + i % 2,
        lmem = mem * 4,
    );
    if kind == 9 {
        let _ = write!(
            out,
            "  hpa:
    enabled: true
    minReplicas: 2
    maxReplicas: {max}
    targetCPUUtilizationPercentage: 70
  podDisruptionBudget:
    enabled: true
    minAvailable: 1
",
            max = 4 + i % 6,
        );
    }
}

fn inputs(text: &str) -> Inputs {
    Inputs {
        files: vec![InputFile {
            file: SourceFile::new("servers.yaml", text),
            role: FileRole::Inputs,
        }],
        default_namespace: "default".into(),
    }
}

fn bench(c: &mut Criterion, sizes: &[usize]) {
    let mut group = c.benchmark_group("render");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(10));
    for &n in sizes {
        let text = generate(n);
        let inputs = inputs(&text);
        // A broken generator would benchmark the error path: refuse to.
        let check = compile(&inputs);
        assert!(
            check.bundle.is_some(),
            "generated input does not compile:\n{}",
            check.render_diagnostics()
        );
        drop(check);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("compile", n), &inputs, |b, inputs| {
            b.iter(|| compile(black_box(inputs)))
        });
        group.bench_with_input(BenchmarkId::new("compile+yaml", n), &inputs, |b, inputs| {
            b.iter(|| {
                let c = compile(black_box(inputs));
                let bundle = c.bundle.expect("generated input compiles");
                hangar::compile::to_yaml_stream(&bundle.objects, false)
            })
        });
    }
    group.finish();
}

fn main() {
    if let Some(dir) = std::env::var_os("HANGAR_BENCH_GEN") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("create HANGAR_BENCH_GEN directory");
        for n in [1_000, 10_000, 100_000] {
            let path = dir.join(format!("servers-{n}.yaml"));
            std::fs::write(&path, generate(n)).expect("write generated input");
            println!("{}", path.display());
        }
        return;
    }
    let mut sizes = vec![1_000, 10_000];
    if std::env::var_os("HANGAR_BENCH_BIG").is_some_and(|v| v == "1") {
        sizes.push(100_000);
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &sizes);
    c.final_summary();
}

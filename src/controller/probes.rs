//! Health checks off the reconcile path. A reconcile never waits on a probe: it tells
//! [`Probes`] what to check for a server (a [`Plan`]: URL, timeout, interval, credentials) and
//! reads the latest finished check. Each planned server has one task that checks it, sleeps its
//! interval and checks again; at most `--probe-concurrency` checks run at once (a semaphore), so
//! a dead server's timeouts hold one slot each and never a reconcile worker. A finished check
//! wakes the server's reconcile (through [`Probes::wakes`], a `reconcile_on` stream) when it
//! differs from the one before or failed (a failure is counted once per interval by the state
//! machine); a passing check that says what the last one said wakes nothing, so servers that stay
//! healthy cost no reconcile at all between resyncs. The reconcile it wakes finds its children
//! unchanged (see [`super::applied`]) and sends nothing but a status that changed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;

use super::health::{Check, Prober, Target};
use super::metrics::Metrics;
use super::scope::Scope;
use crate::api::server::Capability;
use crate::compile::settings::{ProbeAuth, ServerSettings};

/// Wake-ups queued for the server controller before a finished check waits to hand its own.
const WAKE_QUEUE: usize = 1024;

/// A floor under the interval between two checks of one server (the compiler validates the
/// interval; this only keeps a bad one from spinning).
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// What is checked for one server, and how often. A different plan (a spec change) drops the
/// findings of the old one and checks at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub url: String,
    pub timeout: Duration,
    pub interval: Duration,
    pub auth: Option<ProbeAuth>,
    /// `validation.requiredCapabilities`: a check that passes without them fails.
    pub required: Vec<Capability>,
}

impl Plan {
    pub fn of(set: &ServerSettings) -> Plan {
        Plan {
            url: set.url.clone(),
            timeout: set.health.timeout,
            interval: set.health.interval,
            auth: set.validation.auth.clone(),
            required: set.validation.required_capabilities.clone(),
        }
    }
}

/// Whether a finished check wakes the server's reconcile (pure): the first one, a failure, or
/// one that says something else than the one before.
pub fn wakes(before: Option<&Check>, now: &Check) -> bool {
    !now.ok || before != Some(now)
}

struct Job {
    plan: Plan,
    latest: Arc<Mutex<Option<Check>>>,
    task: AbortHandle,
}

/// What every check task shares.
struct Shared {
    prober: Arc<dyn Prober>,
    slots: Semaphore,
    client: Client,
    scope: Scope,
    server_ar: ApiResource,
    metrics: Arc<Metrics>,
    wake: mpsc::Sender<ObjectRef<DynamicObject>>,
}

/// The health-check workers of every server that is checked (one task each, bounded running).
pub struct Probes {
    shared: Arc<Shared>,
    jobs: Mutex<HashMap<(String, String), Job>>,
    wakes: Mutex<Option<mpsc::Receiver<ObjectRef<DynamicObject>>>>,
}

impl Probes {
    pub fn new(
        prober: Arc<dyn Prober>,
        concurrency: usize,
        client: Client,
        scope: Scope,
        server_ar: ApiResource,
        metrics: Arc<Metrics>,
    ) -> Probes {
        let (wake, rx) = mpsc::channel(WAKE_QUEUE);
        Probes {
            shared: Arc::new(Shared {
                prober,
                slots: Semaphore::new(concurrency.max(1)),
                client,
                scope,
                server_ar,
                metrics,
                wake,
            }),
            jobs: Mutex::new(HashMap::new()),
            wakes: Mutex::new(Some(rx)),
        }
    }

    /// The servers whose check finished with news, for the controller's `reconcile_on` (once:
    /// a second call gets an empty stream).
    pub fn wakes(&self) -> impl futures::Stream<Item = ObjectRef<DynamicObject>> + Send + 'static {
        let rx = self.wakes.lock().ok().and_then(|mut w| w.take());
        futures::stream::unfold(rx, |rx| async move {
            let mut rx = rx?;
            let r = rx.recv().await?;
            Some((r, Some(rx)))
        })
    }

    /// The latest finished check of `plan` for the server `ns/name` (`None`: none yet), starting
    /// its checks when they are not running for this plan. Never waits for a check.
    pub fn latest(&self, ns: &str, name: &str, plan: &Plan) -> Option<Check> {
        let Ok(mut jobs) = self.jobs.lock() else {
            return None;
        };
        let key = (ns.to_string(), name.to_string());
        if let Some(job) = jobs.get(&key)
            && job.plan == *plan
        {
            return job.latest.lock().ok().and_then(|l| l.clone());
        }
        if let Some(old) = jobs.remove(&key) {
            old.task.abort();
        }
        let latest = Arc::new(Mutex::new(None));
        let task = tokio::spawn(checks(
            self.shared.clone(),
            key.clone(),
            plan.clone(),
            latest.clone(),
        ))
        .abort_handle();
        jobs.insert(
            key,
            Job {
                plan: plan.clone(),
                latest,
                task,
            },
        );
        None
    }

    /// Stops checking a server (no longer checked: scaled to zero, held, deleted).
    pub fn stop(&self, ns: &str, name: &str) {
        if let Ok(mut jobs) = self.jobs.lock()
            && let Some(job) = jobs.remove(&(ns.to_string(), name.to_string()))
        {
            job.task.abort();
        }
    }

    /// Stops checking servers that are gone (not in `live`).
    pub fn retain(&self, live: &HashSet<(String, String)>) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.retain(|k, job| {
                let keep = live.contains(k);
                if !keep {
                    job.task.abort();
                }
                keep
            });
        }
    }

    /// Servers checked now.
    pub fn len(&self) -> usize {
        self.jobs.lock().map(|j| j.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        if let Ok(jobs) = self.jobs.get_mut() {
            for job in jobs.values() {
                job.task.abort();
            }
        }
    }
}

/// One server's checks, until aborted: check, keep the finding, wake the reconcile when there is
/// news, sleep the interval.
async fn checks(
    shared: Arc<Shared>,
    key: (String, String),
    plan: Plan,
    latest: Arc<Mutex<Option<Check>>>,
) {
    let (ns, name) = &key;
    let server = ObjectRef::new_with(name, shared.server_ar.clone()).within(ns);
    // Checks start when a pod is first ready, and the Service may not route to it for a moment
    // yet (kube-proxy syncs its rules after the endpoint appears): until one passes, the first
    // few are a second apart rather than an interval, so a starting server is Ready within a
    // second or two of its pod (an on-demand server's whole wake waits on this).
    let mut starting = STARTING_RETRIES;
    loop {
        let (check, took) = check_once(&shared, ns, &plan).await;
        let retry_soon = !check.ok && starting > 0;
        starting = if check.ok {
            0
        } else {
            starting.saturating_sub(1)
        };
        // Seed 002's validation series count each check once, as decide sees it (a missing
        // required capability fails it); TCP checks and unread Secrets are no validation.
        let check = super::decide::require_capabilities(check, &plan.required);
        if let (Some(took), Some(_)) = (took, &check.validation) {
            shared
                .metrics
                .validated(ns, name, &check, took.as_secs_f64());
        }
        let news = match latest.lock() {
            Ok(mut l) => {
                let news = wakes(l.as_ref(), &check);
                *l = Some(check);
                news
            }
            Err(_) => return,
        };
        if news && shared.wake.send(server.clone()).await.is_err() {
            return;
        }
        let pause = if retry_soon {
            STARTING_RETRY.min(plan.interval)
        } else {
            plan.interval
        };
        tokio::time::sleep(pause.max(MIN_INTERVAL)).await;
    }
}

/// Checks before the first passing one made a second apart ([`checks`]).
const STARTING_RETRIES: u32 = 10;
const STARTING_RETRY: Duration = Duration::from_secs(1);

/// One check: the credentials read now (a rotated one is used at the next check), then the probe
/// in one of the bounded slots; and how long the probe took (none when it did not run).
async fn check_once(shared: &Shared, ns: &str, plan: &Plan) -> (Check, Option<Duration>) {
    let headers = match probe_headers(&shared.client, &shared.scope, ns, plan.auth.as_ref()).await {
        Ok(h) => h,
        Err(message) => {
            let c = Check {
                ok: false,
                message,
                ..Default::default()
            };
            return (c, None);
        }
    };
    let target = Target {
        url: plan.url.clone(),
        timeout: plan.timeout,
        headers,
    };
    let Ok(_slot) = shared.slots.acquire().await else {
        let c = Check {
            ok: false,
            message: "health checks stopped".into(),
            ..Default::default()
        };
        return (c, None);
    };
    // The probe bounds itself by the timeout; this bounds a prober that would not.
    let bound = plan.timeout.saturating_mul(2) + Duration::from_secs(1);
    let t0 = std::time::Instant::now();
    match tokio::time::timeout(bound, shared.prober.check(&target)).await {
        Ok(c) => (c, Some(t0.elapsed())),
        Err(_) => {
            let c = Check {
                ok: false,
                message: format!("no answer within {}ms", bound.as_millis()),
                ..Default::default()
            };
            (c, None)
        }
    }
}

/// The header `validation.auth` asks the probe to send, its value read from the Secret now (so a
/// rotated credential is used at the next check). The error names the Secret and key, never the
/// value.
async fn probe_headers(
    client: &Client,
    scope: &Scope,
    ns: &str,
    auth: Option<&ProbeAuth>,
) -> Result<http::HeaderMap, String> {
    let mut headers = http::HeaderMap::new();
    let Some(auth) = auth else {
        return Ok(headers);
    };
    let secret = &auth.secret;
    let key = auth.key.as_str();
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    let found = match api.get_opt(secret).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(format!("validation.auth: Secret {ns}/{secret} not found")),
        Err(e) if super::scope::is_forbidden(&e) => {
            return Err(format!(
                "validation.auth: {}",
                scope.secret_forbidden(ns, secret)
            ));
        }
        Err(e) => {
            return Err(format!(
                "validation.auth: cannot read Secret {ns}/{secret}: {e}"
            ));
        }
    };
    let value = found
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            found
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| format!("validation.auth: Secret {ns}/{secret} has no key `{key}`"))?;
    let value = String::from_utf8(value).map_err(|_| {
        format!("validation.auth: key `{key}` of Secret {ns}/{secret} is not UTF-8 text")
    })?;
    let value = value.trim();
    let scheme = auth.scheme.as_str();
    let text = if scheme.is_empty() {
        value.to_string()
    } else {
        format!("{scheme} {value}")
    };
    let name = http::HeaderName::from_bytes(auth.header.as_bytes())
        .map_err(|_| "validation.auth: `header` is not a valid HTTP header name".to_string())?;
    let mut v = http::HeaderValue::from_str(&text).map_err(|_| {
        format!("validation.auth: key `{key}` of Secret {ns}/{secret} is not a valid header value")
    })?;
    v.set_sensitive(true);
    headers.insert(name, v);
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ok: bool, message: &str) -> Check {
        Check {
            ok,
            message: message.into(),
            ..Default::default()
        }
    }

    /// Hangs for URLs containing `hang` (until its timeout), answers at once for others.
    struct Fake;

    impl Prober for Fake {
        fn check<'a>(&'a self, t: &'a Target) -> futures::future::BoxFuture<'a, Check> {
            Box::pin(async move {
                if t.url.contains("hang") {
                    tokio::time::sleep(t.timeout).await;
                    return check(false, "no answer");
                }
                check(true, "fine")
            })
        }
    }

    fn probes(concurrency: usize) -> Probes {
        // No API server: no plan here has credentials to read.
        let api = tower::service_fn(|_: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, tower::BoxError>("no API server".into())
        });
        Probes::new(
            Arc::new(Fake),
            concurrency,
            Client::new(api, "default"),
            Scope::Cluster,
            super::super::resource(crate::api::Kind::Server),
            Arc::new(Metrics::new()),
        )
    }

    fn plan(url: &str, timeout: u64) -> Plan {
        Plan {
            url: url.into(),
            timeout: Duration::from_secs(timeout),
            interval: Duration::from_secs(3600),
            auth: None,
            required: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_hanging_check_neither_blocks_the_caller_nor_the_others() {
        use futures::StreamExt;
        // Three slots, two held by servers that hang for a minute: the healthy one is checked
        // at once, and no call waits for any of them.
        let p = probes(3);
        let mut wakes = Box::pin(p.wakes());
        let t0 = std::time::Instant::now();
        for i in 0..2 {
            let name = format!("dead{i}");
            assert_eq!(p.latest("ns", &name, &plan("http://hang/mcp", 60)), None);
        }
        assert_eq!(p.latest("ns", "ok", &plan("http://ok/mcp", 60)), None);
        assert!(t0.elapsed() < Duration::from_secs(1), "latest() waited");
        let woken = tokio::time::timeout(Duration::from_secs(5), wakes.next())
            .await
            .ok()
            .flatten()
            .map(|r| r.name);
        assert_eq!(woken.as_deref(), Some("ok"));
        assert_eq!(
            p.latest("ns", "ok", &plan("http://ok/mcp", 60)),
            Some(check(true, "fine"))
        );
        assert_eq!(p.latest("ns", "dead0", &plan("http://hang/mcp", 60)), None);
        // A new plan starts over; a stopped or gone server is no longer checked.
        assert_eq!(p.latest("ns", "ok", &plan("http://ok/v2", 60)), None);
        assert_eq!(p.len(), 3);
        p.stop("ns", "dead1");
        p.retain(&HashSet::from([("ns".to_string(), "ok".to_string())]));
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn news_is_a_first_check_a_failure_or_a_change() {
        assert!(wakes(None, &check(true, "fine")), "the first check");
        assert!(!wakes(Some(&check(true, "fine")), &check(true, "fine")));
        assert!(wakes(Some(&check(true, "fine")), &check(true, "2 tools")));
        assert!(wakes(Some(&check(false, "down")), &check(true, "fine")));
        assert!(
            wakes(Some(&check(false, "down")), &check(false, "down")),
            "a failure is counted once per interval: it always wakes"
        );
    }
}

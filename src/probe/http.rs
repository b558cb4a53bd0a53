//! The probe's HTTP/1.1 client: hyper's pooled client over rustls (ring provider, the system's
//! trust roots), the stack kube already links. It follows no redirects (hyper never does) and
//! reads bodies frame by frame under a byte cap.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::error::{Fault, classify};

pub type Request = http::Request<Full<Bytes>>;
pub type Response = http::Response<Incoming>;

#[derive(Clone)]
pub struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Http {
    /// A client whose TCP connects are bounded by `connect_timeout`. Loading the system's trust
    /// roots reads files, so build one client and reuse it.
    pub fn new(connect_timeout: Duration) -> Result<Http, String> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!(error = %e, "skipping unreadable trust roots");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "trust roots loaded");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(4)
            .build(https);
        Ok(Http { client })
    }

    pub async fn send(&self, req: Request) -> Result<Response, Fault> {
        self.client.request(req).await.map_err(|e| classify(&e))
    }
}

/// A response body read under a cap on the total bytes.
pub struct Body {
    inner: Incoming,
    read: usize,
    cap: usize,
}

impl Body {
    pub fn new(inner: Incoming, cap: usize) -> Self {
        Body {
            inner,
            read: 0,
            cap,
        }
    }

    /// The next data chunk; `None` at the end of the body.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Fault> {
        loop {
            let Some(frame) = self.inner.frame().await else {
                return Ok(None);
            };
            let frame = frame.map_err(|e| classify(&e))?;
            if let Ok(data) = frame.into_data() {
                self.read += data.len();
                if self.read > self.cap {
                    return Err(Fault::TooLarge(self.cap));
                }
                if !data.is_empty() {
                    return Ok(Some(data));
                }
            }
        }
    }

    /// The whole body.
    pub async fn all(mut self) -> Result<Bytes, Fault> {
        let mut buf = BytesMut::new();
        while let Some(c) = self.chunk().await? {
            buf.extend_from_slice(&c);
        }
        Ok(buf.freeze())
    }
}

/// The media type of a response, lower-cased, without parameters; `None` when absent.
pub fn media_type(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

//! One request of a session over HTTP: headers, bounds, redirects and auth refusals, and reading a JSON or SSE answer.

use super::*;

impl Session<'_> {
    pub(super) fn request(
        &self,
        method: Method,
        uri: &Uri,
        extra: &[(HeaderName, HeaderValue)],
        body: Option<&Json>,
    ) -> Result<crate::probe::http::Request, Fault> {
        let mut b = http::Request::builder().method(method).uri(uri.clone());
        for (k, v) in &self.opts.headers {
            b = b.header(k, v);
        }
        for (k, v) in extra {
            b = b.header(k, v);
        }
        let bytes = match body {
            Some(j) => {
                b = b.header(CONTENT_TYPE, JSON_TYPE);
                Bytes::from(serde_json::to_vec(j).map_err(|e| Fault::Http(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        b.body(Full::new(bytes))
            .map_err(|e| Fault::Http(e.to_string()))
    }

    pub(super) async fn send(
        &self,
        step: &str,
        method: Method,
        uri: &Uri,
        extra: &[(HeaderName, HeaderValue)],
        body: Option<&Json>,
    ) -> Result<Response, ProbeError> {
        let req = self
            .request(method, uri, extra, body)
            .map_err(|f| ProbeError::new(step, f))?;
        // The session's URL, moved or not, is followed for every request that goes to it.
        let to_base = *uri == self.uri;
        let mut uri = match self.moved.lock() {
            Ok(m) if to_base => m.clone().unwrap_or_else(|| uri.clone()),
            _ => uri.clone(),
        };
        let mut req = req;
        *req.uri_mut() = uri.clone();
        for hop in 0..=MAX_REDIRECTS {
            tracing::debug!(step, "sending");
            let retry = req.clone();
            let resp = self.bounded(step, self.http.send(req)).await?;
            self.answered
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(step, status = resp.status().as_u16(), "answered");
            match self.same_origin_redirect(&retry, &resp) {
                Some(next) if hop < MAX_REDIRECTS => {
                    let line = format!(
                        "{step}: followed HTTP {} to {} (same origin)",
                        resp.status().as_u16(),
                        describe_location(&self.url, &next.to_string())
                    );
                    if let Ok(mut r) = self.redirects.lock() {
                        r.push(line);
                    }
                    if to_base && let Ok(mut m) = self.moved.lock() {
                        *m = Some(next.clone());
                    }
                    uri = next;
                    req = retry;
                    *req.uri_mut() = uri.clone();
                }
                _ => {
                    self.refuse_auth_and_redirects(step, &resp)?;
                    return Ok(resp);
                }
            }
        }
        Err(ProbeError::new(
            step,
            Fault::Protocol(format!("more than {MAX_REDIRECTS} redirects")),
        ))
    }

    /// Where a redirect that keeps the method and the origin points (307/308 for any method,
    /// 301/302/303 for a GET): the Python SDK's `/mcp/` -> `/mcp`. Another origin is never
    /// followed (credentials would go with it).
    fn same_origin_redirect(
        &self,
        req: &crate::probe::http::Request,
        resp: &Response,
    ) -> Option<Uri> {
        let s = resp.status();
        let keeps_method =
            s == StatusCode::TEMPORARY_REDIRECT || s == StatusCode::PERMANENT_REDIRECT;
        if !(keeps_method || (s.is_redirection() && req.method() == Method::GET)) {
            return None;
        }
        let location = resp.headers().get(LOCATION)?.to_str().ok()?;
        let here = Url::parse(&req.uri().to_string()).ok()?;
        let next = here.join(location).ok()?;
        if next.origin() != self.url.origin() {
            return None;
        }
        next.as_str().parse().ok()
    }

    /// 401/403 and 3xx end the probe whatever the step.
    pub(super) fn refuse_auth_and_redirects(
        &self,
        step: &str,
        resp: &Response,
    ) -> Result<(), ProbeError> {
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let www = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .map(|v| clip(&String::from_utf8_lossy(v.as_bytes()), 300));
            // A 403 without a challenge to a request without credentials is no auth verdict:
            // a DNS-rebinding guard (`invalid Host header`), an IP allow list, a WAF.
            if status == StatusCode::FORBIDDEN && www.is_none() && self.opts.headers.is_empty() {
                return Err(ProbeError::new(
                    step,
                    Fault::Status {
                        status: status.as_u16(),
                        detail: " (no WWW-Authenticate challenge and no credentials sent: refused by the server, not asking for authentication; a Host/Origin guard or an allow list?)".into(),
                    },
                ));
            }
            return Err(ProbeError::new(
                step,
                Fault::Auth {
                    status: status.as_u16(),
                    www_authenticate: www,
                },
            ));
        }
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| describe_location(&self.url, l))
                .unwrap_or_else(|| "(no Location)".into());
            return Err(ProbeError::new(
                step,
                Fault::Redirect {
                    status: status.as_u16(),
                    location,
                },
            ));
        }
        Ok(())
    }

    /// POSTs a JSON-RPC request and reads its response (JSON or an SSE stream).
    pub(super) async fn post_request(
        &self,
        step: &str,
        uri: &Uri,
        extra: &[(HeaderName, HeaderValue)],
        body: &Json,
        id: u64,
    ) -> Result<Reply, ProbeError> {
        let mut headers = vec![(ACCEPT, ACCEPT_BOTH)];
        headers.extend_from_slice(extra);
        let resp = self
            .send(step, Method::POST, uri, &headers, Some(body))
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let (_, body) = resp.into_parts();
            let bytes =
                tokio::time::timeout_at(self.deadline, Body::new(body, ERROR_BODY_CAP).all())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
            return Ok(Reply::Rejected {
                status,
                rpc: rpc_error_in(&bytes),
            });
        }
        let (parts, body) = resp.into_parts();
        let outcome = match media_type(&parts.headers).as_deref() {
            Some("application/json") => {
                let bytes = self
                    .bounded(step, Body::new(body, self.opts.max_body).all())
                    .await?;
                response_in_json(&bytes, id).map_err(|f| ProbeError::new(step, f))?
            }
            Some("text/event-stream") => self.response_in_sse(step, body, id).await?,
            other => {
                let fault = wrong_type(other, "application/json or text/event-stream", status);
                return Err(ProbeError::new(step, fault));
            }
        };
        Ok(Reply::Answer {
            headers: parts.headers,
            outcome,
        })
    }

    pub(super) async fn response_in_sse(
        &self,
        step: &str,
        body: hyper::body::Incoming,
        id: u64,
    ) -> Result<Result<Json, RpcError>, ProbeError> {
        let mut body = Body::new(body, self.opts.max_body.saturating_mul(SSE_STREAM_FACTOR));
        let mut parser = SseParser::new(self.opts.max_body);
        loop {
            let Some(chunk) = self.bounded(step, body.chunk()).await? else {
                return Err(ProbeError::new(step, Fault::Closed));
            };
            let events = parser
                .push(&chunk)
                .map_err(|e| ProbeError::new(step, sse_fault(e)))?;
            for ev in events {
                if ev.event != "message" {
                    continue;
                }
                let v: Json = serde_json::from_str(&ev.data)
                    .map_err(|e| ProbeError::new(step, bad_json(&e, ev.data.as_bytes())))?;
                if let Some(outcome) =
                    find_response(&v, id).map_err(|f| ProbeError::new(step, f))?
                {
                    return Ok(outcome);
                }
            }
        }
    }
}

/// The JSON-RPC error in an error response's body, if it is one.
pub(super) fn rpc_error_in(bytes: &[u8]) -> Option<RpcError> {
    let v: Json = serde_json::from_slice(bytes).ok()?;
    match jsonrpc::parse_message(&v).ok()? {
        Message::Response {
            outcome: Err(e), ..
        } => Some(e),
        _ => None,
    }
}

/// The response to request `id` in a JSON body.
pub(super) fn response_in_json(bytes: &[u8], id: u64) -> Result<Result<Json, RpcError>, Fault> {
    if bytes.is_empty() {
        return Err(Fault::BadJsonRpc(
            "an empty body instead of a response".into(),
        ));
    }
    let v: Json = serde_json::from_slice(bytes).map_err(|e| bad_json(&e, bytes))?;
    find_response(&v, id)?
        .ok_or_else(|| Fault::BadJsonRpc(format!("the body holds no response to request {id}")))
}

/// The response to `id` among the messages of `v`; errors with a null id count (the server
/// could not tell which request failed). Notifications and requests are skipped.
pub(super) fn find_response(v: &Json, id: u64) -> Result<Option<Result<Json, RpcError>>, Fault> {
    let messages = jsonrpc::parse_messages(v).map_err(Fault::BadJsonRpc)?;
    for m in messages {
        if let Message::Response { id: rid, outcome } = m
            && (id_matches(&rid, id) || (rid.is_null() && outcome.is_err()))
        {
            return Ok(Some(outcome));
        }
    }
    Ok(None)
}

pub(super) fn bad_json(e: &serde_json::Error, bytes: &[u8]) -> Fault {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
    Fault::BadJson(format!("{e}; body starts `{}`", clip(&head, 80)))
}

pub(super) fn sse_fault(e: crate::probe::sse::SseError) -> Fault {
    match e {
        crate::probe::sse::SseError::TooLarge(n) => Fault::TooLarge(n),
        other => Fault::Protocol(other.to_string()),
    }
}

pub(super) fn wrong_type(media: Option<&str>, expected: &'static str, status: StatusCode) -> Fault {
    match media {
        Some("text/html" | "application/xhtml+xml") => Fault::NotMcp(format!(
            "HTTP {} with an HTML page (a web server, not an MCP endpoint)",
            status.as_u16()
        )),
        Some(m) => Fault::ContentType {
            got: clip(m, 80),
            expected,
        },
        None => Fault::ContentType {
            got: "(none)".into(),
            expected,
        },
    }
}

/// A redirect target for a message: scheme, host, port and path only (a query may hold tokens).
pub(super) fn describe_location(base: &Url, location: &str) -> String {
    match base.join(location) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_username("");
            let _ = u.set_password(None);
            let other = if u.host_str() != base.host_str()
                || u.port_or_known_default() != base.port_or_known_default()
            {
                " (another host)"
            } else {
                ""
            };
            format!("{}{other}", clip(u.as_str(), 200))
        }
        Err(_) => "(an invalid Location)".into(),
    }
}

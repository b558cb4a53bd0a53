//! Removing denied tools from a `tools/list` result (pure). The result comes as one JSON body or
//! as an SSE stream whose events carry JSON-RPC messages; only the response to the listing
//! request is rewritten, every other event (progress, logging, server requests) is kept as it
//! came.

use serde_json::Value as Json;

use super::routes::ToolPolicy;

/// Filters `result.tools` of the response with `id`; `true` when it was found. Messages that are
/// not that response are left alone.
fn filter_message(msg: &mut Json, id: &Json, policy: &ToolPolicy) -> bool {
    if msg.get("id") != Some(id) {
        return false;
    }
    let Some(tools) = msg
        .get_mut("result")
        .and_then(|r| r.get_mut("tools"))
        .and_then(Json::as_array_mut)
    else {
        return false;
    };
    tools.retain(|t| {
        t.get("name")
            .and_then(Json::as_str)
            .is_some_and(|n| policy.allows(n))
    });
    true
}

/// A JSON body (one message, or a batch of them) with the listing filtered; `None` when the body
/// is not JSON (it is then passed on as it came: the client sees the upstream's fault).
pub fn filter_json(body: &[u8], id: &Json, policy: &ToolPolicy) -> Option<Vec<u8>> {
    let mut v: Json = serde_json::from_slice(body).ok()?;
    match &mut v {
        Json::Array(items) => {
            for m in items {
                filter_message(m, id, policy);
            }
        }
        m => {
            filter_message(m, id, policy);
        }
    }
    serde_json::to_vec(&v).ok()
}

/// An SSE body with the listing filtered. Events are split on blank lines (LF or CRLF); an event
/// whose data is the listing response is written again with the filtered JSON as one `data:`
/// line, its other fields (`id:`, `event:`, `retry:`, comments) kept.
pub fn filter_sse(body: &str, id: &Json, policy: &ToolPolicy) -> String {
    let text = body.replace("\r\n", "\n");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let (event, tail) = match rest.find("\n\n") {
            Some(i) => (&rest[..i], &rest[i + 2..]),
            None => (rest, ""),
        };
        rest = tail;
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        let rewritten = (!data.is_empty())
            .then(|| serde_json::from_str::<Json>(&data.join("\n")).ok())
            .flatten()
            .and_then(|mut m| {
                filter_message(&mut m, id, policy)
                    .then(|| serde_json::to_string(&m).ok())
                    .flatten()
            });
        match rewritten {
            Some(json) => {
                for l in event.lines().filter(|l| !l.starts_with("data:")) {
                    out.push_str(l);
                    out.push('\n');
                }
                out.push_str("data: ");
                out.push_str(&json);
                out.push('\n');
            }
            None => {
                out.push_str(event);
                out.push('\n');
            }
        }
        if !tail.is_empty() || text.ends_with("\n\n") {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deny(names: &[&str]) -> ToolPolicy {
        ToolPolicy {
            allow: Default::default(),
            deny: names.iter().map(|s| s.to_string()).collect(),
            rate_limit: None,
        }
    }

    #[test]
    fn json_and_sse_listings_lose_denied_tools_only() {
        let list = json!({"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"echo"},{"name":"add"}],"nextCursor":"c"}});
        let out = filter_json(
            &serde_json::to_vec(&list).unwrap(),
            &json!(2),
            &deny(&["add"]),
        )
        .unwrap();
        let out: Json = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["result"]["tools"], json!([{"name":"echo"}]));
        assert_eq!(out["result"]["nextCursor"], "c");
        // another id is not touched
        let same = filter_json(
            &serde_json::to_vec(&list).unwrap(),
            &json!(3),
            &deny(&["add"]),
        )
        .unwrap();
        assert_eq!(serde_json::from_slice::<Json>(&same).unwrap(), list);

        let sse = format!(
            "event: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}}\r\n\r\n: c\r\nid: 7\r\nevent: message\r\ndata: {}\r\n\r\n",
            serde_json::to_string(&list).unwrap()
        );
        let out = filter_sse(&sse, &json!(2), &deny(&["echo"]));
        assert!(out.starts_with("event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n"), "{out}");
        assert!(out.contains(": c\nid: 7\nevent: message\ndata: {"), "{out}");
        assert!(
            !out.contains("\"echo\"") && out.contains("\"add\"") && out.ends_with("\n\n"),
            "{out}"
        );
        assert_eq!(filter_json(b"<html>", &json!(1), &deny(&[])), None);
    }
}

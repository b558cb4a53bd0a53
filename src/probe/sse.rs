//! An incremental Server-Sent Events parser (pure: bytes in, events out).
//!
//! Follows the WHATWG event-stream rules that matter to MCP: `field: value` lines, one optional
//! space after the colon, `:` comment lines ignored, multi-line `data` joined by `\n`, an empty
//! line dispatches, an event with an empty data buffer is dropped (the priming events some servers
//! send before their first message). Lines end with LF or CRLF (a lone CR is not a line end here).
//! Every buffer is bounded: an event or line longer than `max_event` bytes is an error, so a
//! hostile stream cannot make the parser grow without limit.

use thiserror::Error;

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field, `message` when absent.
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SseError {
    #[error("an SSE event exceeds {0} bytes")]
    TooLarge(usize),
    #[error("the SSE stream is not UTF-8")]
    NotUtf8,
}

#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
    max_event: usize,
    started: bool,
}

impl SseParser {
    pub fn new(max_event: usize) -> Self {
        SseParser {
            line: Vec::new(),
            event: None,
            data: String::new(),
            has_data: false,
            id: None,
            max_event,
            started: false,
        }
    }

    /// Feeds a chunk of the stream; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if !self.started && !rest.is_empty() {
            self.started = true;
            rest = rest.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(rest);
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..pos]);
            rest = &rest[pos + 1..];
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if let Some(ev) = self.line_done(&line)? {
                out.push(ev);
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > self.max_event {
            return Err(SseError::TooLarge(self.max_event));
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > self.max_event {
                    return Err(SseError::TooLarge(self.max_event));
                }
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {} // `retry` and unknown fields: nothing for a probe to do
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        let data = std::mem::take(&mut self.data);
        let had = std::mem::replace(&mut self.has_data, false);
        if !had || data.is_empty() {
            return None;
        }
        Some(SseEvent {
            event: event
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "message".into()),
            data,
            id: self.id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut SseParser, s: &str) -> Vec<SseEvent> {
        p.push(s.as_bytes()).unwrap()
    }

    #[test]
    fn events_across_chunks_and_line_endings() {
        let mut p = SseParser::new(1024);
        assert!(all(&mut p, "event: endpoint\r\nda").is_empty());
        let evs = all(
            &mut p,
            "ta: /messages?s=1\r\n\r\n: comment\n\ndata: {\"a\":1}\n\n",
        );
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].event, "endpoint");
        assert_eq!(evs[0].data, "/messages?s=1");
        assert_eq!(evs[1].event, "message");
        assert_eq!(evs[1].data, "{\"a\":1}");
    }

    #[test]
    fn multi_line_data_no_space_and_bom() {
        let mut p = SseParser::new(1024);
        let evs = all(&mut p, "\u{feff}data:a\ndata: b\nid: 7\n\n");
        assert_eq!(evs[0].data, "a\nb");
        assert_eq!(evs[0].id.as_deref(), Some("7"));
    }

    #[test]
    fn priming_event_with_empty_data_is_dropped() {
        let mut p = SseParser::new(1024);
        let evs = all(&mut p, "id: x\ndata: \n\nevent: message\ndata: {}\n\n");
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].data, "{}");
    }

    #[test]
    fn unfinished_event_is_not_dispatched() {
        let mut p = SseParser::new(1024);
        assert!(all(&mut p, "data: {\"partial\"").is_empty());
        assert!(all(&mut p, "\n").is_empty());
    }

    #[test]
    fn bounded() {
        let mut p = SseParser::new(8);
        assert_eq!(p.push(b"data: 0123456789\n"), Err(SseError::TooLarge(8)));
        let mut p = SseParser::new(8);
        assert_eq!(p.push(b"0123456789"), Err(SseError::TooLarge(8)));
        let mut p = SseParser::new(64);
        assert_eq!(p.push(b"data: \xff\xfe\n"), Err(SseError::NotUtf8));
    }
}

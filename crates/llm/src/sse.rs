//! Incremental decoders for streamed bodies: server-sent events (the WHATWG event-stream format)
//! and newline-delimited JSON. Both are fed bytes as they arrive and hand out complete items;
//! an item split across network reads is kept until its end arrives.

/// One server-sent event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; empty when the server sent none (the spec's "message").
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Decodes `text/event-stream` bodies.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    pos: usize,
    event: String,
    data: String,
    has_data: bool,
    started: bool,
}

/// A body that is not valid UTF-8 where text was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the body.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 4096 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if the bytes fed so far hold one.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, DecodeError> {
        while let Some((start, end)) = self.next_line(false) {
            if let Some(ev) = self.line(start, end)? {
                return Ok(Some(ev));
            }
        }
        Ok(None)
    }

    /// At the end of the body: a last line without its line break still counts, but an event
    /// without its closing blank line is dropped, as the spec says.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, DecodeError> {
        while let Some((start, end)) = self.next_line(true) {
            if let Some(ev) = self.line(start, end)? {
                return Ok(Some(ev));
            }
        }
        Ok(None)
    }

    /// Bytes received that do not yet form a complete line.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next line as a byte range of `buf`, consuming its terminator (CRLF, LF or CR).
    fn next_line(&mut self, at_eof: bool) -> Option<(usize, usize)> {
        let rest = &self.buf[self.pos..];
        let i = rest.iter().position(|&b| b == b'\n' || b == b'\r');
        let start = self.pos;
        match i {
            Some(i) => {
                let end = start + i;
                let term = if self.buf[end] == b'\r' {
                    match self.buf.get(end + 1) {
                        Some(b'\n') => 2,
                        Some(_) => 1,
                        // A CR at the end of what we have: its LF may be in the next read.
                        None if at_eof => 1,
                        None => return None,
                    }
                } else {
                    1
                };
                self.pos = end + term;
                Some((start, end))
            }
            None if at_eof && !rest.is_empty() => {
                self.pos = self.buf.len();
                Some((start, self.buf.len()))
            }
            None => None,
        }
    }

    fn line(&mut self, start: usize, end: usize) -> Result<Option<SseEvent>, DecodeError> {
        let mut bytes = &self.buf[start..end];
        if !self.started {
            self.started = true;
            if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
                bytes = rest;
            }
        }
        if bytes.is_empty() {
            // A blank line dispatches the event gathered so far.
            let event = std::mem::take(&mut self.event);
            if !self.has_data {
                return Ok(None);
            }
            self.has_data = false;
            let mut data = std::mem::take(&mut self.data);
            if data.ends_with('\n') {
                data.pop();
            }
            return Ok(Some(SseEvent { event, data }));
        }
        if bytes[0] == b':' {
            return Ok(None); // a comment, used by servers as keep-alive
        }
        let line = std::str::from_utf8(bytes)
            .map_err(|e| DecodeError(format!("an event-stream line is not valid UTF-8 ({e})")))?;
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => {
                self.event.clear();
                self.event.push_str(value);
            }
            // `id` and `retry` drive browser reconnection, which an API client does not do;
            // unknown fields are ignored, as the spec says.
            _ => {}
        }
        Ok(None)
    }
}

/// Decodes newline-delimited JSON bodies into lines (blank lines skipped).
#[derive(Debug, Default)]
pub struct LineDecoder {
    buf: Vec<u8>,
    pos: usize,
}

impl LineDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 4096 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete non-blank line, without its terminator.
    pub fn next_line(&mut self, at_eof: bool) -> Result<Option<&str>, DecodeError> {
        loop {
            let rest = &self.buf[self.pos..];
            let (start, end) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let r = (self.pos, self.pos + i);
                    self.pos += i + 1;
                    r
                }
                None if at_eof && !rest.is_empty() => {
                    let r = (self.pos, self.buf.len());
                    self.pos = self.buf.len();
                    r
                }
                None => return Ok(None),
            };
            let mut line = &self.buf[start..end];
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return std::str::from_utf8(line)
                .map(Some)
                .map_err(|e| DecodeError(format!("a streamed line is not valid UTF-8 ({e})")));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = vec![];
        for c in chunks {
            d.feed(c);
            while let Some(e) = d.next_event().unwrap() {
                out.push(e);
            }
        }
        while let Some(e) = d.finish().unwrap() {
            out.push(e);
        }
        out
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn fields_comments_and_multiline_data() {
        let got = all(&[b"\xEF\xBB\xBF: keep-alive\nevent: delta\ndata: {\"a\":\ndata:1}\nid: 7\nretry: 10\n\ndata: x\n\n"]);
        assert_eq!(got, vec![ev("delta", "{\"a\":\n1}"), ev("", "x")]);
    }

    #[test]
    fn split_anywhere_and_any_line_ending() {
        let body = b"event: a\r\ndata: one\r\n\r\ndata: two\r\rdata:three\n\n";
        let whole = all(&[body]);
        assert_eq!(whole, vec![ev("a", "one"), ev("", "two"), ev("", "three")]);
        for cut in 1..body.len() {
            assert_eq!(all(&[&body[..cut], &body[cut..]]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(all(&bytes), whole);
    }

    #[test]
    fn blank_events_and_unterminated_tail() {
        // An event with no data is not dispatched; an event without its blank line at the end of
        // the body is dropped.
        assert_eq!(all(&[b"event: ping\n\ndata: last"]), vec![]);
        assert_eq!(all(&[b"data\n\n"]), vec![ev("", "")]);
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut d = SseDecoder::new();
        d.feed(b"data: \xff\xfe\n\n");
        assert!(d.next_event().is_err());
    }

    #[test]
    fn ndjson_lines() {
        let mut d = LineDecoder::new();
        d.feed(b"{\"a\":1}\n\n{\"b\"");
        assert_eq!(d.next_line(false).unwrap(), Some("{\"a\":1}"));
        assert_eq!(d.next_line(false).unwrap(), None);
        d.feed(b":2}\r\n{\"c\":3}");
        assert_eq!(d.next_line(false).unwrap(), Some("{\"b\":2}"));
        assert_eq!(d.next_line(false).unwrap(), None);
        assert_eq!(d.next_line(true).unwrap(), Some("{\"c\":3}"));
        assert_eq!(d.next_line(true).unwrap(), None);
    }
}

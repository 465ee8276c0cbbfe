//! The small HTTP/1.1 client the CLI's server commands (`runnel sql`, `runnel fn`) use: one
//! request per connection, bodies sent with a length, answers read with a length, chunked,
//! or until the connection closes, line by line for streams. Enough for runnel's own REST
//! API without another dependency (no TLS: the CLI talks to a local or tunnelled server).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

/// Longest answer line accepted from the server, in bytes.
const LINE_BYTES_MAX: usize = 16 << 20;
/// Largest whole answer read by [`Answer::text`], in bytes.
const ANSWER_BYTES_MAX: usize = 256 << 20;
/// How long to wait for the server to accept a connection or send anything, when not streaming.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Where a runnel server's HTTP API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
}

impl Server {
    /// Parses `http://host:port` (or `host:port`); `command` names the caller in errors.
    pub fn parse(url: &str, command: &str) -> anyhow::Result<Server> {
        if url.starts_with("https://") {
            bail!("https is not supported by {command} yet; use http://");
        }
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let authority = rest.split('/').next().unwrap_or(rest);
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().with_context(|| format!("bad port in {url}"))?),
            None => (authority.to_string(), 80),
        };
        Ok(Server { host, port })
    }

    fn connect(&self) -> anyhow::Result<TcpStream> {
        let addr = format!("{}:{}", self.host, self.port);
        let stream = TcpStream::connect(&addr).map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                "connection refused".to_string()
            } else {
                e.to_string()
            };
            anyhow::anyhow!("cannot reach runnel at http://{addr}: {why} (is \"runnel serve\" running?)")
        })?;
        stream.set_read_timeout(Some(NETWORK_TIMEOUT))?;
        Ok(stream)
    }

    /// Sends one request and reads the answer's status line and headers.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> anyhow::Result<Answer> {
        let mut stream = self.connect()?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}:{}\r\n", self.host, self.port);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        stream.flush()?;
        Answer::new(BufReader::new(stream))
    }

    /// A request whose answer is read whole and parsed as JSON: the JSON on a 2xx status
    /// (`null` for an empty body), else an error with the server's message.
    pub fn json(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> anyhow::Result<serde_json::Value> {
        let answer =
            self.request(method, path, &[("Content-Type", content_type), ("Accept", "application/json")], body)?;
        let status = answer.status;
        let text = answer.text()?;
        let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        if !(200..300).contains(&status) {
            let message = json.as_ref().and_then(|j| j["message"].as_str()).map_or(text.trim(), |m| m);
            bail!("{message} (HTTP {status})");
        }
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        json.with_context(|| format!("the server's answer is not JSON: {}", text.trim()))
    }
}

/// An HTTP/1.1 answer, its body read line by line or whole.
pub struct Answer {
    reader: BufReader<TcpStream>,
    pub status: u16,
    chunked: bool,
    /// Bytes left in the current chunk (chunked) or in the body (Content-Length).
    left: Option<usize>,
    pending: Vec<u8>,
    done: bool,
}

impl Answer {
    fn new(mut reader: BufReader<TcpStream>) -> anyhow::Result<Answer> {
        let mut status_line = String::new();
        reader.read_line(&mut status_line).context("the server closed the connection")?;
        let status =
            status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("not an HTTP answer")?;
        let (mut chunked, mut length) = (false, None);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                    "content-length" => length = v.trim().parse().ok(),
                    _ => {}
                }
            }
        }
        Ok(Answer {
            reader,
            status,
            chunked,
            left: if chunked { Some(0) } else { length },
            pending: Vec::new(),
            done: false,
        })
    }

    /// How long one read waits before [`line`](Self::line) checks its stop flag again.
    pub fn set_read_timeout(&self, timeout: Duration) -> anyhow::Result<()> {
        self.reader.get_ref().set_read_timeout(Some(timeout))?;
        Ok(())
    }

    /// The whole body as text (at most [`ANSWER_BYTES_MAX`]).
    pub fn text(mut self) -> anyhow::Result<String> {
        let never = AtomicBool::new(false);
        while self.fill(&never)? {
            if self.pending.len() > ANSWER_BYTES_MAX {
                bail!("the answer is longer than {ANSWER_BYTES_MAX} bytes");
            }
        }
        Ok(String::from_utf8_lossy(&self.pending).into_owned())
    }

    /// Reads more body bytes into `pending`; false at the end. Timeouts retry unless `stop`.
    fn fill(&mut self, stop: &AtomicBool) -> anyhow::Result<bool> {
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(false);
            }
            let result = self.fill_once();
            match result {
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                Err(e) => return Err(e.into()),
                Ok(more) => return Ok(more),
            }
        }
    }

    fn fill_once(&mut self) -> std::io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        if self.chunked && self.left == Some(0) {
            let mut size = String::new();
            if self.reader.read_line(&mut size)? == 0 {
                self.done = true;
                return Ok(false);
            }
            let size = size.trim();
            if size.is_empty() {
                return Ok(true); // the CRLF after a chunk
            }
            let n = usize::from_str_radix(size.split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if n == 0 {
                self.done = true;
                return Ok(false);
            }
            self.left = Some(n);
        }
        let want = match self.left {
            Some(0) if !self.chunked => {
                self.done = true;
                return Ok(false);
            }
            Some(n) => n.min(READ_CHUNK_BYTES),
            None => READ_CHUNK_BYTES,
        };
        let mut buf = vec![0u8; want];
        let n = self.reader.read(&mut buf)?;
        if n == 0 {
            self.done = true;
            return Ok(false);
        }
        self.pending.extend_from_slice(&buf[..n]);
        if let Some(left) = &mut self.left {
            *left -= n;
        }
        Ok(true)
    }

    /// The next line of the body (without its newline), or `None` at the end or once `stop`
    /// is set.
    pub fn line(&mut self, stop: &AtomicBool) -> anyhow::Result<Option<String>> {
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return Ok(Some(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned()));
            }
            if self.pending.len() > LINE_BYTES_MAX {
                bail!("a line of the answer is longer than {LINE_BYTES_MAX} bytes");
            }
            if !self.fill(stop)? {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                let line = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                return Ok(Some(line));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse() {
        assert_eq!(
            Server::parse("http://127.0.0.1:8080", "x").unwrap(),
            Server { host: "127.0.0.1".into(), port: 8080 }
        );
        assert_eq!(Server::parse("localhost:9", "x").unwrap(), Server { host: "localhost".into(), port: 9 });
        assert_eq!(Server::parse("http://h/v1", "x").unwrap(), Server { host: "h".into(), port: 80 });
        assert!(Server::parse("https://x:1", "x").is_err());
        assert!(Server::parse("http://x:port", "x").is_err());
    }
}

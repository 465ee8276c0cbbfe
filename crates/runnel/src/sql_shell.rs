//! `runnel sql`: a shell for streaming SQL like the ksql CLI, speaking ksqlDB's REST API (so it
//! works against runnel or ksqlDB): statements go to `POST /ksql`, SELECT and PRINT to
//! `POST /query-stream`, whose rows are printed as they arrive until LIMIT, the end of a pull
//! query, or Ctrl-C.
//!
//! `runnel sql` reads statements interactively (multi-line until `;`, history in
//! `~/.runnel_sql_history`); `-e "..."` runs the given statements and `-f FILE` a script, then
//! exit (non-zero after an error). `--output json` prints the server's JSON instead of tables.
//!
//! The HTTP client is a small HTTP/1.1 client over a TCP stream (requests with a length, answers
//! with a length or chunked), enough for these endpoints without another dependency.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value as Json, json};

/// Longest answer line accepted from the server, in bytes.
const LINE_BYTES_MAX: usize = 16 << 20;
/// How long to wait for the server to accept a connection or send anything, when not streaming.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a streaming read wakes up to notice Ctrl-C.
const INTERRUPT_CHECK: Duration = Duration::from_millis(200);
/// Narrowest column of a table.
const COLUMN_MIN_WIDTH: usize = 8;
/// History entries kept.
const HISTORY_ENTRIES_MAX: usize = 10_000;

#[derive(Args, Debug, Clone)]
pub struct SqlArgs {
    /// URL of runnel's (or ksqlDB's) HTTP API.
    #[arg(long, env = "RUNNEL_SQL_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Run these statements and exit.
    #[arg(short = 'e', long = "execute", value_name = "SQL", conflicts_with = "file")]
    execute: Option<String>,
    /// Run the statements of this file and exit.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<std::path::PathBuf>,
    /// Query properties sent with every statement, e.g. `--property auto.offset.reset=earliest`.
    #[arg(long = "property", value_name = "NAME=VALUE")]
    properties: Vec<String>,
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

struct Shell {
    host: String,
    port: u16,
    properties: serde_json::Map<String, Json>,
    output: Output,
    interrupted: Arc<AtomicBool>,
}

pub fn run(args: SqlArgs) -> anyhow::Result<()> {
    let (host, port) = parse_server(&args.server)?;
    let mut properties = serde_json::Map::new();
    for p in &args.properties {
        let (k, v) = p.split_once('=').with_context(|| format!("--property {p:?} is not NAME=VALUE"))?;
        properties.insert(k.to_string(), Json::String(v.to_string()));
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let mut shell = Shell { host, port, properties, output: args.output, interrupted: interrupted.clone() };
    if let Some(sql) = &args.execute {
        return shell.run_script(sql);
    }
    if let Some(file) = &args.file {
        let sql = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        return shell.run_script(&sql);
    }
    if !std::io::stdin().is_terminal() {
        let mut sql = String::new();
        std::io::stdin().read_to_string(&mut sql)?;
        return shell.run_script(&sql);
    }
    // Ctrl-C during a push query stops the query, not the shell.
    let flag = interrupted.clone();
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        FLAG.store(Arc::into_raw(flag) as *mut AtomicBool, Ordering::SeqCst);
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
    shell.interactive()
}

static FLAG: std::sync::atomic::AtomicPtr<AtomicBool> = std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

extern "C" fn on_sigint(_: libc::c_int) {
    let flag = FLAG.load(Ordering::SeqCst);
    if !flag.is_null() {
        // SAFETY: the pointer comes from Arc::into_raw and is never freed.
        unsafe { (*flag).store(true, Ordering::SeqCst) };
    }
}

fn parse_server(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    if url.starts_with("https://") {
        bail!("https is not supported by runnel sql yet; use http://");
    }
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().with_context(|| format!("bad port in {url}"))?),
        None => (authority.to_string(), 80),
    };
    Ok((host, port))
}

/// Splits a script into statements at `;` outside quotes and comments (`--` lines).
fn split_statements(sql: &str) -> (Vec<String>, String) {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '-') if chars.peek() == Some(&'-') => {
                // A comment to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            (None, '\'' | '`') => {
                quote = Some(c);
                current.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (None, ';') => {
                if !current.trim().is_empty() {
                    out.push(format!("{};", current.trim()));
                }
                current.clear();
            }
            _ => current.push(c),
        }
    }
    (out, current)
}

impl Shell {
    fn run_script(&mut self, sql: &str) -> anyhow::Result<()> {
        let (statements, rest) = split_statements(sql);
        if !rest.trim().is_empty() {
            bail!("the last statement has no closing ';': {}", rest.trim());
        }
        for s in statements {
            if !self.statement(&s)? {
                bail!("stopped at the statement that failed");
            }
        }
        Ok(())
    }

    fn interactive(&mut self) -> anyhow::Result<()> {
        let config =
            rustyline::Config::builder().max_history_size(HISTORY_ENTRIES_MAX)?.auto_add_history(false).build();
        let mut editor = rustyline::DefaultEditor::with_config(config)?;
        let history = std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".runnel_sql_history"));
        if let Some(h) = &history {
            let _ = editor.load_history(h);
        }
        println!("runnel sql: statements end with ';'. Ctrl-C stops a query; Ctrl-D or 'exit' leaves.");
        let mut buffer = String::new();
        loop {
            let prompt = if buffer.is_empty() { "runnel> " } else { "     -> " };
            match editor.readline(prompt) {
                Ok(line) => {
                    if buffer.is_empty() && matches!(line.trim().to_ascii_lowercase().as_str(), "exit" | "quit") {
                        break;
                    }
                    buffer.push_str(&line);
                    buffer.push('\n');
                    let (statements, rest) = split_statements(&buffer);
                    if statements.is_empty() {
                        continue;
                    }
                    let _ = editor.add_history_entry(buffer.trim());
                    buffer = if rest.trim().is_empty() { String::new() } else { rest };
                    for s in statements {
                        if let Err(e) = self.statement(&s) {
                            eprintln!("{e:#}");
                        }
                    }
                }
                Err(rustyline::error::ReadlineError::Interrupted) => buffer.clear(),
                Err(rustyline::error::ReadlineError::Eof) => break,
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
        Ok(())
    }

    /// Runs one statement; returns whether it succeeded.
    fn statement(&mut self, sql: &str) -> anyhow::Result<bool> {
        let first = sql.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        if first == "SELECT" || first == "PRINT" {
            return self.query(sql);
        }
        if first == "SET" || first == "UNSET" {
            // Properties are the client's, as in the ksql CLI.
            return Ok(self.set_property(sql));
        }
        let body = json!({"ksql": sql, "streamsProperties": self.properties});
        let (status, text) = self.post("/ksql", &body)?;
        let answer: Json =
            serde_json::from_str(&text).with_context(|| format!("the server's answer is not JSON: {text}"))?;
        if self.output == Output::Json {
            println!("{}", serde_json::to_string_pretty(&answer)?);
            return Ok(status == 200);
        }
        if status != 200 {
            eprintln!("{}", answer["message"].as_str().unwrap_or(&text));
            return Ok(false);
        }
        for entity in answer.as_array().into_iter().flatten() {
            print_entity(entity);
        }
        Ok(true)
    }

    fn set_property(&mut self, sql: &str) -> bool {
        let quoted: Vec<&str> = sql.split('\'').skip(1).step_by(2).collect();
        let unset = sql.trim_start().to_ascii_uppercase().starts_with("UNSET");
        match (unset, quoted.as_slice()) {
            (true, [name, ..]) => {
                self.properties.remove(*name);
                println!("Successfully unset local property '{name}'.");
                true
            }
            (false, [name, value, ..]) => {
                self.properties.insert(name.to_string(), Json::String(value.to_string()));
                println!("Successfully changed local property '{name}' to '{value}'.");
                true
            }
            _ => {
                eprintln!("SET takes 'property' = 'value'; UNSET takes 'property'");
                false
            }
        }
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

    fn send(&self, stream: &mut TcpStream, path: &str, body: &Json) -> anyhow::Result<()> {
        let body = body.to_string();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/vnd.ksql.v1+json\r\n\
             Accept: application/vnd.ksqlapi.delimited.v1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.host,
            self.port,
            body.len()
        )?;
        stream.flush()?;
        Ok(())
    }

    /// A whole answer: status and body text.
    fn post(&self, path: &str, body: &Json) -> anyhow::Result<(u16, String)> {
        let mut stream = self.connect()?;
        self.send(&mut stream, path, body)?;
        let mut reader = Body::new(BufReader::new(stream))?;
        let mut text = String::new();
        while let Some(line) = reader.line(&AtomicBool::new(false))? {
            text.push_str(&line);
            text.push('\n');
        }
        Ok((reader.status, text))
    }

    /// SELECT and PRINT: prints rows as they arrive.
    fn query(&self, sql: &str) -> anyhow::Result<bool> {
        let mut stream = self.connect()?;
        self.send(&mut stream, "/query-stream", &json!({"sql": sql, "properties": self.properties}))?;
        stream.set_read_timeout(Some(INTERRUPT_CHECK))?;
        self.interrupted.store(false, Ordering::SeqCst);
        let mut body = Body::new(BufReader::new(stream))?;
        if body.status != 200 {
            let mut text = String::new();
            while let Some(line) = body.line(&self.interrupted)? {
                text.push_str(&line);
            }
            let message =
                serde_json::from_str::<Json>(&text).ok().and_then(|j| j["message"].as_str().map(str::to_string));
            eprintln!("{}", message.unwrap_or(text));
            return Ok(false);
        }
        let mut widths: Vec<usize> = Vec::new();
        let mut rows = 0usize;
        while let Some(line) = body.line(&self.interrupted)? {
            if line.trim().is_empty() {
                continue;
            }
            let doc: Json = serde_json::from_str(&line).with_context(|| format!("bad row from the server: {line}"))?;
            if self.output == Output::Json {
                println!("{doc}");
                continue;
            }
            match &doc {
                Json::Object(o) if o.contains_key("columnNames") => {
                    let names: Vec<String> = o["columnNames"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|n| n.as_str().unwrap_or("").to_string())
                        .collect();
                    widths = names.iter().map(|n| n.len().max(COLUMN_MIN_WIDTH)).collect();
                    println!("{}", rule(&widths));
                    println!("{}", cells(&names, &widths));
                    println!("{}", rule(&widths));
                }
                Json::Array(values) => {
                    let texts: Vec<String> = values.iter().map(cell_text).collect();
                    println!("{}", cells(&texts, &widths));
                    rows += 1;
                }
                Json::Object(o) if o.contains_key("message") => {
                    eprintln!("{}", o["message"].as_str().unwrap_or_default());
                    return Ok(false);
                }
                _ => {}
            }
        }
        if self.output == Output::Table {
            println!("{}", rule(&widths));
            let why = if self.interrupted.load(Ordering::SeqCst) { "Query terminated" } else { "Query finished" };
            println!("{why}: {rows} row{}", if rows == 1 { "" } else { "s" });
        }
        Ok(true)
    }
}

/// An HTTP/1.1 answer read line by line (Content-Length, chunked, or until the connection closes).
struct Body {
    reader: BufReader<TcpStream>,
    status: u16,
    chunked: bool,
    /// Bytes left in the current chunk (chunked) or in the body (Content-Length).
    left: Option<usize>,
    pending: Vec<u8>,
    done: bool,
}

impl Body {
    fn new(mut reader: BufReader<TcpStream>) -> anyhow::Result<Body> {
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
        Ok(Body {
            reader,
            status,
            chunked,
            left: if chunked { Some(0) } else { length },
            pending: Vec::new(),
            done: false,
        })
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
            Some(n) => n.min(64 * 1024),
            None => 64 * 1024,
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

    /// The next line of the body (without its newline), or `None` at the end.
    fn line(&mut self, stop: &AtomicBool) -> anyhow::Result<Option<String>> {
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

fn rule(widths: &[usize]) -> String {
    let mut s = String::from("+");
    for w in widths {
        s.push_str(&"-".repeat(w + 2));
        s.push('+');
    }
    s
}

fn cells(values: &[String], widths: &[usize]) -> String {
    let mut s = String::from("|");
    for (i, v) in values.iter().enumerate() {
        let w = widths.get(i).copied().unwrap_or(COLUMN_MIN_WIDTH);
        s.push_str(&format!(" {v:<w$} |"));
    }
    s
}

fn cell_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => "null".into(),
        other => other.to_string(),
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let names: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    println!("{}", rule(&widths));
    println!("{}", cells(&names, &widths));
    println!("{}", rule(&widths));
    for r in &rows {
        println!("{}", cells(r, &widths));
    }
    println!("{}", rule(&widths));
}

fn s(v: &Json) -> String {
    cell_text(v)
}

/// Prints a `/ksql` entity the way the ksql CLI does.
fn print_entity(e: &Json) {
    let list = |key: &str| e[key].as_array().cloned().unwrap_or_default();
    match e["@type"].as_str().unwrap_or_default() {
        "currentStatus" => {
            let message = e["commandStatus"]["message"].as_str().unwrap_or_default();
            if !message.is_empty() {
                println!("{message}");
            }
        }
        "streams" | "tables" => {
            let key = if e["@type"] == "streams" { "streams" } else { "tables" };
            let rows = list(key)
                .iter()
                .map(|x| {
                    vec![s(&x["name"]), s(&x["topic"]), s(&x["keyFormat"]), s(&x["valueFormat"]), s(&x["isWindowed"])]
                })
                .collect();
            table(
                &[
                    if key == "streams" { "Stream Name" } else { "Table Name" },
                    "Kafka Topic",
                    "Key Format",
                    "Value Format",
                    "Windowed",
                ],
                rows,
            );
        }
        "kafka_topics" => {
            let rows = list("topics")
                .iter()
                .map(|t| vec![s(&t["name"]), t["replicaInfo"].as_array().map(|r| r.len()).unwrap_or(0).to_string()])
                .collect();
            table(&["Kafka Topic", "Partitions"], rows);
        }
        "queries" => {
            let rows = list("queries")
                .iter()
                .map(|q| {
                    vec![
                        s(&q["id"]),
                        s(&q["state"]),
                        q["sinks"].as_array().and_then(|a| a.first()).map(s).unwrap_or_default(),
                        s(&q["queryString"]),
                    ]
                })
                .collect();
            table(&["Query ID", "Status", "Sink Name", "Query String"], rows);
        }
        "properties" => {
            let rows = list("properties").iter().map(|p| vec![s(&p["name"]), s(&p["value"])]).collect();
            table(&["Property", "Value"], rows);
        }
        "variables" => {
            let rows = list("variables").iter().map(|p| vec![s(&p["name"]), s(&p["value"])]).collect();
            table(&["Variable Name", "Value"], rows);
        }
        "function_names" => {
            let rows = list("functions").iter().map(|f| vec![s(&f["name"]), s(&f["category"])]).collect();
            table(&["Function Name", "Category"], rows);
        }
        "describe_function" => {
            println!(
                "Name        : {}\nType        : {}\nDescription : {}",
                s(&e["name"]),
                s(&e["type"]),
                s(&e["description"])
            );
        }
        "sourceDescription" => {
            let d = &e["sourceDescription"];
            println!("Name                 : {}", s(&d["name"]));
            println!("Type                 : {}", s(&d["type"]));
            println!("Kafka topic          : {} (partitions: {})", s(&d["topic"]), s(&d["partitions"]));
            println!("Key format           : {}", s(&d["keyFormat"]));
            println!("Value format         : {}", s(&d["valueFormat"]));
            let rows = d["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    let kind = match f["type"].as_str() {
                        Some("KEY") => " (key)",
                        Some("HEADER") => " (header)",
                        _ => "",
                    };
                    vec![s(&f["name"]), format!("{}{kind}", s(&f["schema"]["type"]))]
                })
                .collect();
            table(&["Field", "Type"], rows);
            let ids =
                |k: &str| d[k].as_array().into_iter().flatten().map(|q| s(&q["id"])).collect::<Vec<_>>().join(", ");
            println!("Queries that read from this source: {}", ids("readQueries"));
            println!("Queries that write into this source: {}", ids("writeQueries"));
        }
        "queryDescription" => {
            let q = &e["queryDescription"];
            println!(
                "ID        : {}\nSQL       : {}\nSources   : {}\nSinks     : {}\nState     : {}",
                s(&q["id"]),
                s(&q["statementText"]),
                q["sources"],
                q["sinks"],
                s(&q["state"])
            );
        }
        _ => println!("{}", serde_json::to_string_pretty(e).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_split_at_semicolons_outside_quotes_and_comments() {
        let (statements, rest) = split_statements("SELECT 'a;b' FROM s; -- note; here\nSHOW STREAMS;\nDESCRIBE x");
        assert_eq!(statements, vec!["SELECT 'a;b' FROM s;", "SHOW STREAMS;"]);
        assert_eq!(rest.trim(), "DESCRIBE x");
    }

    #[test]
    fn servers_parse() {
        assert_eq!(parse_server("http://127.0.0.1:8080").unwrap(), ("127.0.0.1".into(), 8080));
        assert_eq!(parse_server("localhost:9").unwrap(), ("localhost".into(), 9));
        assert!(parse_server("https://x:1").is_err());
    }
}

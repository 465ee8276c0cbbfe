//! `runnel sql`: a shell for streaming SQL like the ksql CLI, speaking ksqlDB's REST API (so it
//! works against runnel or ksqlDB): statements go to `POST /ksql`, SELECT and PRINT to
//! `POST /query-stream`, whose rows are printed as they arrive until LIMIT, the end of a pull
//! query, or Ctrl-C.
//!
//! `runnel sql` reads statements interactively (multi-line until `;`, history in
//! `~/.runnel_sql_history`); `-e "..."` runs the given statements and `-f FILE` a script, then
//! exit (non-zero after an error). `--output json` prints the server's JSON instead of tables.
//!
//! It speaks HTTP through [`crate::http_client`].

use std::io::{IsTerminal, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value as Json, json};

use crate::http_client::{Answer, Server};

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
    server: Server,
    properties: serde_json::Map<String, Json>,
    output: Output,
    interrupted: Arc<AtomicBool>,
}

pub fn run(args: SqlArgs) -> anyhow::Result<()> {
    let server = Server::parse(&args.server, "runnel sql")?;
    let mut properties = serde_json::Map::new();
    for p in &args.properties {
        let (k, v) = p.split_once('=').with_context(|| format!("--property {p:?} is not NAME=VALUE"))?;
        properties.insert(k.to_string(), Json::String(v.to_string()));
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let mut shell = Shell { server, properties, output: args.output, interrupted: interrupted.clone() };
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
    on_ctrl_c(interrupted.clone());
    shell.interactive()
}

/// From now on, Ctrl-C (SIGINT) sets `flag` instead of ending the process.
pub(crate) fn on_ctrl_c(flag: Arc<AtomicBool>) {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        FLAG.store(Arc::into_raw(flag) as *mut AtomicBool, Ordering::SeqCst);
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
}

static FLAG: std::sync::atomic::AtomicPtr<AtomicBool> = std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

extern "C" fn on_sigint(_: libc::c_int) {
    let flag = FLAG.load(Ordering::SeqCst);
    if !flag.is_null() {
        // SAFETY: the pointer comes from Arc::into_raw and is never freed.
        unsafe { (*flag).store(true, Ordering::SeqCst) };
    }
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

    /// Sends a JSON statement the way ksqlDB's clients do.
    fn send(&self, path: &str, body: &Json) -> anyhow::Result<Answer> {
        let headers =
            [("Content-Type", "application/vnd.ksql.v1+json"), ("Accept", "application/vnd.ksqlapi.delimited.v1")];
        self.server.request("POST", path, &headers, body.to_string().as_bytes())
    }

    /// A whole answer: status and body text.
    fn post(&self, path: &str, body: &Json) -> anyhow::Result<(u16, String)> {
        let answer = self.send(path, body)?;
        let status = answer.status;
        Ok((status, answer.text()?))
    }

    /// SELECT and PRINT: prints rows as they arrive.
    fn query(&self, sql: &str) -> anyhow::Result<bool> {
        let mut body = self.send("/query-stream", &json!({"sql": sql, "properties": self.properties}))?;
        body.set_read_timeout(INTERRUPT_CHECK)?;
        self.interrupted.store(false, Ordering::SeqCst);
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
}

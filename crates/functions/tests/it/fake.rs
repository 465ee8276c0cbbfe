//! A [`Host`] over in-memory tables that records log lines, and helpers to load examples.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use runnel_functions::{DeployOptions, Event, Function, Header, Host, Level, Row, Runtime, RuntimeConfig};

#[derive(Default)]
pub struct FakeHost {
    /// (table, key) -> row as JSON text
    pub tables: BTreeMap<(String, Vec<u8>), String>,
    /// When set, every table call fails with this message.
    pub table_error: Option<String>,
    pub logs: Mutex<Vec<(Level, String)>>,
}

impl FakeHost {
    pub fn with_users() -> Self {
        let mut host = FakeHost::default();
        host.tables.insert(("users".to_string(), b"alice".to_vec()), r#"{"name":"Alice"}"#.to_string());
        host
    }

    pub fn logs(&self) -> Vec<(Level, String)> {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Host for FakeHost {
    fn table_get(&self, table: &str, key: &[u8]) -> Result<Option<String>, String> {
        if let Some(e) = &self.table_error {
            return Err(e.clone());
        }
        Ok(self.tables.get(&(table.to_string(), key.to_vec())).cloned())
    }

    fn table_scan(&self, table: &str, prefix: &[u8], limit: u32) -> Result<Vec<Row>, String> {
        if let Some(e) = &self.table_error {
            return Err(e.clone());
        }
        Ok(self
            .tables
            .iter()
            .filter(|((t, k), _)| t == table && k.starts_with(prefix))
            .take(limit as usize)
            .map(|((_, k), v)| Row { key: k.clone(), value: v.clone() })
            .collect())
    }

    fn log(&self, level: Level, message: &str) {
        if let Ok(mut logs) = self.logs.lock() {
            logs.push((level, message.to_string()));
        }
    }

    fn now_ms(&self) -> i64 {
        1_700_000_000_000
    }
}

pub fn example(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn runtime(dir: &Path) -> Runtime {
    Runtime::new(RuntimeConfig::new(dir.join("cache"))).expect("runtime starts")
}

pub fn deploy(runtime: &Runtime, name: &str, file: &str, host: Arc<dyn Host>) -> Function {
    runtime
        .deploy(name, &example(file), host, DeployOptions::default())
        .unwrap_or_else(|e| panic!("deploy {file}: {e}"))
}

pub fn event(offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Event {
    Event {
        topic: "orders".to_string(),
        partition: 3,
        offset,
        timestamp_ms: 1_700_000_000_000 + offset,
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        headers: vec![Header { key: "trace".to_string(), value: vec![0, 1, 2, 255] }],
    }
}

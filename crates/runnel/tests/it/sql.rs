//! `runnel sql` as a user drives it against `runnel serve`: statements with `-e`, a script with
//! `-f`, a push query that ends at its LIMIT, JSON output, and errors that stop a script.

use std::process::{Command, Output};

use super::{Serve, data_dir_arg};

fn sql(serve: &Serve, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runnel"))
        .arg("sql")
        .arg("--server")
        .arg(format!("http://{}", serve.http))
        .args(args)
        .output()
        .expect("run runnel sql")
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

#[test]
fn statements_scripts_push_queries_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir_arg(dir.path());
    let serve = Serve::start(&["--kafka-listener", "127.0.0.1:0", "--data-dir", &data, "--log-level", "warn"], &[]);

    let out = sql(
        &serve,
        &[
            "-e",
            "CREATE STREAM users (id INT KEY, name STRING) WITH (kafka_topic='users', value_format='JSON', partitions=2);
             INSERT INTO users VALUES (1, 'ada'); INSERT INTO users VALUES (2, 'bob');
             SHOW STREAMS;",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Stream created"), "{stdout}");
    assert!(stdout.contains("| USERS ") && stdout.contains("| users "), "a table of streams: {stdout}");

    let script = dir.path().join("q.sql");
    std::fs::write(&script, "-- rows from the start\nSET 'auto.offset.reset' = 'earliest';\nSELECT id, UCASE(name) AS name\n  FROM users EMIT CHANGES LIMIT 2;\n")
        .unwrap();
    let out = sql(&serve, &["-f", script.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("| ADA ") && stdout.contains("| BOB "), "{stdout}");
    assert!(stdout.contains("Query finished: 2 rows"), "{stdout}");

    let out = sql(
        &serve,
        &[
            "--property",
            "auto.offset.reset=earliest",
            "--output",
            "json",
            "-e",
            "SELECT * FROM users EMIT CHANGES LIMIT 2;",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines[0]["columnNames"], serde_json::json!(["ID", "NAME"]));
    let mut ids: Vec<i64> = lines[1..].iter().map(|r| r[0].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, [1, 2]);

    let out = sql(&serve, &["-e", "SELECT nope FROM users EMIT CHANGES; SHOW STREAMS;"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("column NOPE cannot be resolved"), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("Stream Name"), "the script stopped at the error");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["sql", "--server", &format!("http://{closed}"), "-e", "SHOW STREAMS;"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("connection refused (is \"runnel serve\" running?)"), "{}", text(&out.stderr));
    assert!(serve.terminate());
}

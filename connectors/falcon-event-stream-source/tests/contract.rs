//! The binary keeps the connector process contract (`--config FILE [--secrets FILE]`).
//! Having an integration test also makes `cargo test --workspace` build the
//! binary that the root crate's `tests/fluvio.rs` starts as a child process.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_falcon-event-stream-source"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run the connector");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn refuses_bad_arguments_and_configs_naming_what_is_wrong() {
    let (code, err) = run(&[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--config FILE is required"), "{err}");
    let (code, err) = run(&["--config", "/nonexistent/source.yaml"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("/nonexistent/source.yaml"), "{err}");
    let dir = tempfile::tempdir().expect("dir");
    let sink = dir.path().join("sink.yaml");
    std::fs::write(
        &sink,
        "apiVersion: 0.2.0\nmeta: {name: s, type: cloudtrail-lake-sink, version: 0.1.0, topic: t}\n",
    )
    .expect("write");
    let (code, err) = run(&["--config", sink.to_str().expect("path")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("is not a source type"), "{err}");
}

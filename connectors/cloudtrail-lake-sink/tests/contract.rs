//! The binary keeps the connector process contract (`--config FILE [--secrets FILE]`).
//! Having an integration test also makes `cargo test --workspace` build the
//! binary that the root crate's `tests/fluvio.rs` starts as a child process.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cloudtrail-lake-sink"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run the connector");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn refuses_bad_arguments_and_configs_naming_what_is_wrong() {
    let (code, err) = run(&["--config"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--config needs a file name"), "{err}");
    let (code, err) = run(&["--config", "c.yaml", "--verbose"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--verbose"), "{err}");
    let dir = tempfile::tempdir().expect("dir");
    let source = dir.path().join("source.yaml");
    std::fs::write(
        &source,
        "apiVersion: 0.2.0\nmeta: {name: s, type: falcon-event-stream-source, version: 0.1.0, topic: t}\nfalcon: {}\n",
    )
    .expect("write");
    let (code, err) = run(&["--config", source.to_str().expect("path")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown top-level key `falcon`"), "{err}");
}

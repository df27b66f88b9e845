//! SmartModule throughput on one core: the wasm module run by `fluvio-smartengine`
//! (records encoded, processed and decoded as the sink does) against the native
//! mapping function, on the same generated events.
//!
//! `cargo bench --bench smartmodule [-- EVENTS]` (default 200,000 per run).
//! Targets: ≥ 200,000 events/s in wasm; wasm time / native time ≤ 3.

use std::time::{Duration, Instant};

use fluvio_smartengine::SmartEngine;

use falcon_lake::audit::{Mapper, MappingParams, RecordContext, SourceKey};
use falcon_lake::emulate::falcon::{Generator, Mix};
use falcon_lake::transform::{InputRecord, ModuleSpec, TransformChain};

const BATCH: usize = 1_000;
fn batch() -> usize {
    std::env::var("SM_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(BATCH)
}

fn main() -> anyhow::Result<()> {
    let events: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200_000);
    if let Ok(target) = std::env::var("SM_WASM_ONLY") {
        let mix = if std::env::var("SM_AUDIT").is_ok() {
            Mix::Audit
        } else {
            Mix::Realistic
        };
        let corpus = corpus(events, mix);
        let path = format!(
            "{}/smartmodules/falcon-audit-to-cloudtrail/target/{target}/release/falcon_audit_to_cloudtrail.wasm",
            env!("CARGO_MANIFEST_DIR")
        );
        let spec = ModuleSpec {
            name: "m".into(),
            params: Default::default(),
            wasm: std::fs::read(path)?,
        };
        let mut chain = TransformChain::new(&SmartEngine::new(), vec![spec])?;
        let input: Vec<InputRecord<'_>> = corpus
            .iter()
            .map(|(k, v)| InputRecord {
                key: Some(k),
                value: v,
                timestamp_ms: 0,
            })
            .collect();
        eprintln!("ready");
        for _ in 0..20 {
            for batch in input.chunks(batch()) {
                std::hint::black_box(chain.process(batch)?);
            }
        }
        return Ok(());
    }
    if std::env::var("SM_NATIVE_ONLY").is_ok() {
        let corpus = corpus(events, Mix::Audit);
        for _ in 0..10 {
            native(&corpus);
        }
        return Ok(());
    }
    for (mix, label) in [
        (Mix::Realistic, "realistic mix (~35% user activity)"),
        (Mix::Audit, "user-activity events only"),
    ] {
        let corpus = corpus(events, mix);
        let bytes: usize = corpus.iter().map(|(_, v)| v.len()).sum();
        println!(
            "{label}: {events} events, {:.0} bytes/event",
            bytes as f64 / events as f64
        );
        let (native_time, native_out) = native(&corpus);
        let native_rate = events as f64 / native_time.as_secs_f64();
        println!("  native:                 {native_rate:>10.0} events/s ({native_out} emitted)");
        let (floor_time, _) = wasm_file(&corpus, "test-faults", "test_faults.wasm", "wasm32-wasip1")?;
        println!(
            "  a pass-through module with the stock macro glue: {:>10.0} events/s (for comparison)",
            events as f64 / floor_time.as_secs_f64()
        );
        for target in ["wasm32-wasip1", "wasm32-unknown-unknown"] {
            let (wasm_time, wasm_out) = wasm(&corpus, target)?;
            anyhow::ensure!(
                wasm_out == native_out,
                "{target} emitted {wasm_out}, native {native_out}"
            );
            let rate = events as f64 / wasm_time.as_secs_f64();
            println!(
                "  wasm {target:<22} {rate:>10.0} events/s; wasm/native time {:.2}; {:.2} x the 200,000 events/s target",
                wasm_time.as_secs_f64() / native_time.as_secs_f64(),
                rate / 200_000.0
            );
        }
    }
    Ok(())
}

fn corpus(count: u64, mix: Mix) -> Vec<(Vec<u8>, Vec<u8>)> {
    let generator = Generator::new(3, "0123456789abcdef0123456789abcdef", mix);
    (0..count)
        .map(|seq| {
            (
                SourceKey::new(0, 1_000 + seq).encode(),
                generator.event(seq, 1_000 + seq).line.into_bytes(),
            )
        })
        .collect()
}

fn native(corpus: &[(Vec<u8>, Vec<u8>)]) -> (Duration, usize) {
    let mapper = Mapper::new(MappingParams::default());
    let began = Instant::now();
    let mut emitted = 0;
    for (key, value) in corpus {
        let ctx = RecordContext {
            key: Some(key),
            timestamp_ms: 0,
        };
        if let falcon_lake::audit::Outcome::Emit(audit) = mapper.map(&ctx, value) {
            emitted += 1;
            std::hint::black_box(audit);
        }
    }
    (began.elapsed(), emitted)
}

fn wasm(corpus: &[(Vec<u8>, Vec<u8>)], target: &str) -> anyhow::Result<(Duration, usize)> {
    wasm_file(
        corpus,
        "falcon-audit-to-cloudtrail",
        "falcon_audit_to_cloudtrail.wasm",
        target,
    )
}

fn wasm_file(
    corpus: &[(Vec<u8>, Vec<u8>)],
    module: &str,
    file: &str,
    target: &str,
) -> anyhow::Result<(Duration, usize)> {
    let path = format!(
        "{}/smartmodules/{module}/target/{target}/release/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let wasm = std::fs::read(&path).map_err(|e| anyhow::anyhow!("{path}: {e} (run `make wasm`)"))?;
    let spec = ModuleSpec {
        name: "falcon-audit-to-cloudtrail".into(),
        params: Default::default(),
        wasm,
    };
    let mut chain = TransformChain::new(&SmartEngine::new(), vec![spec])?;
    let began = Instant::now();
    let mut emitted = 0;
    for batch in corpus.chunks(batch()) {
        let input: Vec<InputRecord<'_>> = batch
            .iter()
            .map(|(k, v)| InputRecord {
                key: Some(k),
                value: v,
                timestamp_ms: 0,
            })
            .collect();
        let out = chain.process(&input)?;
        emitted += out.outputs.len();
        std::hint::black_box(out);
    }
    Ok((began.elapsed(), emitted))
}

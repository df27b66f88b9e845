//! SmartModule throughput on one core, for both modules (CloudTrail, OCSF): the
//! wasm module run by `fluvio-smartengine` through the sink's chain (records
//! encoded, processed and decoded as the sink does), against the same mapping
//! called natively (reusing its output buffers, as the module does) and against
//! a pass-through module with the stock `#[smartmodule]` glue, on the same
//! generated events. Each figure is the best of a few rounds, interleaved, so
//! the ratios of one run compare like with like on a busy machine.
//!
//! `cargo bench --bench smartmodule [-- EVENTS]` (default 200,000 events per case;
//! `SM_ROUNDS` rounds, default 3; `SM_BATCH` records per call, default 1,000).
//! Goals: worst case (every event mapped) in wasm ≥ 3× the stock-glue
//! pass-through; wasm/native time ≤ 2.0; ≥ 200,000 events/s in wasm.
//!
//! For profiling, `SM_ONLY=<module>:<target|native>:<mix>` (e.g.
//! `cloudtrail:wasm32-wasip1:audit`) runs just that, 20 times over.

use std::time::{Duration, Instant};

use fluvio_smartengine::SmartEngine;

use falcon_lake::audit::{AuditRecord, Mapper, MappingParams, RecordContext, SourceKey};
use falcon_lake::emulate::falcon::{Generator, Mix};
use falcon_lake::transform::{InputRecord, ModuleSpec, TransformChain};

const TARGETS: [&str; 2] = ["wasm32-wasip1", "wasm32-unknown-unknown"];

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Either module's native mapping into reused buffers; true when it emitted.
type NativeMapper = dyn Fn(&RecordContext<'_>, &[u8], &mut AuditRecord) -> bool;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Module {
    CloudTrail,
    Ocsf,
}

impl Module {
    fn name(self) -> &'static str {
        match self {
            Module::CloudTrail => "cloudtrail",
            Module::Ocsf => "ocsf",
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Module::CloudTrail => "falcon-audit-to-cloudtrail",
            Module::Ocsf => "falcon-audit-to-ocsf",
        }
    }

    fn wasm_file(self) -> String {
        format!("{}.wasm", self.dir().replace('-', "_"))
    }

    /// The native mapping, called as the module calls it.
    fn native(self) -> Box<NativeMapper> {
        match self {
            Module::CloudTrail => {
                let mapper = Mapper::new(MappingParams::default());
                Box::new(move |ctx, value, out| mapper.map_into(ctx, value, out).is_ok())
            }
            Module::Ocsf => {
                let mapper = falcon_lake::ocsf::Mapper::default();
                Box::new(move |ctx, value, out| mapper.map_into(ctx, value, out).is_ok())
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let events: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200_000);
    if let Ok(only) = std::env::var("SM_ONLY") {
        return profile_one(&only, events);
    }
    let rounds = env_or("SM_ROUNDS", 3).max(1);
    for (mix, label) in [
        (Mix::Realistic, "realistic mix"),
        (Mix::Audit, "worst case, every event a user-activity event to map"),
    ] {
        let corpus = corpus(events, mix);
        let bytes: usize = corpus.iter().map(|(_, v)| v.len()).sum();
        println!(
            "{label}: {events} events, {:.0} bytes/event",
            bytes as f64 / events as f64
        );
        let pass_through_wasm = wasm_path("test-faults", "test_faults.wasm", "wasm32-wasip1");
        let modules = [Module::CloudTrail, Module::Ocsf];
        let mut chains = Vec::new();
        for module in modules {
            for target in TARGETS {
                chains.push(chain_for(&wasm_path(module.dir(), &module.wasm_file(), target))?);
            }
        }
        let mut floor = Duration::MAX;
        let mut measured: Vec<Figures> = modules.iter().map(|_| Figures::default()).collect();
        for _ in 0..rounds {
            // The stock glue does not reuse its memory between calls (the
            // long-run test shows it), so a fresh instance each round keeps it
            // from trapping mid-measurement.
            let mut pass_through = chain_for(&pass_through_wasm)?;
            floor = floor.min(run_wasm(&corpus, &mut pass_through)?.0);
            for (i, module) in modules.into_iter().enumerate() {
                let figures = &mut measured[i];
                let (native_time, native_out) = run_native(&corpus, module);
                figures.native = figures.native.min(native_time);
                figures.emitted = native_out;
                for (t, target) in TARGETS.iter().enumerate() {
                    let (time, out) = run_wasm(&corpus, &mut chains[i * TARGETS.len() + t])?;
                    anyhow::ensure!(
                        out == native_out,
                        "{} {target} emitted {out}, native {native_out}",
                        module.name()
                    );
                    figures.wasm[t] = figures.wasm[t].min(time);
                }
            }
        }
        let rate = |time: Duration| events as f64 / time.as_secs_f64();
        println!(
            "  pass-through module with the stock macro glue (wasm32-wasip1): {:>9.0} events/s",
            rate(floor)
        );
        for (module, figures) in modules.into_iter().zip(&measured) {
            println!(
                "  {:<10} {} emitted; native {:>9.0} events/s; {} {:>9.0}; {} {:>9.0}",
                module.name(),
                figures.emitted,
                rate(figures.native),
                TARGETS[0],
                rate(figures.wasm[0]),
                TARGETS[1],
                rate(figures.wasm[1]),
            );
            let ratio = |time: Duration| time.as_secs_f64() / figures.native.as_secs_f64();
            println!(
                "  {:<10} ratios: wasm {:.2}x the stock-glue pass-through (goal >= 3 in the worst case); wasm/native time {:.2} ({}) and {:.2} ({}) (goal <= 2.0); {:.2}x the 200,000 events/s target",
                module.name(),
                rate(figures.wasm[0]) / rate(floor),
                ratio(figures.wasm[0]),
                TARGETS[0],
                ratio(figures.wasm[1]),
                TARGETS[1],
                rate(figures.wasm[0]) / 200_000.0,
            );
        }
    }
    Ok(())
}

/// Best times of one module in one case.
struct Figures {
    native: Duration,
    wasm: [Duration; 2],
    emitted: usize,
}

impl Default for Figures {
    fn default() -> Self {
        Self {
            native: Duration::MAX,
            wasm: [Duration::MAX; 2],
            emitted: 0,
        }
    }
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

fn run_native(corpus: &[(Vec<u8>, Vec<u8>)], module: Module) -> (Duration, usize) {
    let map = module.native();
    let mut out = AuditRecord::default();
    let began = Instant::now();
    let mut emitted = 0;
    for (key, value) in corpus {
        let ctx = RecordContext {
            key: Some(key),
            timestamp_ms: 0,
        };
        if map(&ctx, value, &mut out) {
            emitted += 1;
            std::hint::black_box(&out);
        }
    }
    (began.elapsed(), emitted)
}

fn wasm_path(module: &str, file: &str, target: &str) -> String {
    format!(
        "{}/smartmodules/{module}/target/{target}/release/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn chain_for(path: &str) -> anyhow::Result<TransformChain> {
    let wasm = std::fs::read(path).map_err(|e| anyhow::anyhow!("{path}: {e} (run `make wasm`)"))?;
    let spec = ModuleSpec {
        name: path.to_string(),
        params: Default::default(),
        wasm,
    };
    TransformChain::new(&SmartEngine::new(), vec![spec])
}

/// Time for the whole corpus through the chain, in batches, as the sink runs it.
fn run_wasm(corpus: &[(Vec<u8>, Vec<u8>)], chain: &mut TransformChain) -> anyhow::Result<(Duration, usize)> {
    let batch = env_or("SM_BATCH", 1_000).max(1);
    let began = Instant::now();
    let mut emitted = 0;
    for records in corpus.chunks(batch) {
        let input: Vec<InputRecord<'_>> = records
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
    let elapsed = began.elapsed();
    let stats = chain.stats();
    anyhow::ensure!(stats.fallbacks == 0, "{chain:?} trapped or failed: {stats:?}");
    Ok((elapsed, emitted))
}

/// `SM_ONLY=<module>:<target|native>:<mix>`: one measurement, 20 times, for a profiler.
fn profile_one(only: &str, events: u64) -> anyhow::Result<()> {
    let parts: Vec<&str> = only.split(':').collect();
    let [module, target, mix] = parts[..] else {
        anyhow::bail!("SM_ONLY={only}: expected <module>:<target|native>:<mix>");
    };
    let module = match module {
        "cloudtrail" => Module::CloudTrail,
        "ocsf" => Module::Ocsf,
        other => anyhow::bail!("SM_ONLY: unknown module {other:?} (cloudtrail, ocsf)"),
    };
    let mix = if mix == "audit" { Mix::Audit } else { Mix::Realistic };
    let corpus = corpus(events, mix);
    let mut chain = match target {
        "native" => None,
        target => Some(chain_for(&wasm_path(module.dir(), &module.wasm_file(), target))?),
    };
    eprintln!("ready");
    let began = Instant::now();
    for _ in 0..20 {
        match chain.as_mut() {
            None => {
                std::hint::black_box(run_native(&corpus, module));
            }
            Some(chain) => {
                std::hint::black_box(run_wasm(&corpus, chain)?);
            }
        }
    }
    eprintln!("{:.0} events/s", 20.0 * events as f64 / began.elapsed().as_secs_f64());
    Ok(())
}

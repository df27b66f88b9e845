//! SmartModule throughput on one core, for both modules (CloudTrail, OCSF): the
//! wasm module run by `fluvio-smartengine` through the sink's chain (records
//! encoded, processed and decoded as the sink does), against the same work done
//! natively (the chain's encoding of the batch, the engine's encoding of the
//! call's input, the module's own glue and mapping, the engine's decoding of
//! the output: everything but the wasm call itself) and against a pass-through
//! module with the stock `#[smartmodule]` glue, on the same generated events.
//! The pass-through is `smartmodules/test-faults` without faults, built as
//! smdk's `release-lto` profile builds a module (opt-level 3, LTO); until
//! commit 7660b9f it was built at opt-level "s" without LTO, about 3× slower,
//! which flattered every "× the stock glue" figure measured before.
//!
//! Every module runs warm, as the sink runs it: one instance per module for the
//! whole run, many batches, after one untimed pass over the corpus that also
//! checks that wasm and native emit byte-identical records. The stock glue
//! leaks each call's output buffer (its generated `filter_map` ends with
//! `std::mem::forget(out)` and the engine never frees it), so a warm stock
//! instance grows by its output on every call and, at the chain's default
//! 256 MiB limit, traps after about 256 MiB of output; its chain here is given
//! wasm32's whole 4 GiB so that it runs warm over the whole measurement.
//!
//! Each figure is the best of a few rounds, interleaved, so the ratios of one
//! run compare like with like on a busy machine.
//!
//! `cargo bench --bench smartmodule [-- EVENTS]` (default 200,000 events per case;
//! `SM_ROUNDS` rounds, default 3; `SM_BATCH` records per call, default 1,000).
//! Goals: worst case (every event mapped) in wasm ≥ 3× the stock-glue
//! pass-through; wasm/native time ≤ 2.0; ≥ 200,000 events/s in wasm.
//!
//! For profiling, `SM_ONLY=<module>:<target|native|mapping>:<mix>` (e.g.
//! `cloudtrail:wasm32-wasip1:audit`) runs just that, 20 times over.

use std::time::{Duration, Instant};

use fluvio_smartengine::SmartEngine;
use fluvio_smartmodule::dataplane::core::{Decoder, Encoder};
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleOutput;

use falcon_lake::audit::{AuditRecord, Mapper, MappingParams, RecordContext, SourceKey};
use falcon_lake::emulate::falcon::{Generator, Mix};
use falcon_lake::transform::chain::{encode, output_records};
use falcon_lake::transform::{InputRecord, ModuleSpec, OutputRecord, TransformChain};

/// The modules' glue, compiled natively from the very source the modules build
/// (it is a crate of the SmartModules' own build, not of this workspace).
#[allow(dead_code)]
#[path = "../smartmodules/glue/src/lib.rs"]
mod falcon_lake_glue;

const TARGETS: [&str; 2] = ["wasm32-wasip1", "wasm32-unknown-unknown"];
/// The ABI version the engine calls modules with.
const VERSION: i16 = fluvio_smartengine::DEFAULT_SMARTENGINE_VERSION;
/// All of wasm32's memory: room for the stock glue's leak over the whole run.
const WASM32_MEMORY: usize = 4 << 30;

type Corpus = [(Vec<u8>, Vec<u8>)];

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn batch_size() -> usize {
    env_or("SM_BATCH", 1_000).max(1)
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

    /// The native mapping, as the module's `map` calls it (default parameters).
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
    let modules = [Module::CloudTrail, Module::Ocsf];
    // One warm instance per module for the whole run, as the sink keeps one.
    let mut pass_through = chain_for(
        &wasm_path("test-faults", "test_faults.wasm", "wasm32-wasip1"),
        WASM32_MEMORY,
    )?;
    let mut chains = Vec::new();
    for module in modules {
        for target in TARGETS {
            let path = wasm_path(module.dir(), &module.wasm_file(), target);
            chains.push(chain_for(&path, falcon_lake::transform::chain::DEFAULT_MEMORY_LIMIT)?);
        }
    }
    let mut natives: Vec<NativeGlue> = modules.iter().map(|m| NativeGlue::new(*m)).collect();
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
        // The untimed pass: warms every instance and proves wasm == native.
        run_wasm(&corpus, &mut pass_through)?;
        for (i, native) in natives.iter_mut().enumerate() {
            for t in 0..TARGETS.len() {
                check_identical(&corpus, native, &mut chains[i * TARGETS.len() + t])?;
            }
        }
        let mut floor = Duration::MAX;
        let mut measured: Vec<Figures> = modules.iter().map(|_| Figures::default()).collect();
        for _ in 0..rounds {
            floor = floor.min(run_wasm(&corpus, &mut pass_through)?.0);
            for (i, module) in modules.into_iter().enumerate() {
                let figures = &mut measured[i];
                let (mapping_time, mapped) = run_mapping(&corpus, module);
                figures.mapping = figures.mapping.min(mapping_time);
                let (native_time, native_out) = natives[i].run(&corpus)?;
                anyhow::ensure!(
                    mapped == native_out,
                    "{}: mapping {mapped}, glue {native_out}",
                    module.name()
                );
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
            "  pass-through module with the stock macro glue (wasm32-wasip1, warm): {:>9.0} events/s",
            rate(floor)
        );
        for (module, figures) in modules.into_iter().zip(&measured) {
            println!(
                "  {:<10} {} emitted; native (same glue and host work) {:>9.0} events/s (the mapping alone {:>9.0}); {} {:>9.0}; {} {:>9.0}",
                module.name(),
                figures.emitted,
                rate(figures.native),
                rate(figures.mapping),
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
    let stats = pass_through.stats();
    println!(
        "  (the stock-glue pass-through ran {} batches on one instance: {} traps, {} re-instantiations)",
        stats.batches, stats.traps, stats.reinstantiations
    );
    Ok(())
}

/// Best times of one module in one case.
struct Figures {
    mapping: Duration,
    native: Duration,
    wasm: [Duration; 2],
    emitted: usize,
}

impl Default for Figures {
    fn default() -> Self {
        Self {
            mapping: Duration::MAX,
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

fn inputs(records: &Corpus) -> Vec<InputRecord<'_>> {
    records
        .iter()
        .map(|(k, v)| InputRecord {
            key: Some(k),
            value: v,
            timestamp_ms: 0,
        })
        .collect()
}

/// The mapping alone, record by record into reused buffers: no batch encoding
/// or decoding at all. Printed for reference; the ratios use [`NativeGlue`].
fn run_mapping(corpus: &Corpus, module: Module) -> (Duration, usize) {
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

/// A module's work done natively, call for call what the chain and the engine
/// do around the wasm call, and the module's own glue (`falcon-lake-glue`) in it.
struct NativeGlue {
    map: Box<NativeMapper>,
    /// The glue's output buffer, reused from call to call as the module reuses its own.
    out: Vec<u8>,
}

impl NativeGlue {
    fn new(module: Module) -> Self {
        Self {
            map: module.native(),
            out: Vec::new(),
        }
    }

    /// One batch: the chain's encoding, the engine's encoding of the input, the
    /// glue, the engine's decoding of the output and the chain's records.
    fn batch(&mut self, records: &[InputRecord<'_>]) -> anyhow::Result<Vec<OutputRecord>> {
        let input = encode(records)?;
        let mut bytes = Vec::new();
        input.encode(&mut bytes, VERSION)?;
        self.out.clear();
        let map = |ctx: &RecordContext<'_>, value: &[u8], out: &mut AuditRecord| (self.map)(ctx, value, out);
        falcon_lake_glue::process_call(&map, bytes, VERSION, &mut self.out)
            .map_err(|status| anyhow::anyhow!("the glue returned status {status}"))?;
        let mut output = SmartModuleOutput::default();
        output.decode(&mut std::io::Cursor::new(&self.out[..]), VERSION)?;
        anyhow::ensure!(output.error.is_none(), "the glue returned an error");
        Ok(output_records(output.successes, records.len()))
    }

    fn run(&mut self, corpus: &Corpus) -> anyhow::Result<(Duration, usize)> {
        let began = Instant::now();
        let mut emitted = 0;
        for records in corpus.chunks(batch_size()) {
            let out = self.batch(&inputs(records))?;
            emitted += out.len();
            std::hint::black_box(out);
        }
        Ok((began.elapsed(), emitted))
    }
}

/// Wasm and native emit the same records, byte for byte, batch by batch.
fn check_identical(corpus: &Corpus, native: &mut NativeGlue, chain: &mut TransformChain) -> anyhow::Result<()> {
    for records in corpus.chunks(batch_size()) {
        let input = inputs(records);
        let expected = native.batch(&input)?;
        let got = chain.process(&input)?;
        anyhow::ensure!(got.failures.is_empty(), "{chain:?} failed: {:?}", got.failures.first());
        anyhow::ensure!(got.outputs == expected, "{chain:?} emitted other records than native");
    }
    Ok(())
}

fn wasm_path(module: &str, file: &str, target: &str) -> String {
    format!(
        "{}/smartmodules/{module}/target/{target}/release/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn chain_for(path: &str, memory_limit: usize) -> anyhow::Result<TransformChain> {
    let wasm = std::fs::read(path).map_err(|e| anyhow::anyhow!("{path}: {e} (run `make wasm`)"))?;
    let spec = ModuleSpec {
        name: path.to_string(),
        params: Default::default(),
        wasm,
    };
    TransformChain::with_memory_limit(&SmartEngine::new(), vec![spec], memory_limit)
}

/// Time for the whole corpus through the chain, in batches, as the sink runs it.
fn run_wasm(corpus: &Corpus, chain: &mut TransformChain) -> anyhow::Result<(Duration, usize)> {
    let began = Instant::now();
    let mut emitted = 0;
    for records in corpus.chunks(batch_size()) {
        let out = chain.process(&inputs(records))?;
        emitted += out.outputs.len();
        std::hint::black_box(out);
    }
    let elapsed = began.elapsed();
    let stats = chain.stats();
    anyhow::ensure!(stats.fallbacks == 0, "{chain:?} trapped or failed: {stats:?}");
    Ok((elapsed, emitted))
}

/// `SM_ONLY=<module>:<target|native|mapping>:<mix>`: one measurement, 20 times, for a profiler.
fn profile_one(only: &str, events: u64) -> anyhow::Result<()> {
    let parts: Vec<&str> = only.split(':').collect();
    let [module, target, mix] = parts[..] else {
        anyhow::bail!("SM_ONLY={only}: expected <module>:<target|native|mapping>:<mix>");
    };
    let module = match module {
        "cloudtrail" => Module::CloudTrail,
        "ocsf" => Module::Ocsf,
        "stock" => Module::CloudTrail,
        other => anyhow::bail!("SM_ONLY: unknown module {other:?} (cloudtrail, ocsf, stock)"),
    };
    let mix = if mix == "audit" { Mix::Audit } else { Mix::Realistic };
    let corpus = corpus(events, mix);
    let mut native = NativeGlue::new(module);
    let mut chain = match target {
        "native" | "mapping" => None,
        _ if parts[0] == "stock" => Some(chain_for(
            &wasm_path("test-faults", "test_faults.wasm", target),
            WASM32_MEMORY,
        )?),
        target => Some(chain_for(
            &wasm_path(module.dir(), &module.wasm_file(), target),
            falcon_lake::transform::chain::DEFAULT_MEMORY_LIMIT,
        )?),
    };
    eprintln!("ready");
    let began = Instant::now();
    for _ in 0..20 {
        match chain.as_mut() {
            None if target == "mapping" => {
                std::hint::black_box(run_mapping(&corpus, module));
            }
            None => {
                std::hint::black_box(native.run(&corpus)?);
            }
            Some(chain) => {
                std::hint::black_box(run_wasm(&corpus, chain)?);
            }
        }
    }
    eprintln!("{:.0} events/s", 20.0 * events as f64 / began.elapsed().as_secs_f64());
    Ok(())
}

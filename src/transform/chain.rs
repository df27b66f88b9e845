//! A SmartModule chain run in-process with `fluvio-smartengine`, the engine Fluvio
//! itself uses. The sink runs transforms here rather than server-side, because
//! server-side consumer SmartModules renumber offsets (see the Fluvio spec §10).

use anyhow::{anyhow, Context, Result};
use fluvio_smartengine::{SmartEngine, SmartModuleChainBuilder, SmartModuleChainInstance, SmartModuleConfig};
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleInput;

/// Memory a chain may grow to; a module that needs more fails instead of the process.
pub const DEFAULT_MEMORY_LIMIT: usize = 256 * 1024 * 1024;

/// One module of a chain: its configuration (name, parameters) and its wasm.
#[derive(Debug, Clone)]
pub struct ModuleSpec {
    /// Name used in messages (the `uses` of the transform).
    pub name: String,
    /// Parameters (`with:`), all strings.
    pub params: std::collections::BTreeMap<String, String>,
    /// The module's wasm bytes.
    pub wasm: Vec<u8>,
}

/// A raw record going into the chain.
#[derive(Debug, Clone, Copy)]
pub struct InputRecord<'a> {
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value.
    pub value: &'a [u8],
    /// Record timestamp, epoch milliseconds.
    pub timestamp_ms: i64,
}

/// A record the chain emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// Index of the input record it came from, when the modules keep that
    /// (filter, map and filter_map do; array_map and aggregate do not).
    pub source_hint: Option<usize>,
    /// Output key.
    pub key: Option<Vec<u8>>,
    /// Output value.
    pub value: Vec<u8>,
}

/// An input record the chain could not process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    /// Index of the input record.
    pub index: usize,
    /// What the module reported (its error or trap).
    pub reason: String,
}

/// What one batch produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChainOutput {
    /// Emitted records, in order.
    pub outputs: Vec<OutputRecord>,
    /// Records that made a module fail; the rest of the batch was still processed.
    pub failures: Vec<RecordFailure>,
}

/// What a chain has done since it was built: a healthy module is called once
/// per batch, so anything in the last four counters means records failed,
/// a module trapped (out of memory, a panic) or was started afresh.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChainStats {
    /// Batches processed.
    pub batches: u64,
    /// Records processed.
    pub records: u64,
    /// Batches processed again one record at a time, after a module error or trap.
    pub fallbacks: u64,
    /// Module instances started afresh after a trap.
    pub reinstantiations: u64,
    /// Engine calls that trapped (a batch's, then each trapping record's).
    pub traps: u64,
    /// Engine calls in which a module returned an error.
    pub module_errors: u64,
}

/// A chain of SmartModules ready to process batches.
pub struct TransformChain {
    engine: SmartEngine,
    modules: Vec<ModuleSpec>,
    memory_limit: usize,
    instance: SmartModuleChainInstance,
    stats: ChainStats,
}

impl std::fmt::Debug for TransformChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransformChain")
            .field("modules", &self.names())
            .finish()
    }
}

impl TransformChain {
    /// Compiles the modules and runs their `init` with the parameters; a bad
    /// parameter fails here, at start-up, with the module's message.
    pub fn new(engine: &SmartEngine, modules: Vec<ModuleSpec>) -> Result<Self> {
        Self::with_memory_limit(engine, modules, DEFAULT_MEMORY_LIMIT)
    }

    /// Like [`TransformChain::new`], with the most memory the modules may use.
    pub fn with_memory_limit(engine: &SmartEngine, modules: Vec<ModuleSpec>, memory_limit: usize) -> Result<Self> {
        let instance = instantiate(engine, &modules, memory_limit)?;
        Ok(Self {
            engine: engine.clone(),
            modules,
            memory_limit,
            instance,
            stats: ChainStats::default(),
        })
    }

    /// What the chain has done since it was built.
    pub fn stats(&self) -> ChainStats {
        self.stats
    }

    /// The modules' names (`uses`), in order.
    pub fn names(&self) -> Vec<&str> {
        self.modules.iter().map(|m| m.name.as_str()).collect()
    }

    /// Number of modules.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// True for an empty chain (records pass through unchanged).
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Processes a batch. A record that makes a module return an error or trap
    /// is reported in `failures` and the rest of the batch is still processed:
    /// one bad record never stops the pipeline.
    pub fn process(&mut self, records: &[InputRecord<'_>]) -> Result<ChainOutput> {
        if records.is_empty() {
            return Ok(ChainOutput::default());
        }
        self.stats.batches += 1;
        self.stats.records += records.len() as u64;
        // An error names its record only by its offset inside the module that
        // failed, which modules earlier in the chain may have changed; one record
        // at a time gives exact attribution, and errors are rare.
        match self.run(records) {
            Ok(Ok(outputs)) => Ok(ChainOutput {
                outputs,
                failures: Vec::new(),
            }),
            Ok(Err(_)) => {
                self.stats.module_errors += 1;
                self.stats.fallbacks += 1;
                self.process_one_by_one(records)
            }
            Err(_) => {
                self.stats.traps += 1;
                self.stats.fallbacks += 1;
                self.reinstantiate()?;
                self.process_one_by_one(records)
            }
        }
    }

    /// A trapped instance may be left inconsistent: start afresh.
    fn reinstantiate(&mut self) -> Result<()> {
        self.instance =
            instantiate(&self.engine, &self.modules, self.memory_limit).context("re-instantiating after a trap")?;
        self.stats.reinstantiations += 1;
        Ok(())
    }

    fn process_one_by_one(&mut self, records: &[InputRecord<'_>]) -> Result<ChainOutput> {
        let mut out = ChainOutput::default();
        for (index, record) in records.iter().enumerate() {
            match self.run(std::slice::from_ref(record)) {
                Ok(Ok(outputs)) => out.outputs.extend(outputs.into_iter().map(|o| OutputRecord {
                    source_hint: Some(index),
                    ..o
                })),
                Ok(Err(reason)) => {
                    self.stats.module_errors += 1;
                    out.failures.push(RecordFailure { index, reason });
                }
                Err(trap) => {
                    self.stats.traps += 1;
                    out.failures.push(RecordFailure {
                        index,
                        reason: format!("the SmartModule trapped: {trap:#}"),
                    });
                    self.reinstantiate()?;
                }
            }
        }
        Ok(out)
    }

    /// One engine call: `Ok(Ok(outputs))`, `Ok(Err(module error))`, or `Err(trap)`.
    fn run(&mut self, records: &[InputRecord<'_>]) -> Result<Result<Vec<OutputRecord>, String>> {
        if self.modules.is_empty() {
            return Ok(Ok(records
                .iter()
                .enumerate()
                .map(|(i, r)| OutputRecord {
                    source_hint: Some(i),
                    key: r.key.map(<[u8]>::to_vec),
                    value: r.value.to_vec(),
                })
                .collect()));
        }
        let input = encode(records)?;
        let output = self.instance.process(input)?;
        if let Some(error) = output.error {
            return Ok(Err(format!("the SmartModule returned an error: {}", error.hint.trim())));
        }
        Ok(Ok(output_records(output.successes, records.len())))
    }
}

/// The records a module emitted for a batch of `inputs` records, as the chain
/// returns them (public so the SmartModule benchmark's native side does the
/// same work).
pub fn output_records(successes: Vec<fluvio_smartmodule::Record>, inputs: usize) -> Vec<OutputRecord> {
    successes
        .into_iter()
        .map(|record| {
            let hint = usize::try_from(record.preamble.offset_delta())
                .ok()
                .filter(|i| *i < inputs);
            // The engine decodes each value into a buffer of its own; take it, do not copy it.
            OutputRecord {
                source_hint: hint,
                key: record.key.map(|k| k.into_vec()),
                value: record.value.into_vec(),
            }
        })
        .collect()
}

fn instantiate(engine: &SmartEngine, modules: &[ModuleSpec], memory_limit: usize) -> Result<SmartModuleChainInstance> {
    let mut builder = SmartModuleChainBuilder::default();
    builder.set_store_memory_limit(memory_limit);
    for module in modules {
        let mut config = SmartModuleConfig::builder();
        config.smartmodule_names(vec![module.name.clone()]);
        for (key, value) in &module.params {
            config.param(key.clone(), value.clone());
        }
        let config = config
            .build()
            .map_err(|e| anyhow!("SmartModule {}: {e}", module.name))?;
        builder.add_smart_module(config, module.wasm.clone());
    }
    builder.initialize(engine).map_err(|e| {
        let names: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
        anyhow!(
            "initialising the SmartModule chain [{}]: {}",
            names.join(", "),
            crate::falcon::error::error_chain(e.as_ref())
        )
    })
}

/// Encodes records with offset deltas equal to their batch index, so outputs of
/// record-preserving modules can be traced back to their input. Uses the bulk
/// codec: Fluvio's encoder writes values byte by byte. Public so the
/// SmartModule benchmark's native side does the same work.
pub fn encode(records: &[InputRecord<'_>]) -> Result<SmartModuleInput> {
    let base_timestamp = records.first().map(|r| r.timestamp_ms).unwrap_or(0);
    let size: usize = records
        .iter()
        .map(|r| r.value.len() + r.key.map_or(0, <[u8]>::len) + 24)
        .sum();
    let mut raw = Vec::with_capacity(size + 4);
    falcon_lake_wire::encode_records(
        &mut raw,
        records
            .iter()
            .enumerate()
            .map(|(index, r)| falcon_lake_wire::WireRecord {
                key: r.key,
                value: r.value,
                timestamp_delta: r.timestamp_ms - base_timestamp,
                offset_delta: index as i64,
                ..Default::default()
            }),
    );
    Ok(SmartModuleInput::new(raw, 0, base_timestamp))
}

#[cfg(test)]
mod tests {
    /// The engine calls modules with the ABI version whose inputs the bulk codec
    /// reads; an engine upgrade that changes it must be noticed here.
    #[test]
    fn engine_speaks_the_version_the_fast_path_reads() {
        assert_eq!(
            fluvio_smartengine::DEFAULT_SMARTENGINE_VERSION,
            falcon_lake_wire::INPUT_VERSION
        );
    }
}

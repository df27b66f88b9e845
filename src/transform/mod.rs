//! SmartModule transforms run in-process: loading modules named in a config's
//! `transforms:` and running them as a chain (shared by the sink and `sm test`).

pub mod chain;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use anyhow::{bail, Context, Result};
use fluvio_smartengine::transformation::TransformationStep;
use fluvio_smartengine::SmartEngine;

pub use chain::{ChainOutput, ChainStats, InputRecord, ModuleSpec, OutputRecord, RecordFailure, TransformChain};

/// Somewhere SmartModules registered by name can be fetched from (a Fluvio cluster).
pub trait ModuleRegistry: Send + Sync {
    /// The wasm of the module registered as `name` (`group/name@version` or a plain name).
    fn fetch<'a>(&'a self, name: &'a str) -> Pin<Box<dyn Future<Output = Result<Vec<u8>>> + Send + 'a>>;
}

/// Loads the transforms of a config and builds the chain: modules compiled and
/// their `init` run, so a bad parameter fails here.
pub async fn load_chain(
    steps: &[TransformationStep],
    base_dir: &Path,
    registry: Option<&dyn ModuleRegistry>,
) -> Result<TransformChain> {
    TransformChain::new(&SmartEngine::new(), load_modules(steps, base_dir, registry).await?)
}

/// Loads every transform of a config: a `uses` ending in `.wasm` is a file
/// (relative to `base_dir`, the config file's directory); anything else is a
/// module registered in the cluster, fetched through `registry`.
pub async fn load_modules(
    steps: &[TransformationStep],
    base_dir: &Path,
    registry: Option<&dyn ModuleRegistry>,
) -> Result<Vec<ModuleSpec>> {
    let mut modules = Vec::with_capacity(steps.len());
    for (index, step) in steps.iter().enumerate() {
        let what = format!("transforms[{index}] ({})", step.uses);
        if step.lookback.is_some() {
            bail!("{what}: lookback is not supported; the sink feeds each record once, in order");
        }
        let wasm = if step.uses.ends_with(".wasm") {
            let path = base_dir.join(&step.uses);
            std::fs::read(&path).with_context(|| format!("{what}: reading {}", path.display()))?
        } else {
            match registry {
                Some(registry) => registry.fetch(&step.uses).await.with_context(|| format!("{what}: fetching it from the cluster"))?,
                None => bail!(
                    "{what}: a SmartModule referenced by name needs a Fluvio cluster; give the path of its .wasm file instead"
                ),
            }
        };
        let params: BTreeMap<String, String> = step
            .with
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().to_string()))
            .collect();
        modules.push(ModuleSpec {
            name: step.uses.clone(),
            params,
            wasm,
        });
    }
    Ok(modules)
}

//! Secrets in connector configs, rendered as `fluvio-connector-common` does:
//! `${{ secrets.NAME }}` (and `${% %}` blocks, `${# #}` comments) with strict
//! undefined variables, only for names declared in `meta.secrets`, looked up in
//! the `--secrets` file (`KEY=VALUE` lines) or else the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, UndefinedBehavior};

/// Rendering fuel, as in Fluvio (bounds templates that loop forever).
const FUEL: u64 = 500;

/// Where secret values come from.
#[derive(Debug, Clone)]
pub enum SecretStore {
    /// A file of `KEY=VALUE` lines (`--secrets`).
    File(PathBuf),
    /// Environment variables of the same name.
    Env,
    /// Values held in memory (the demo's generated credentials).
    Map(BTreeMap<String, crate::secret::Secret>),
}

impl SecretStore {
    /// The store for an optional `--secrets` file.
    pub fn from_arg(path: Option<&Path>) -> Self {
        path.map_or(SecretStore::Env, |p| SecretStore::File(p.to_path_buf()))
    }

    /// The value of `name`; the error names the secret, never a value.
    pub fn get(&self, name: &str) -> Result<String> {
        match self {
            SecretStore::Env => std::env::var(name)
                .map_err(|_| anyhow!("secret {name} is declared in meta.secrets but not set in the environment")),
            SecretStore::File(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the secrets file {}", path.display()))?;
                text.lines()
                    .filter_map(|line| line.split_once('='))
                    .find(|(key, _)| key.trim() == name)
                    .map(|(_, value)| value.trim().to_string())
                    .ok_or_else(|| {
                        anyhow!(
                            "secret {name} is declared in meta.secrets but missing from {}",
                            path.display()
                        )
                    })
            }
            SecretStore::Map(values) => values
                .get(name)
                .map(|v| v.expose().to_string())
                .ok_or_else(|| anyhow!("secret {name} is declared in meta.secrets but not provided")),
        }
    }
}

/// Checks a secret name as Fluvio does: `[A-Za-z0-9_]+`, not starting with a digit.
pub fn check_secret_name(name: &str) -> Result<()> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        bail!("secret name {name:?} can only contain alphanumeric ASCII characters and underscores");
    }
    if name.as_bytes()[0].is_ascii_digit() {
        bail!("secret name {name:?} cannot start with a number");
    }
    Ok(())
}

/// Renders `text` with the values of the `declared` secrets.
pub fn render(text: &str, declared: &[String], store: &SecretStore) -> Result<String> {
    let mut values = BTreeMap::new();
    for name in declared {
        check_secret_name(name)?;
        values.insert(name.clone(), store.get(name)?);
    }
    let syntax = SyntaxConfig::builder()
        .block_delimiters("${%", "%}")
        .variable_delimiters("${{", "}}")
        .comment_delimiters("${#", "#}")
        .build()
        .map_err(|e| anyhow!("template syntax: {e}"))?;
    let mut env = Environment::new();
    env.set_syntax(syntax);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_keep_trailing_newline(true);
    env.add_template("config", text)
        .map_err(|e| anyhow!("the config is not a valid template: {}", describe(&e)))?;
    let template = env.get_template("config").map_err(|e| anyhow!("{}", describe(&e)))?;
    template.render(minijinja::context! { secrets => values }).map_err(|e| {
        anyhow!(
            "rendering the config: {} (secrets must be declared in meta.secrets)",
            describe(&e)
        )
    })
}

/// A template error without the template source: rendered text may hold secrets.
fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("{} (line {line})", e.kind()),
        None => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_declared_secrets_from_a_file() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("secrets.txt");
        std::fs::write(&file, "FALCON_SECRET=s3cr3t-value\nOTHER = x\n").expect("write");
        let store = SecretStore::File(file);
        let out = render(
            "a: ${{ secrets.FALCON_SECRET }}\nb: ${{secrets.OTHER}}\n",
            &["FALCON_SECRET".into(), "OTHER".into()],
            &store,
        )
        .expect("renders");
        assert_eq!(out, "a: s3cr3t-value\nb: x\n");
    }

    #[test]
    fn undeclared_or_missing_secrets_are_errors_without_values() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("secrets.txt");
        std::fs::write(&file, "DECLARED=hunter2\n").expect("write");
        let store = SecretStore::File(file);
        let err = render(
            "a: ${{ secrets.UNDECLARED }}\nb: ${{ secrets.DECLARED }}",
            &["DECLARED".into()],
            &store,
        )
        .expect_err("undeclared");
        assert!(!format!("{err:#}").contains("hunter2"), "{err:#}");
        let err = render("a: 1", &["MISSING".into()], &store).expect_err("missing");
        assert!(format!("{err:#}").contains("MISSING"));
        assert!(render("a: 1", &["1BAD".into()], &store).is_err());
    }
}

# The two set-up commands of the README are `make demo` and `make test`; each
# installs what it needs (rustup targets) and builds what it uses.

SM_DIR := smartmodules/falcon-audit-to-cloudtrail
SM_WASM := $(SM_DIR)/target/wasm32-wasip1/release/falcon_audit_to_cloudtrail.wasm
OCSF_DIR := smartmodules/falcon-audit-to-ocsf
GLUE_DIR := smartmodules/glue

.PHONY: demo test setup wasm lint bench

## Runs both emulators and the whole pipeline, then prints a summary.
demo: wasm
	cargo run --bin falcon-lake -- demo --wasm $(SM_WASM)

## Runs every check CI runs: formatting, clippy, all tests (native and wasm).
test: wasm lint
	AWS_EC2_METADATA_DISABLED=true cargo test --workspace
	cd $(SM_DIR) && cargo test
	cd $(OCSF_DIR) && cargo test
	cd $(GLUE_DIR) && cargo test

setup:
	rustup target add wasm32-wasip1 wasm32-unknown-unknown

## Builds both SmartModules for both targets (what smdk builds, and --nowasi).
wasm: setup
	cd $(SM_DIR) && cargo build --release --target wasm32-wasip1
	cd $(SM_DIR) && cargo build --release --target wasm32-unknown-unknown
	cd $(OCSF_DIR) && cargo build --release --target wasm32-wasip1
	cd $(OCSF_DIR) && cargo build --release --target wasm32-unknown-unknown
	cd smartmodules/test-faults && cargo build --release --target wasm32-wasip1

lint:
	rustup component add rustfmt clippy
	cargo fmt --all --check
	cd $(SM_DIR) && cargo fmt --check
	cd $(OCSF_DIR) && cargo fmt --check
	cd $(GLUE_DIR) && cargo fmt --check
	cargo clippy --workspace --all-targets -- -D warnings
	cd $(SM_DIR) && cargo clippy --all-targets -- -D warnings
	cd $(OCSF_DIR) && cargo clippy --all-targets -- -D warnings
	cd $(GLUE_DIR) && cargo clippy --all-targets -- -D warnings
	cd smartmodules/test-faults && cargo fmt --check && cargo clippy -- -D warnings

## Benchmarks (release build); each prints its figures.
bench: wasm
	cargo bench --bench falcon_client
	cargo bench --bench smartmodule
	cargo bench --bench publisher
	cargo bench --bench pipeline

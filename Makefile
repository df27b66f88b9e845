# The two set-up commands of the README are `make demo` and `make test`; each
# installs what it needs (rustup targets) and builds what it uses. Both build
# with one profile and one feature set (Cargo.toml), so `make test` reuses
# every dependency `make demo` built. Independent builds run side by side
# (`$(MAKE) -j2`, one jobserver: never more jobs than cores).

SM_DIR := smartmodules/falcon-audit-to-cloudtrail
SM_WASM := $(SM_DIR)/target/wasm32-wasip1/release/falcon_audit_to_cloudtrail.wasm
OCSF_DIR := smartmodules/falcon-audit-to-ocsf
# The modules' shared glue: not a workspace of its own in the build, its tests
# run inside the OCSF module's workspace (one target dir, no extra build).
OCSF_TESTS := -p falcon-audit-to-ocsf -p falcon-lake-glue

# Clippy as the compiler of the workspace's own crates in the test build: the
# same lints as `cargo clippy --all-targets -- -D warnings`, without a second,
# check-mode build of every dependency.
CLIPPY := RUSTC_WORKSPACE_WRAPPER=clippy-driver CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings
export AWS_EC2_METADATA_DISABLED := true
# Test binaries run side by side (scripts/test-lanes.sh): most of their time
# is waiting, so three at a time keep two cores busy.
TEST_LANES ?= 3
# The SmartModules are found in their own crates' target/ (the tests and the
# demo look there), so a CARGO_TARGET_DIR from the environment must not move them.
unexport CARGO_TARGET_DIR
# The SmartModule crates (each its own workspace, as smdk builds them) share
# one target directory here, so the ~50 dependencies they have in common
# compile once per target and profile instead of once per crate; each module
# is then copied to its own crate's target/, where smdk would put it.
SM_TARGET := $(CURDIR)/smartmodules/target
SM_CARGO := CARGO_TARGET_DIR=$(SM_TARGET) cargo
# $(call sm-build,CRATE_DIR,TRIPLE,FILE[,PREFIX]): builds a module there (its
# command prefixed by PREFIX) and copies it to its crate's target/.
sm-build = (cd $(1) && $(4) $(SM_CARGO) build --release --target $(2)) \
	&& mkdir -p $(1)/target/$(2)/release && cp $(SM_TARGET)/$(2)/release/$(3) $(1)/target/$(2)/release/$(3)
CT_WASM := falcon_audit_to_cloudtrail.wasm
OCSF_WASM := falcon_audit_to_ocsf.wasm

.PHONY: demo test setup tools wasm wasm-demo lint fmt deps-check bench \
	build-demo build-bin build-test build-tests build-sm build-sm-tests

## Runs both emulators and the whole pipeline, then prints a summary.
demo: setup
	$(MAKE) --no-print-directory -j2 build-demo
	cargo run --bin falcon-lake -- demo --wasm $(SM_WASM)

build-demo: wasm-demo build-bin

# The demo needs only the SmartModule for wasm32-wasip1.
wasm-demo:
	+$(call sm-build,$(SM_DIR),wasm32-wasip1,$(CT_WASM))

build-bin:
	+cargo build --bin falcon-lake

## Runs every check CI runs: formatting, clippy, all tests (native and wasm).
test: setup tools fmt deps-check
	$(MAKE) --no-print-directory -j2 build-test
	$(CLIPPY) cargo test --workspace --tests --no-run --message-format=json-render-diagnostics > target/test-binaries.json
	sh scripts/test-lanes.sh $(TEST_LANES) < target/test-binaries.json
	sh deploy/systemd/verify.sh target/debug/falcon-lake
	cd $(SM_DIR) && $(CLIPPY) $(SM_CARGO) test
	cd $(OCSF_DIR) && $(CLIPPY) $(SM_CARGO) test $(OCSF_TESTS)

build-test: build-tests build-sm

# Every target of the workspace, benches included, built once with clippy's lints.
build-tests:
	+$(CLIPPY) cargo test --workspace --all-targets --no-run

# The SmartModule builds as one job: a job holds its slot from its first
# command to its last, so they keep a core beside the workspace's build
# instead of waiting, each one, for cargo there to hand a slot back.
build-sm:
	+$(MAKE) --no-print-directory wasm
	+$(MAKE) --no-print-directory build-sm-tests

build-sm-tests:
	+cd $(SM_DIR) && $(CLIPPY) $(SM_CARGO) test --all-targets --no-run
	+cd $(OCSF_DIR) && $(CLIPPY) $(SM_CARGO) test --all-targets --no-run $(OCSF_TESTS)

setup:
	rustup target add wasm32-wasip1 wasm32-unknown-unknown

tools:
	rustup component add rustfmt clippy

## Builds both SmartModules for both targets (what smdk builds, and --nowasi),
## and the test fixture module, linted by clippy as it compiles.
wasm: setup
	+$(call sm-build,$(SM_DIR),wasm32-wasip1,$(CT_WASM))
	+$(call sm-build,$(SM_DIR),wasm32-unknown-unknown,$(CT_WASM))
	+$(call sm-build,$(OCSF_DIR),wasm32-wasip1,$(OCSF_WASM))
	+$(call sm-build,$(OCSF_DIR),wasm32-unknown-unknown,$(OCSF_WASM))
	+$(call sm-build,smartmodules/test-faults,wasm32-wasip1,test_faults.wasm,$(CLIPPY))

fmt: tools
	cargo fmt --all --check
	cd $(SM_DIR) && cargo fmt --check
	cd $(OCSF_DIR) && cargo fmt --check
	cd smartmodules/glue && cargo fmt --check
	cd smartmodules/test-faults && cargo fmt --check

## `cargo run` and `cargo test` must resolve the same features (else the tests
## rebuild most of the graph), and the AWS SDK must not bring back its legacy
## HTTPS stack (hyper 0.14, rustls 0.21, ring).
deps-check:
	@mkdir -p target
	@cargo tree -p falcon-lake -e normal,build -f '{p}|{f}' --prefix none | sed 's/ (\*)$$//' | sort -u > target/.features-run
	@cargo tree --workspace -e normal,build,dev -f '{p}|{f}' --prefix none | sed 's/ (\*)$$//' | sort -u > target/.features-test
	@awk -F'|' 'NR == FNR { run[$$1] = run[$$1] " [" $$2 "]"; next } { test[$$1] = test[$$1] " [" $$2 "]" } \
		END { for (p in run) if (p in test && run[p] != test[p]) { bad = 1; \
			print "deps-check: " p " has features" run[p] " for cargo run but" test[p] " for cargo test;" } \
		if (bad) print "deps-check: enable the extra features in the root [dependencies] (see the comment there)"; exit bad }' \
		target/.features-run target/.features-test
	@if cargo tree --workspace -e normal -i hyper@0.14 >/dev/null 2>&1; then \
		echo "deps-check: hyper 0.14 is back: give every aws-sdk-* crate default-features = false," \
			'features = ["behavior-version-latest", "default-https-client", "rt-tokio"]'; exit 1; fi

## What `make test` lints, the classic way (a check-mode build of everything).
lint: fmt
	cargo clippy --workspace --all-targets -- -D warnings
	cd $(SM_DIR) && cargo clippy --all-targets -- -D warnings
	cd $(OCSF_DIR) && cargo clippy --all-targets $(OCSF_TESTS) -- -D warnings
	cd smartmodules/test-faults && cargo clippy -- -D warnings

## Benchmarks (release build); each prints its figures.
bench: wasm
	cargo bench --bench falcon_client
	cargo bench --bench smartmodule
	cargo bench --bench publisher
	cargo bench --bench cloudwatch_publisher
	cargo bench --bench pipeline
	cargo bench --bench crash
	cargo bench --bench recovery

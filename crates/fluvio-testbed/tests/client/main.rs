//! The real `fluvio` 0.50.1 client against the test cluster. One test binary
//! (the client is large to link); one module per area.

mod support;

mod fetch;
mod offsets;
mod produce;
mod restart;
mod retention;
mod smartmodules;
mod topics;
mod watch;
mod wire;

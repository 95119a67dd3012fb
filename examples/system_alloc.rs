//! The `portcullis` command with the system allocator instead of mimalloc, for heap profilers
//! that only see `malloc` (heaptrack, massif). Not for production: the binary's allocator is
//! mimalloc because the data plane measures faster with it.
//!
//!   cargo build --release --example system_alloc
//!   heaptrack target/release/examples/system_alloc controller --config … --kubeconfig …

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}

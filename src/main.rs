//! The `portcullis` binary: a thin wrapper over the library's command line.

// mimalloc: the proxy allocates small, short-lived buffers on every request, which glibc's
// allocator handles noticeably slower (measured with bench/dataplane.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}

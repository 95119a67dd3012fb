//! The `portcullis` binary: a thin wrapper over the library's command line.

// mimalloc: the proxy allocates small, short-lived buffers on every request, which glibc's
// allocator handles noticeably slower (measured with bench/dataplane.sh); called as `malloc` is
// wherever the alignment allows (see the module).
#[global_allocator]
static GLOBAL: portcullis::allocator::Mimalloc = portcullis::allocator::Mimalloc;

fn main() -> std::process::ExitCode {
    portcullis::allocator::no_transparent_huge_pages();
    portcullis::cli::main()
}

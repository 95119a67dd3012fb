//! The `portcullis` binary: a thin wrapper over the library's command line.

// mimalloc: the proxy allocates small, short-lived buffers on every request, which glibc's
// allocator handles noticeably slower (measured with bench/dataplane.sh); called as `malloc` is
// wherever the alignment allows (see the module).
#[global_allocator]
static GLOBAL: portcullis::allocator::Mimalloc = portcullis::allocator::Mimalloc;

fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    portcullis::cli::main()
}

/// mimalloc asks Linux for transparent huge pages on the memory it reserves, so every 2 MiB
/// region it touches becomes resident as a whole, used or not. For a controller holding a
/// cluster's objects that was about 27 MiB of the resident memory after the first table at
/// 10,000 Ingresses (166 → 139 MiB), and 26 MiB of an idle process; the data plane's throughput
/// does not depend on them. This opts the process out (huge pages stay available to everything
/// else on the node); where the call is refused nothing changes.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integers only and sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

//! The `portcullis` binary: the CLI of the library.

/// mimalloc instead of glibc's malloc: the proxy path allocates and frees
/// many small buffers per request (headers, bytes, futures), where glibc's
/// allocator showed as ~10% of the gateway's CPU (benches/PROFILE.md,
/// benches/RESULTS.md has the A/B).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}

/// mimalloc rather than glibc's malloc: a warm eval is mostly building and
/// freeing small objects (bench/solve.rs measures it).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (mimalloc.h; the
/// sys crate leaves the experimental options unnamed on purpose, and
/// Cargo.lock pins the version).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // `<lua>` scriptlets run this executable in the sandbox (builders::lua).
    if let Some(status) = cvmbuild::builders::lua::dispatch() {
        std::process::exit(status);
    }
    let status = cvmbuild::cli::main();
    // The process ends now: handing free memory back to the kernel range by
    // range (mimalloc does so at exit) is wasted work, 6% of a warm eval.
    // SAFETY: sets an option; only this thread runs Rust code any more.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    std::process::exit(status);
}

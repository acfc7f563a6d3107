fn main() {
    // `<lua>` scriptlets run this executable in the sandbox (builders::lua).
    if let Some(status) = cvmbuild::builders::lua::dispatch() {
        std::process::exit(status);
    }
    std::process::exit(cvmbuild::cli::main());
}

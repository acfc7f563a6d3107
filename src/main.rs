fn main() {
    std::process::exit(cvmbuild::cli::main());
}

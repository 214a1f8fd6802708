fn main() {
    eprintln!(
        "twopc-coordinator {}: the coordinator service is not built yet (see the Coordinator issue)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}

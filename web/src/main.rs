//! Entry point of the twopc browser app (see the library for the structure).

#[cfg(target_arch = "wasm32")]
fn main() {
    twopc_web::app::run();
}

/// On the host there is nothing to run: the app only makes sense in a browser. The library's
/// logic is tested with `cargo test -p twopc-web --lib`.
#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("twopc-web is a browser app: build it with scripts/build-web.sh");
}

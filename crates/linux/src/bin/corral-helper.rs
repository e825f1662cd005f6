//! The single-threaded helper that creates sandboxes; see `corral_linux::helper`.
fn main() {
    corral_linux::helper::main()
}

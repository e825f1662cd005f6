//! The single-threaded helper that creates sandboxes; see `corral_linux::helper`.
//!
//! Runs in: the helper.
fn main() {
    corral_linux::helper::main()
}

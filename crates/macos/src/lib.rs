//! corral's macOS backend (placeholder crate root; the Seatbelt compiler lands here).

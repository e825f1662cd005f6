//! placeholder until the fork module lands

//! Placeholder replaced by the session benchmarks.
fn main() {}

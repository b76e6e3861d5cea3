//! criterion benchmarks for the multus crates; see the `[[bench]]` targets.

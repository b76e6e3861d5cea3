//! Links `multus` as a position-dependent executable: a PIE binary makes the loader relocate (and so touch)
//! every page of `.data.rel.ro` at start, which a CNI plugin living for milliseconds pays for in peak RSS
//! (about 0.4 MiB measured; BENCHMARKS.md).
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}

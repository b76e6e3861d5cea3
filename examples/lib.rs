//! Examples of embedding the multus crates; see the `[[example]]` targets.

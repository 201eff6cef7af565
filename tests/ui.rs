//! Compile-time checks: each file in `ui/fail` must fail with exactly the
//! committed `.stderr`, and each file in `ui/pass` must compile.
//!
//! Compiler messages change between releases, so the expected output is
//! pinned to one toolchain, rustc 1.95 (`rust-toolchain.toml`). On any other
//! the test still exists but reports itself ignored, with the reason, rather
//! than failing on wording (`--include-ignored` runs it anyway). Refresh the
//! expectations with `TRYBUILD=overwrite cargo test --test ui`.

// Before `#[test]`: attribute macros expand from the outside in, and the
// test harness reads `#[ignore]` when `#[test]` expands.
#[rustversion::attr(
    not(stable(1.95)),
    ignore = "the .stderr files are pinned to rustc 1.95 (rust-toolchain.toml); other compilers word their errors differently"
)]
#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}

//! Compile-time checks: each file in `ui/fail` must fail with exactly the
//! committed `.stderr`, and each file in `ui/pass` must compile.
//!
//! Compiler messages change between releases, so the expected output is
//! pinned to one toolchain; on any other the test does not exist (rather
//! than failing on wording). Refresh with `TRYBUILD=overwrite`.

#[rustversion::stable(1.95)]
#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}

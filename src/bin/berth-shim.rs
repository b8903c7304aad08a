//! `berth-shim`: the per-container supervisor (crate `berth-shim`,
//! decision 0036), built as a binary of the `berth` package.

fn main() {
    std::process::exit(berth_shim::main());
}

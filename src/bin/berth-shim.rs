fn main() {
    std::process::exit(berth::shim::main());
}

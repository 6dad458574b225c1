use which::which;

fn main() {
    // The linker does the code generation (rustc already passes `--cpu generic`, so only
    // features can be added). 32-bit ALU (kernel 5.0+) lets the 32-bit hash arithmetic go
    // without masking. (Not misaligned access: it lets LLVM place 8-byte stack stores at odd
    // offsets, which the verifier rejects.)
    println!("cargo:rustc-link-arg=--cpu-features=+alu32");
    // Rebuild when bpf-linker changes: cargo cannot see it as a dependency.
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}

use which::which;

fn main() {
    // The linker does the code generation, for the CPU rustc passes it (`-C target-cpu`, which
    // lb-userspace's build script sets: see its BPF_CPU).
    // Rebuild when bpf-linker changes: cargo cannot see it as a dependency.
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}

use std::{
    env, fs,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};
use cargo_metadata::{Artifact, CompilerMessage, Message, Target};

/// The BPF instruction set the programs are generated for. v3 (Linux 5.1) adds 32-bit ALU
/// operations and 32-bit conditional jumps to v1's: the flow hash, all 32-bit multiplies and
/// rotates, then needs no zero-extension, and a SYN costs 4% less (`cargo xtask bench`). With
/// 32-bit ALU alone (v1 with `+alu32`), comparisons became 0/1 values tested afterwards, and
/// the program grew by a quarter.
const BPF_CPU: &str = "v3";

/// Builds the XDP programs (lb-ebpf) with the nightly toolchain and bpf-linker, so that `xlb`
/// embeds them. `cargo xtask` installs both when they are missing. As aya-build's
/// `build_ebpf` does, with one difference: it sets `-C target-cpu` ([`BPF_CPU`]), which
/// aya-build has no way to pass (it sets every rustflag itself, and rustc gives bpf-linker
/// `--cpu generic` unless told otherwise).
fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "lb-ebpf")
        .ok_or_else(|| anyhow!("lb-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    // The bins, not just the library cargo sees as a dependency.
    println!("cargo:rerun-if-changed={root_dir}");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("little") => "bpfel-unknown-none",
        Ok("big") => "bpfeb-unknown-none",
        other => bail!("unsupported endianness {other:?}"),
    };
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    let rustflags = [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".into(),
        "-Clink-arg=--btf".into(),
        format!("-Ctarget-cpu={BPF_CPU}"),
    ]
    .join("\x1f");

    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "build", "--package"])
        .arg(ebpf.name.as_str())
        .args([
            "--bins",
            "--message-format=json",
            "--release",
            "--target",
            target,
        ])
        .args(["-Z", "build-std=core"])
        .arg("--target-dir")
        // Apart from OUT_DIR's artifacts, so that a bin named as the package cannot collide.
        .arg(out_dir.join("ebpf-target"))
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        // This build's own compiler is stable: the nested cargo must find nightly's.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    let stderr = BufReader::new(child.stderr.take().context("no stderr")?);
    let stderr = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            println!("cargo:warning={line}");
        }
    });
    let mut executables = Vec::new();
    let stdout = BufReader::new(child.stdout.take().context("no stdout")?);
    for message in Message::parse_stream(stdout) {
        match message.context("cargo's JSON messages")? {
            Message::CompilerArtifact(Artifact {
                executable: Some(executable),
                target: Target { name, .. },
                ..
            }) => executables.push((name, executable.into_std_path_buf())),
            Message::CompilerMessage(CompilerMessage { message, .. }) => {
                for line in message.rendered.unwrap_or_default().lines() {
                    println!("cargo:warning={line}");
                }
            }
            Message::TextLine(line) => println!("cargo:warning={line}"),
            _ => {}
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {cmd:?}"))?;
    let _ = stderr.join();
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    for (name, binary) in executables {
        let to = out_dir.join(&name);
        fs::copy(&binary, &to)
            .with_context(|| format!("copying {} to {}", binary.display(), to.display()))?;
    }
    Ok(())
}

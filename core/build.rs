//! Compiles the kernel write tracker's BPF program (src/kernel/track.bpf.c)
//! with clang when building for Linux; other targets have no tracker and
//! need no clang.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "src/kernel/track.bpf.c";

fn main() {
    println!("cargo::rerun-if-changed={SOURCE}");
    println!("cargo::rerun-if-env-changed=CLANG");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=LIVEMIRROR_REQUIRE_BPF");
    println!("cargo::rustc-check-cfg=cfg(livemirror_no_bpf)");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("track.bpf.o");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let bpf_target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("big") => "bpfeb",
        _ => "bpfel",
    };
    // <linux/bpf.h> includes <asm/types.h>, which Debian keeps under the
    // target's multiarch directory; clang -target bpf does not look there.
    let multiarch = format!("/usr/include/{arch}-linux-{target_env}");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", bpf_target, "-mcpu=v3"])
        .arg(format!("-I{multiarch}"))
        .args(["-c", SOURCE, "-o"])
        .arg(&out)
        .status();
    let failed = match status {
        Ok(s) if s.success() => return,
        Ok(s) => format!("{clang} failed ({s}) compiling {SOURCE}"),
        Err(e) => format!("cannot run {clang} ({e})"),
    };
    // Without clang (a fresh machine with only the Rust toolchain) the
    // program still builds and runs, without kernel tracking: attaching
    // says why. CI and the test command install clang, so there a failure
    // is an error, never a tracker silently missing.
    if env::var("CI").is_ok_and(|v| v == "true") || env::var_os("LIVEMIRROR_REQUIRE_BPF").is_some()
    {
        panic!("{failed}: install clang and libbpf-dev to build the kernel write tracker");
    }
    println!(
        "cargo::warning={failed}: building without kernel write tracking (apt-get install clang libbpf-dev)"
    );
    println!("cargo::rustc-cfg=livemirror_no_bpf");
}

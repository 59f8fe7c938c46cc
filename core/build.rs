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
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed ({s}) compiling {SOURCE}, the kernel write tracker"),
        Err(e) => panic!(
            "cannot run {clang} ({e}): building livemirror-core for Linux compiles its BPF \
             program with clang; install it with `apt-get install clang libbpf-dev` \
             (or set CLANG to a clang that targets bpf)"
        ),
    }
}

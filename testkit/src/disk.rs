//! Partitioned disk images, made and judged with the system's tools:
//! `sgdisk`/`sfdisk` make the tables, `mkfs.ext4` and `debugfs` fill a
//! partition with files (no mount needed), and the judges are `sgdisk -v`,
//! `sfdisk --verify`, `fsck.ext4 -n`, `debugfs` (the files' bytes) and
//! `cmp`. This kernel parses no partition tables, so a partition is reached
//! through a loop device over its byte range (`losetup -o --sizelimit`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pattern;
use crate::tools::run;

pub const MIB: u64 = 1 << 20;

/// A partition in bytes of its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub number: u32,
    pub start: u64,
    pub len: u64,
}

impl Part {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// A new sparse image of `size` bytes with a GPT (`sgdisk -o`) and one
/// partition per entry of `mib`, MiB-aligned, one after the other.
pub fn gpt_image(path: &Path, size: u64, mib: &[u64]) -> Vec<Part> {
    crate::image::sparse_image(path, size, &[]);
    let mut args = vec!["-o".to_string()];
    for (i, m) in mib.iter().enumerate() {
        args.push(format!("--new={}:0:+{m}M", i + 1));
    }
    args.push(path.display().to_string());
    run("sgdisk", &args.iter().map(String::as_str).collect::<Vec<_>>());
    partitions(path)
}

/// A new sparse image of `size` bytes with an MBR (`sfdisk`) and primary
/// partitions of `mib` MiB each.
pub fn mbr_image(path: &Path, size: u64, mib: &[u64]) -> Vec<Part> {
    let lines: Vec<String> = mib.iter().map(|m| format!("size={m}M")).collect();
    mbr_image_with(path, size, &lines.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A new sparse image of `size` bytes with an MBR made by `sfdisk` from
/// these partition lines (`size=8M, type=5` for an extended partition, …).
pub fn mbr_image_with(path: &Path, size: u64, lines: &[&str]) -> Vec<Part> {
    crate::image::sparse_image(path, size, &[]);
    let script: String = std::iter::once("label: dos")
        .chain(lines.iter().copied())
        .map(|l| format!("{l}\n"))
        .collect();
    let script_file = path.with_extension("sfdisk");
    std::fs::write(&script_file, script).expect("write the sfdisk script");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("sfdisk -q '{}' < '{}'", path.display(), script_file.display()))
        .output()
        .expect("sh");
    assert!(out.status.success(), "sfdisk: {}", String::from_utf8_lossy(&out.stderr));
    partitions(path)
}

/// The image's partitions, as `sfdisk -d` lists them (GPT or MBR).
pub fn partitions(path: &Path) -> Vec<Part> {
    let dump = run("sfdisk", &["-d", path.to_str().expect("utf-8 path")]);
    dump.lines()
        .filter_map(|l| {
            let (node, fields) = l.split_once(" : ")?;
            let number = node.trim().rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
            let field = |name: &str| -> Option<u64> {
                fields.split(',').find_map(|f| f.trim().strip_prefix(name)?.trim().parse().ok())
            };
            Some(Part { number, start: field("start=")? * 512, len: field("size=")? * 512 })
        })
        .collect()
}

/// A loop device over a byte range of a file, detached on drop.
pub struct Loop(pub PathBuf);

impl Loop {
    pub fn over(file: &Path, part: Part) -> Loop {
        let dev = run(
            "losetup",
            &[
                "--find",
                "--show",
                "-o",
                &part.start.to_string(),
                "--sizelimit",
                &part.len.to_string(),
                file.to_str().expect("utf-8 path"),
            ],
        );
        Loop(PathBuf::from(dev.trim()))
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// Files put in a partition: names and contents.
pub type Files = Vec<(String, Vec<u8>)>;

/// Formats the partition ext4 and writes `count` pattern files of `len`
/// bytes into it with debugfs. Returns what it wrote.
pub fn ext4_with_files(image: &Path, part: Part, count: usize, len: usize) -> Files {
    let lo = Loop::over(image, part);
    run("mkfs.ext4", &["-q", "-F", lo.path()]);
    let host = image.with_extension(format!("file{}", part.number));
    let files: Files = (0..count)
        .map(|i| (format!("f{i}"), pattern(len, (part.number as u64) << 8 | i as u64)))
        .collect();
    for (name, bytes) in &files {
        std::fs::write(&host, bytes).expect("write the file to put");
        let cmd = format!("write {} {name}", host.display());
        run("debugfs", &["-w", "-R", &cmd, lo.path()]);
    }
    files
}

/// Asserts the partition holds exactly these files' bytes (`debugfs cat`).
pub fn assert_files(image: &Path, part: Part, files: &Files) {
    let lo = Loop::over(image, part);
    for (name, bytes) in files {
        let out = Command::new("debugfs").args(["-R", &format!("cat {name}"), lo.path()]).output();
        let out = out.expect("debugfs (e2fsprogs) must be installed");
        assert!(out.stdout == *bytes, "{name} in partition {} differs", part.number);
    }
}

/// `fsck.ext4 -n -f` finds nothing wrong in the partition.
pub fn assert_fsck_clean(image: &Path, part: Part) {
    let lo = Loop::over(image, part);
    run("fsck.ext4", &["-n", "-f", lo.path()]);
}

/// The ext filesystem's size in bytes (`dumpe2fs -h`).
pub fn ext_size(image: &Path, part: Part) -> u64 {
    let lo = Loop::over(image, part);
    let out = run("dumpe2fs", &["-h", lo.path()]);
    let field = |name: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("dumpe2fs has no {name}:\n{out}"))
    };
    field("Block count:") * field("Block size:")
}

/// `cmp` finds the partition's bytes the same in both images.
pub fn assert_same_bytes(a: &Path, b: &Path, part: Part) {
    let skip = format!("{}:{}", part.start, part.start);
    let n = part.len.to_string();
    let (a, b) = (a.to_str().expect("utf-8 path"), b.to_str().expect("utf-8 path"));
    run("cmp", &["-n", &n, "-i", &skip, a, b]);
}

/// `sgdisk -v` reports no problem.
pub fn assert_sgdisk_valid(image: &Path) {
    let out = run("sgdisk", &["-v", image.to_str().expect("utf-8 path")]);
    assert!(out.contains("No problems found"), "sgdisk -v {}:\n{out}", image.display());
}

/// `sfdisk --verify` reports no error.
pub fn assert_sfdisk_valid(image: &Path) {
    let out = run("sfdisk", &["--verify", image.to_str().expect("utf-8 path")]);
    assert!(out.contains("No errors detected"), "sfdisk --verify {}:\n{out}", image.display());
}

//! After a clone onto a target of another size (or with
//! `--grow-last-partition`): the target's partition table made right for its
//! size, the last partition's filesystem grown if asked and possible, and a
//! comparison that says exactly what it compared. Shared by `clone`,
//! `serve --mirror-to` and the window; only the target is ever written.

use std::path::Path;
use std::process::Command;

use livemirror_core::device::BlockDevice;
use livemirror_core::partition::{
    self, Comparison, Filesystem, Fit, FixUp, Grown, PartitionError, Relation,
};

use crate::text::human;

/// What [`fix_up`] did, in lines for a person.
#[derive(Debug, Clone, Default)]
pub struct Fixed {
    pub fix: FixUp,
    pub lines: Vec<String>,
}

/// True when a completed clone with this fit needs [`fix_up`].
pub fn needed(fit: &Fit, grow: bool) -> bool {
    fit.relation() != Relation::Same || grow
}

/// Rewrites the target's table for its size (and grows the last partition
/// with `grow`, then its ext2/3/4 filesystem with `resize2fs` when that is
/// installed). `path` is how the system names the target, for the
/// filesystem tools.
pub fn fix_up(
    target: &dyn BlockDevice,
    path: &Path,
    fit: &Fit,
    grow: bool,
) -> Result<Fixed, SizeError> {
    let fix = partition::fix_up(target, fit.source_len, grow).map_err(SizeError::Table)?;
    let mut lines = vec![format!("partition table: {fix}")];
    if let Some(g) = &fix.grown {
        lines.push(grow_filesystem(path, g)?);
    }
    Ok(Fixed { fix, lines })
}

/// Compares a target of another size with the source, after [`fix_up`]:
/// the partitions and the bytes around them, the table by meaning.
pub fn verify(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
    fit: &Fit,
    fixed: &Fixed,
) -> Result<Comparison, SizeError> {
    partition::compare(source, target, fit.copy_len, fixed.fix.grown.map(|g| g.partition))
        .map_err(SizeError::Verify)
}

/// What went wrong after a copy onto a target of another size.
#[derive(Debug, thiserror::Error)]
pub enum SizeError {
    #[error("the copy is complete, but its partition table could not be fixed up: {0}")]
    Table(PartitionError),
    #[error("could not verify the target: {0}")]
    Verify(PartitionError),
    #[error("partition {partition} grew, but its filesystem could not: {tool}")]
    Grow { partition: u32, tool: ToolError },
    #[error(transparent)]
    Tool(#[from] ToolError),
}

/// A filesystem tool that could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{tool}: {source}")]
    Spawn { tool: &'static str, source: std::io::Error },
    #[error("{tool} failed ({status}): {stderr}")]
    Failed { tool: &'static str, status: std::process::ExitStatus, stderr: String },
}

/// Grows the filesystem of the grown partition, reached through a loop
/// device over its byte range (the same for image files and disks, and it
/// needs no partition nodes from the kernel).
fn grow_filesystem(path: &Path, g: &Grown) -> Result<String, SizeError> {
    let n = g.partition.number;
    let Some(Filesystem::Ext) = g.filesystem else {
        return Ok(format!(
            "partition {n} grown to {}; its filesystem is not ext2/3/4: grow it with the OS's tools",
            human(g.partition.end - g.partition.start)
        ));
    };
    if !on_path("resize2fs") {
        return Ok(format!(
            "partition {n} grown; resize2fs is not installed, so its ext filesystem keeps its size: run resize2fs on it"
        ));
    }
    let len = g.partition.end - g.partition.start;
    let lo = run(
        "losetup",
        &["--show", "-f", "-o", &g.partition.start.to_string(), "--sizelimit", &len.to_string()],
        Some(path),
    )?;
    let lo = lo.trim().to_string();
    // resize2fs wants a freshly checked filesystem; -p fixes only what is
    // safe and fails on anything else.
    let grown =
        run("e2fsck", &["-f", "-p", &lo], None).and_then(|_| run("resize2fs", &[&lo], None));
    let detached = run("losetup", &["-d", &lo], None);
    grown.map_err(|tool| SizeError::Grow { partition: n, tool })?;
    detached?;
    Ok(format!("partition {n}: ext filesystem grown to {} with resize2fs", human(len)))
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Runs a tool; its stdout, or an error with its stderr.
fn run(tool: &'static str, args: &[&str], path: Option<&Path>) -> Result<String, ToolError> {
    let mut cmd = Command::new(tool);
    cmd.args(args);
    if let Some(p) = path {
        cmd.arg(p);
    }
    let out = cmd.output().map_err(|source| ToolError::Spawn { tool, source })?;
    // e2fsck: 1 means "errors corrected", which is what -p is for.
    let ok = out.status.success() || (tool == "e2fsck" && out.status.code() == Some(1));
    if ok {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ToolError::Failed {
            tool,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

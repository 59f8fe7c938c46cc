//! The arguments of `livemirror clone`, apart from the code that runs
//! them: `clone.rs` mirrors, `flash.rs` writes a compressed image, and both
//! read these.

use std::path::PathBuf;

use clap::Args;

use super::{CacheArgs, FormatArgs, MirrorArgs, StateArgs};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  livemirror clone disk.img copy.img
  livemirror clone --sync top --speed 100M sparse.img copy.img --json
  livemirror clone /dev/sdb /dev/sdc
  livemirror clone vm.qcow2 disk.img
  livemirror clone /dev/sdb backup.qcow2
  livemirror clone --sync top --target-backing base.img overlay.qcow2 copy.qcow2
  livemirror clone disk.img nbd://backup-host/disk
  livemirror clone disk.img 'nbd+unix:///?socket=/run/qemu-nbd.sock'

Disks without root: a block device you may not open is opened through udisks2
(polkit decides, and may ask for a password). Without udisks2, run as
administrator: pkexec livemirror clone SRC DST")]
pub struct CloneArgs {
    /// The disk, image or NBD URI to copy (opened read-only).
    pub source: PathBuf,
    /// The disk, image or NBD URI (nbd://HOST[:PORT]/EXPORT,
    /// nbd+unix:///EXPORT?socket=PATH) to write; a path that does not exist
    /// becomes a new sparse image of the source's size (qcow2 when its name
    /// ends .qcow2). A larger target
    /// takes the source on its first bytes; a smaller one only when the
    /// source's partitions and data end in time. A GPT is rewritten for the
    /// target's size.
    pub target: PathBuf,
    #[command(flatten)]
    pub mirror: MirrorArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub formats: FormatArgs,
    /// Print one JSON event per line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also take commands (pause, set-speed, complete, …) and push events on
    /// a JSON-lines control socket, `unix:PATH` (`pipe:NAME` on Windows).
    #[arg(long, value_parser = crate::cli::control::parse_addr)]
    pub control: Option<PathBuf>,
    /// Stay in sync after ready until Ctrl-C (cancel after ready: the target
    /// stays a consistent copy) or `complete` on the control socket.
    #[arg(long)]
    pub no_complete: bool,
    /// After the copy, move the last partition's end to the end of the
    /// target (and grow its ext2/3/4 filesystem with resize2fs if installed).
    #[arg(long)]
    pub grow_last_partition: bool,
    /// Bring an earlier copy up to date: copy only the chunks that differ —
    /// those a completed `serve SRC --mirror-to DST` recorded its clients
    /// wrote since, when neither file changed after, else found by a compare
    /// pass (the same as --sync differing).
    #[arg(long)]
    pub resync: bool,
    /// Make the new qcow2 target of compressed clusters (deflate, as
    /// `qemu-img convert -c` does): an image out, the source read once,
    /// front to back, with no write tracking, then read back and checked.
    #[arg(long)]
    pub compress: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

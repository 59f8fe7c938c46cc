//! A compressed image's target, for the command line and the window alike
//! (see [`livemirror_core::flash`]): how it is opened, what a finished
//! image on a larger disk needs, and what a failure leaves behind. One
//! place, so both faces refuse and clean up the same way.

use std::path::Path;
use std::sync::Arc;

use livemirror_core::device::{BlockDevice, OpenOptions};
use livemirror_core::flash::{Compression, FlashError, Target};

use crate::platform::privileged::OpenError;
use crate::session::target;
use crate::text::flash::Left;

/// An existing target (disk, image, export) is written as it is, opened by
/// `open`; a new one is a raw image grown as the stream arrives (`qcow2`:
/// the new file was asked to be qcow2, which needs a size up front). True
/// when the target is made by the flash.
pub fn open_target(
    source: &Path,
    path: &Path,
    format: Compression,
    qcow2: bool,
    open: impl FnOnce() -> Result<Arc<dyn BlockDevice>, OpenError>,
) -> Result<(Target, bool), FlashTargetError> {
    if target::exists(path) {
        let dev = open()?;
        let source = OpenOptions::new().open(source).map_err(FlashTargetError::Source)?;
        livemirror_core::job::refuse_same_or_mounted(&source, &*dev)?;
        return Ok((Target::Device(dev), false));
    }
    if qcow2 {
        return Err(FlashTargetError::NewQcow2FromStream { compression: format });
    }
    Ok((Target::NewFile(path.to_owned()), true))
}

/// An image written onto a larger disk: a GPT in it describes the image's
/// size, its backup header short of the disk's end (`sgdisk -v` calls that
/// a problem, and firmware may too). Rewritten for the disk's size, as the
/// clone path does, once the image is verified; `None` when nothing needed
/// fixing (same size, MBR, no table).
pub fn fix_table(target: &dyn BlockDevice, len: u64) -> Result<Option<String>, FlashError> {
    if target.len() == len {
        return Ok(None);
    }
    let fix = livemirror_core::partition::fix_up(target, len, false)
        .map_err(|e| FlashError::Table(Box::new(e)))?;
    Ok(fix.relocated.then(|| format!("partition table: {fix}")))
}

/// After a failed flash: a partial image this flash `created` is removed
/// (it is no copy of anything); an existing target holds what it holds.
pub fn clean_up(path: &Path, created: bool) -> Left {
    if !path.exists() {
        return Left::NoFile;
    }
    if created {
        match std::fs::remove_file(path) {
            Ok(()) => return Left::Removed,
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot remove the partial image: {e}")
            }
        }
    }
    Left::NotACopy
}

/// Why a compressed image's target cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum FlashTargetError {
    #[error(
        "a new qcow2 image needs its size before the first byte, which a {compression} stream \
         does not give: write the image to a raw file (or a disk) and clone that to qcow2"
    )]
    NewQcow2FromStream { compression: Compression },
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("source: {0}")]
    Source(livemirror_core::Error),
    #[error(transparent)]
    Refused(#[from] livemirror_core::Error),
}

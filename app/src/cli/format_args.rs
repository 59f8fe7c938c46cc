//! Which format the source is read in and the target written in: raw or
//! qcow2, from the content (or a new target's name) unless asked.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use livemirror_core::device::{BlockDevice, ImageFormat, OpenOptions, Qcow2Device};
use livemirror_core::flash::Compression;

use crate::platform::privileged;
use crate::session::target::{self, Created};

/// A format on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// From the file's content (a new target: from its name).
    Auto,
    /// Byte for byte.
    Raw,
    /// QEMU's qcow2.
    Qcow2,
}

impl FormatArg {
    fn format(self) -> Option<ImageFormat> {
        match self {
            FormatArg::Auto => None,
            FormatArg::Raw => Some(ImageFormat::Raw),
            FormatArg::Qcow2 => Some(ImageFormat::Qcow2),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct FormatArgs {
    /// Read the source as this format; auto: by its first bytes, qcow2 (with
    /// its backing chain), a compressed image (xz, zstd, gzip, bzip2, a zip
    /// of one image: clone only, written as a stream), else raw.
    #[arg(long, value_enum, default_value = "auto")]
    pub source_format: FormatArg,
    /// Write the target in this format; auto: an existing file's own format,
    /// and for a new file qcow2 when its name ends .qcow2, else raw.
    #[arg(long, value_enum, default_value = "auto")]
    pub target_format: FormatArg,
    /// Make the new target a qcow2 overlay over this file (raw or qcow2):
    /// what the target's backing already holds need not be copied
    /// (--sync top), and a cluster written the first time is copied whole.
    #[arg(long, value_name = "FILE")]
    pub target_backing: Option<PathBuf>,
}

impl FormatArgs {
    /// The target format asked for, if any.
    pub fn target_format(&self) -> Option<ImageFormat> {
        self.target_format.format()
    }

    /// The compression the source is in, when read by its content (not
    /// with `--source-format raw|qcow2`).
    pub fn source_compression(&self, path: &Path) -> Option<Compression> {
        (self.source_format == FormatArg::Auto).then(|| Compression::of_file(path)).flatten()
    }

    /// Opens the source in the format asked, else the one it is in. A
    /// compressed image is refused: it is a stream, which only `clone`
    /// writes (see `flash`), and nothing can serve or mirror.
    pub fn open_source(
        &self,
        path: &Path,
        opts: OpenOptions,
    ) -> Result<Arc<dyn BlockDevice>, FormatError> {
        if let Some(compression) = self.source_compression(path) {
            return Err(FormatError::Compressed { path: path.to_owned(), compression });
        }
        Ok(privileged::open_as(path, opts, self.source_format.format())?)
    }

    /// Opens the target, or creates it (sparse, `len` bytes, in the format
    /// asked or named) when it does not exist; a created one comes with
    /// its [`Created`] guard, which removes it again if the job is refused.
    pub fn open_or_create_target(
        &self,
        path: &Path,
        len: u64,
        opts: OpenOptions,
    ) -> Result<(Arc<dyn BlockDevice>, Created), FormatError> {
        let asked = self.target_format.format();
        if target::exists(path) {
            if let Some(backing) = &self.target_backing {
                return Err(FormatError::BackingOnExisting {
                    path: path.to_owned(),
                    backing: backing.clone(),
                });
            }
            return Ok((privileged::open_as(path, opts, asked)?, Created::existing()));
        }
        let format = match (asked, &self.target_backing) {
            (Some(ImageFormat::Raw), Some(_)) => return Err(FormatError::RawWithBacking),
            (_, Some(_)) => ImageFormat::Qcow2,
            (Some(f), None) => f,
            (None, None) => ImageFormat::of_new_name(path),
        };
        let target: Arc<dyn BlockDevice> = match format {
            ImageFormat::Qcow2 => {
                Arc::new(Qcow2Device::create(path, len, self.target_backing.as_deref())?)
            }
            ImageFormat::Raw => Arc::new(opts.create(path, len)?),
        };
        Ok((target, Created::new(path)))
    }
}

/// Why a source or target could not be opened as asked.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "{} is a {compression}-compressed image: a stream that cannot be read at random; \
         `livemirror clone` writes it onto a target (or decompress it first)",
        path.display()
    )]
    Compressed { path: PathBuf, compression: Compression },
    #[error("{} exists; --target-backing {} makes a new image only", path.display(), backing.display())]
    BackingOnExisting { path: PathBuf, backing: PathBuf },
    #[error("--target-backing makes a qcow2 overlay, not a raw image")]
    RawWithBacking,
    #[error(transparent)]
    Open(#[from] privileged::OpenError),
    #[error(transparent)]
    Create(#[from] livemirror_core::Error),
}

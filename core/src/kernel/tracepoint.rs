//! Where `block:block_rq_complete`'s record keeps the fields the BPF program
//! reads, from the tracepoint's `format` file: the layout moves between
//! kernel versions (6.x added `ioprio` before `rwbs` and widened `rwbs`), so
//! the program takes the offsets as constants at load time instead of
//! compiling one layout in.

use std::io;
use std::path::{Path, PathBuf};

use super::TrackError;

/// Bytes of the record the BPF program copies and can index
/// (`RECORD_WORDS * 8` in track.bpf.c).
pub const RECORD_PREFIX: u32 = 48;

/// Byte offsets of the fields in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub dev: u32,
    pub sector: u32,
    pub nr_sector: u32,
    pub rwbs: u32,
}

/// The tracefs directory, mounting tracefs there first if it is absent.
pub fn tracefs() -> Result<PathBuf, TrackError> {
    let dir = Path::new("/sys/kernel/tracing");
    if dir.join("events").is_dir() {
        return Ok(dir.to_path_buf());
    }
    let legacy = Path::new("/sys/kernel/debug/tracing");
    if legacy.join("events").is_dir() {
        return Ok(legacy.to_path_buf());
    }
    // SAFETY: NUL-terminated literals; mount(2) copies them.
    let r = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.kind() == io::ErrorKind::PermissionDenied {
            TrackError::NotPrivileged(e)
        } else {
            TrackError::NoTracefs(e)
        });
    }
    Ok(dir.to_path_buf())
}

/// Reads the layout of `block:block_rq_complete` from tracefs.
pub fn block_rq_complete(tracefs: &Path) -> Result<Layout, TrackError> {
    let path = tracefs.join("events/block/block_rq_complete/format");
    let text = std::fs::read_to_string(&path).map_err(|source| {
        // tracefs is root's: reading it is the first thing that needs root.
        if source.kind() == io::ErrorKind::PermissionDenied {
            TrackError::NotPrivileged(source)
        } else {
            TrackError::TracepointMissing { path: path.clone(), source }
        }
    })?;
    parse(&text)
}

/// Parses a `format` file: lines like
/// `field:sector_t sector;<TAB>offset:16;<TAB>size:8;<TAB>signed:0;`.
pub fn parse(format: &str) -> Result<Layout, TrackError> {
    // `reads`: how many bytes from the offset the program reads.
    let field =
        |name: &str, size_ok: &dyn Fn(u32) -> bool, reads: u32| -> Result<u32, TrackError> {
            let bad = |why: String| TrackError::TracepointLayout(format!("field {name}: {why}"));
            let line = format
                .lines()
                .find(|l| {
                    l.trim_start()
                        .strip_prefix("field:")
                        .and_then(|d| d.split(';').next())
                        .is_some_and(|decl| {
                            let last = decl.rsplit(' ').next().unwrap_or("");
                            last == name || last.split('[').next() == Some(name)
                        })
                })
                .ok_or_else(|| bad("missing".into()))?;
            let value = |key: &str| -> Result<u32, TrackError> {
                line.split(';')
                    .find_map(|part| part.trim().strip_prefix(key))
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad(format!("no {key}")))
            };
            let (offset, size) = (value("offset:")?, value("size:")?);
            if !size_ok(size) {
                return Err(bad(format!("unexpected size {size}")));
            }
            // The program indexes its copy of the record by offset / size:
            // natural alignment, as the kernel lays fields out.
            // The program cannot read the first word (the common header).
            if offset % reads != 0 || offset < 8 || offset + reads > RECORD_PREFIX {
                return Err(bad(format!(
                    "offset {offset} is unaligned or outside bytes 8..{RECORD_PREFIX}"
                )));
            }
            Ok(offset)
        };
    Ok(Layout {
        dev: field("dev", &|s| s == 4, 4)?,
        sector: field("sector", &|s| s == 8, 8)?,
        nr_sector: field("nr_sector", &|s| s == 4, 4)?,
        // The program reads the first two characters.
        rwbs: field("rwbs", &|s| s >= 2, 2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The format file of kernel 6.18.
    const FORMAT_6_18: &str = "name: block_rq_complete
ID: 2107
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;
\tfield:int error;\toffset:28;\tsize:4;\tsigned:1;
\tfield:unsigned short ioprio;\toffset:32;\tsize:2;\tsigned:0;
\tfield:char rwbs[10];\toffset:34;\tsize:10;\tsigned:0;
\tfield:__data_loc char[] cmd;\toffset:44;\tsize:4;\tsigned:0;
";

    #[test]
    fn reads_the_6_18_layout() {
        let l = parse(FORMAT_6_18).unwrap();
        assert_eq!(l, Layout { dev: 8, sector: 16, nr_sector: 24, rwbs: 34 });
    }

    #[test]
    fn reads_the_layout_before_ioprio() {
        // Kernels before 6.9: rwbs[8] right after error.
        let old = FORMAT_6_18
            .replace("\tfield:unsigned short ioprio;\toffset:32;\tsize:2;\tsigned:0;\n", "")
            .replace("char rwbs[10];\toffset:34;\tsize:10;", "char rwbs[8];\toffset:32;\tsize:8;");
        assert_eq!(parse(&old).unwrap().rwbs, 32);
    }

    #[test]
    fn refuses_missing_or_odd_fields() {
        let no_sector = FORMAT_6_18.replace("sector_t sector;", "sector_t where;");
        assert!(
            matches!(parse(&no_sector), Err(TrackError::TracepointLayout(m)) if m.contains("sector"))
        );
        let wide_dev =
            FORMAT_6_18.replace("dev_t dev;\toffset:8;\tsize:4;", "dev_t dev;\toffset:8;\tsize:8;");
        assert!(parse(&wide_dev).is_err());
        let far = FORMAT_6_18.replace("offset:34;\tsize:10;", "offset:48;\tsize:10;");
        assert!(parse(&far).is_err());
    }
}

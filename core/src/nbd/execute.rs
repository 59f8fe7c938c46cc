//! Carrying out one checked request against the export's device.
//!
//! Runs on a blocking thread: the device is synchronous, and a live source
//! in write-blocking mode or in the middle of a Complete may hold a write
//! for as long as the mirror needs.

use std::io;

use super::errno::Errno;
use super::reply::Reply;
use super::request::{Command, Request};
use crate::device::{self, Allocation, BlockDevice};
use crate::nbd_proto::{BASE_ALLOCATION_ID, STATE_HOLE, STATE_ZERO};

/// Most extents returned for one BLOCK_STATUS; the client asks again from
/// where the answer stops.
const MAX_EXTENTS: usize = 1024;

/// Executes `req` (with `payload` for a WRITE) and builds its reply.
pub(super) fn execute(
    dev: &dyn BlockDevice,
    req: &Request,
    payload: Vec<u8>,
    structured: bool,
) -> Reply {
    let (offset, len) = (req.offset, u64::from(req.length));
    let done = |r: io::Result<()>| r.map(|()| Reply::ok(req.handle, structured));
    let result = match req.command {
        Command::Read => {
            let mut buf = vec![0; req.length as usize];
            dev.read_at(&mut buf, offset).map(|()| Reply::read(req.handle, structured, offset, buf))
        }
        Command::Write if req.fua => done(dev.write_at_fua(&payload, offset)),
        Command::Write => done(dev.write_at(&payload, offset)),
        Command::Flush => done(dev.flush()),
        Command::Trim => done(dev.discard(offset, len)),
        Command::WriteZeroes { may_unmap } => done(dev.write_zeroes(offset, len, may_unmap)),
        Command::BlockStatus { req_one } => extents(dev, offset, len, req_one)
            .map(|e| Reply::block_status(req.handle, BASE_ALLOCATION_ID, &e)),
        // The connection ends on a disconnect and never executes it.
        Command::Disconnect => Ok(Reply::ok(req.handle, structured)),
    };
    // A FUA write was made durable by itself; other changes are flushed.
    let mutates = matches!(req.command, Command::Trim | Command::WriteZeroes { .. });
    let result = match result {
        Ok(reply) if req.fua && mutates => dev.flush().map(|()| reply),
        other => other,
    };
    result.unwrap_or_else(|e| {
        let errno = Errno::from_io(&e);
        // The client is told; the log keeps what the device said.
        tracing::warn!(
            command = ?req.command, offset = req.offset, length = req.length, %errno, error = %e,
            "request failed"
        );
        Reply::error(req.handle, structured, errno, &e.to_string())
    })
}

/// `base:allocation` extents for `offset..offset + len`, as (length, flags),
/// neighbours with the same flags merged. `len` fits in a u32 (it came from
/// the request), so every extent does too.
fn extents(
    dev: &dyn BlockDevice,
    offset: u64,
    len: u64,
    req_one: bool,
) -> io::Result<Vec<(u32, u32)>> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for run in device::extents(dev, offset..offset + len) {
        if out.len() >= MAX_EXTENTS {
            break;
        }
        let run = run?;
        let flags = match run.status {
            Allocation::Data => 0,
            Allocation::Zero => STATE_ZERO,
            Allocation::Hole => STATE_HOLE | STATE_ZERO,
        };
        match out.last_mut() {
            Some((n, f)) if *f == flags => *n += run.len as u32,
            _ => out.push((run.len as u32, flags)),
        }
        if req_one {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemoryDevice;

    #[test]
    fn extents_merge_runs_and_stop_at_the_request() {
        let dev = MemoryDevice::new(64 << 10);
        dev.write_at(&[1; 8192], 8192).unwrap();
        dev.write_at(&[1; 4096], 16384).unwrap();
        let e = extents(&dev, 0, 32768, false).unwrap();
        let hole = STATE_HOLE | STATE_ZERO;
        assert_eq!(e, vec![(8192, hole), (12288, 0), (12288, hole)]);
        assert_eq!(extents(&dev, 4096, 8192, true).unwrap(), vec![(4096, hole)]);
    }

    #[test]
    fn fua_flushes_and_errors_become_error_replies() {
        let dev = MemoryDevice::new(4096);
        let req = Request { handle: 1, command: Command::Write, offset: 0, length: 4, fua: true };
        assert_eq!(execute(&dev, &req, vec![9; 4], false), Reply::ok(1, false));
        assert_eq!(dev.contents()[..4], [9; 4]);
        // A device refusing the range (a pivot to a smaller device cannot
        // happen, but a backend may still say no) answers EINVAL.
        let past = Request { offset: 4094, ..req };
        let r = execute(&dev, &past, vec![9; 4], false);
        assert_eq!(r, Reply::error(1, false, Errno::EINVAL, ""));
    }
}

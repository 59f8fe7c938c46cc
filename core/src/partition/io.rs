//! `Read + Write + Seek` over a [`BlockDevice`], which is what the table
//! crates (`gptman`, `mbrman`) read and write through.

use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::device::BlockDevice;

/// A cursor on a device: positional I/O made sequential.
pub(super) struct DeviceIo<'a> {
    dev: &'a dyn BlockDevice,
    pos: u64,
}

impl<'a> DeviceIo<'a> {
    pub(super) fn new(dev: &'a dyn BlockDevice) -> Self {
        DeviceIo { dev, pos: 0 }
    }
}

impl Read for DeviceIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.dev.len().saturating_sub(self.pos)) as usize;
        self.dev.read_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for DeviceIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.dev.write_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.dev.flush()
    }
}

impl Seek for DeviceIo<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.dev.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the device")
        })?;
        Ok(self.pos)
    }
}

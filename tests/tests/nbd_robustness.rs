//! The server against clients that misbehave, driven byte by byte: each
//! case gets the protocol's error or a closed connection, the server keeps
//! serving others, and the device changes only where a valid request said.

use std::sync::Arc;

use livemirror_core::device::{BlockDevice, MemoryDevice};
use livemirror_core::nbd_proto::*;
use livemirror_testkit::nbd_options::{go_data, meta_query};
use livemirror_testkit::raw::RawClient;
use livemirror_testkit::server::{Served, runtime};

const SIZE: u64 = 1 << 20;
const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;
const EPERM: u32 = 1;

/// A device filled with a known pattern, and the server exporting it.
struct Fixture {
    rt: tokio::runtime::Runtime,
    dev: Arc<MemoryDevice>,
    served: Served,
    original: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let original: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
        let dev = Arc::new(MemoryDevice::from_bytes(original.clone()));
        let rt = runtime();
        let served = Served::device(&rt, dev.clone());
        Fixture { rt, dev, served, original }
    }

    fn client(&self, structured: bool) -> RawClient {
        RawClient::go(&self.served.socket, structured).expect("handshake").0
    }

    /// The server still serves: a fresh client can read the right bytes.
    fn assert_serving(&self) {
        let mut c = self.client(false);
        assert_eq!(c.read(4096, 512).unwrap(), self.original[4096..4608]);
        c.disconnect().unwrap();
    }

    fn assert_unchanged(&self) {
        assert!(self.dev.contents() == self.original, "device bytes changed");
    }
}

#[test]
fn truncated_handshakes_close_and_change_nothing() {
    let f = Fixture::new();
    // Gone after the greeting, in the middle of the client flags.
    let mut c = RawClient::connect(&f.served.socket).unwrap();
    c.greeting().unwrap();
    c.send(&[0, 0]).unwrap();
    drop(c);
    // Gone in the middle of an option header, then of option data.
    let mut c = RawClient::start(&f.served.socket).unwrap();
    c.send(&OPTS_MAGIC.to_be_bytes()[..5]).unwrap();
    drop(c);
    let mut c = RawClient::start(&f.served.socket).unwrap();
    let mut opt = OPTS_MAGIC.to_be_bytes().to_vec();
    opt.extend_from_slice(&OPT_GO.to_be_bytes());
    opt.extend_from_slice(&100u32.to_be_bytes());
    opt.extend_from_slice(&[0; 10]);
    c.send(&opt).unwrap();
    c.half_close().unwrap();
    c.expect_closed().unwrap();
    f.assert_serving();
    f.assert_unchanged();
}

#[test]
fn bad_magic_and_unknown_client_flags_close_the_connection() {
    let f = Fixture::new();
    let mut c = RawClient::connect(&f.served.socket).unwrap();
    c.greeting().unwrap();
    c.send(&(1u32 << 7).to_be_bytes()).unwrap();
    c.expect_closed().unwrap();

    let mut c = RawClient::start(&f.served.socket).unwrap();
    c.send(b"NOTMAGIC\0\0\0\x07\0\0\0\0").unwrap();
    c.expect_closed().unwrap();

    // Bad request magic in transmission.
    let mut c = f.client(false);
    c.send(&[0xde; 28]).unwrap();
    c.expect_closed().unwrap();
    f.assert_serving();
    f.assert_unchanged();
}

#[test]
fn unknown_and_malformed_options_get_errors_and_haggling_goes_on() {
    let f = Fixture::new();
    let mut c = RawClient::start(&f.served.socket).unwrap();
    c.send_option(5, &[]).unwrap(); // STARTTLS: we have no TLS
    assert_eq!(c.option_reply().unwrap().kind, REP_ERR_UNSUP);
    c.send_option(0x1234, &[1, 2, 3]).unwrap();
    let r = c.option_reply().unwrap();
    assert_eq!((r.option, r.kind), (0x1234, REP_ERR_UNSUP));
    c.send_option(OPT_LIST, &[0]).unwrap();
    assert_eq!(c.option_reply().unwrap().kind, REP_ERR_INVALID);
    c.send_option(OPT_GO, &[0, 0, 0, 9, b'x']).unwrap();
    assert_eq!(c.option_reply().unwrap().kind, REP_ERR_INVALID);
    // Meta contexts before structured replies are refused.
    c.send_option(OPT_SET_META_CONTEXT, &meta_query("", &[BASE_ALLOCATION])).unwrap();
    assert_eq!(c.option_reply().unwrap().kind, REP_ERR_INVALID);
    c.send_option(OPT_INFO, &go_data("nope", &[])).unwrap();
    assert_eq!(c.option_reply().unwrap().kind, REP_ERR_UNKNOWN);
    c.send_option(OPT_LIST, &[]).unwrap();
    let list = c.option_replies().unwrap();
    assert_eq!(list.iter().map(|r| r.kind).collect::<Vec<_>>(), [REP_SERVER, REP_ACK]);
    c.send_option(OPT_INFO, &go_data("", &[INFO_NAME, INFO_BLOCK_SIZE])).unwrap();
    let info = c.option_replies().unwrap();
    assert_eq!(info.last().unwrap().kind, REP_ACK);
    let block = info
        .iter()
        .find(|r| r.data[0..2] == INFO_BLOCK_SIZE.to_be_bytes())
        .expect("block size info");
    assert_eq!(block.data[10..14], MAX_PAYLOAD.to_be_bytes());
    c.send_option(OPT_ABORT, &[]).unwrap();
    assert_eq!(c.option_reply().unwrap().kind, REP_ACK);
    c.expect_closed().unwrap();
}

#[test]
fn export_name_enters_transmission_or_hangs_up() {
    let f = Fixture::new();
    let mut c = RawClient::connect(&f.served.socket).unwrap();
    c.greeting().unwrap();
    c.send(&FLAG_C_FIXED_NEWSTYLE.to_be_bytes()).unwrap();
    c.send_option(OPT_EXPORT_NAME, b"").unwrap();
    let info = c.recv(8 + 2 + 124).unwrap();
    assert_eq!(info[0..8], SIZE.to_be_bytes());
    let flags = u16::from_be_bytes([info[8], info[9]]);
    assert_eq!(flags & FLAG_HAS_FLAGS, FLAG_HAS_FLAGS);
    assert!(info[10..].iter().all(|&b| b == 0));
    assert_eq!(c.read(0, 16).unwrap(), f.original[..16]);

    let mut c = RawClient::start(&f.served.socket).unwrap();
    c.send_option(OPT_EXPORT_NAME, b"no-such-export").unwrap();
    c.expect_closed().unwrap();
}

#[test]
fn unknown_commands_and_flags_are_einval_and_the_connection_lives() {
    let f = Fixture::new();
    let mut c = f.client(false);
    c.send_request(0, 42, 7, 0, 512, &[]).unwrap();
    assert_eq!(c.simple_reply(0).unwrap().0, EINVAL);
    // A WRITE with a flag it must not carry: refused, payload skipped.
    c.send_request(CMD_FLAG_REQ_ONE, CMD_WRITE, 8, 0, 4, &[9; 4]).unwrap();
    assert_eq!(c.simple_reply(0).unwrap(), (EINVAL, 8, vec![]));
    // BLOCK_STATUS without a negotiated context.
    c.send_request(0, CMD_BLOCK_STATUS, 9, 0, 512, &[]).unwrap();
    assert_eq!(c.simple_reply(0).unwrap().0, EINVAL);
    assert_eq!(c.read(0, 512).unwrap(), f.original[..512]);
    c.disconnect().unwrap();
    f.assert_unchanged();
}

#[test]
fn requests_past_the_end_fail_without_touching_the_device() {
    let f = Fixture::new();
    let mut c = f.client(false);
    c.send_request(0, CMD_READ, 1, SIZE - 256, 512, &[]).unwrap();
    assert_eq!(c.simple_reply(512).unwrap().0, EINVAL);
    assert_eq!(c.write(SIZE - 256, &[0xee; 512]).unwrap(), ENOSPC);
    c.send_request(0, CMD_WRITE_ZEROES, 2, SIZE, 1, &[]).unwrap();
    assert_eq!(c.simple_reply(0).unwrap().0, ENOSPC);
    c.send_request(0, CMD_TRIM, 3, u64::MAX - 10, 512, &[]).unwrap();
    assert_eq!(c.simple_reply(0).unwrap().0, EINVAL);
    // The refused write's payload was skipped, not taken for a request.
    assert_eq!(c.read(SIZE - 512, 512).unwrap(), f.original[SIZE as usize - 512..]);
    c.disconnect().unwrap();
    f.assert_unchanged();
}

#[test]
fn requests_over_32_mib_are_refused_and_a_huge_write_closes() {
    let f = Fixture::new();
    let mut c = f.client(false);
    let big = 33 << 20;
    c.send_request(0, CMD_READ, 1, 0, big, &[]).unwrap();
    assert_eq!(c.simple_reply(0).unwrap().0, EINVAL);
    // A 33 MiB write: refused, and the connection closed rather than
    // reading 33 MiB of payload.
    c.send_request(0, CMD_WRITE, 2, 0, big, &[0xee; 4096]).unwrap();
    assert_eq!(c.simple_reply(0).unwrap().0, EINVAL);
    c.expect_closed().unwrap();
    f.assert_serving();
    f.assert_unchanged();
}

#[test]
fn a_client_vanishing_mid_write_writes_nothing() {
    let f = Fixture::new();
    let mut c = f.client(false);
    c.send_request(0, CMD_WRITE, 1, 8192, 65536, &[0xee; 1000]).unwrap();
    c.half_close().unwrap();
    // The server gives up on the request and closes; only then look.
    c.expect_closed().unwrap();
    f.assert_unchanged();
    f.assert_serving();
}

#[test]
fn read_only_exports_refuse_writes_with_eperm() {
    let original = vec![7u8; SIZE as usize];
    let dev = Arc::new(MemoryDevice::from_bytes(original.clone()));
    let rt = runtime();
    let served = Served::export(
        &rt,
        livemirror_core::nbd::Export {
            read_only: true,
            ..livemirror_core::nbd::Export::new(dev.clone())
        },
    );
    let (mut c, info) = RawClient::go(&served.socket, false).unwrap();
    assert_eq!(info.flags & FLAG_READ_ONLY, FLAG_READ_ONLY);
    assert_eq!(info.flags & FLAG_SEND_TRIM, 0);
    assert_eq!(c.write(0, &[1; 512]).unwrap(), EPERM);
    c.send_request(0, CMD_TRIM, 1, 0, 512, &[]).unwrap();
    assert_eq!(c.simple_reply(0).unwrap().0, EPERM);
    c.disconnect().unwrap();
    assert!(dev.contents() == original);
    served.shutdown(&rt);
}

#[test]
fn structured_replies_carry_reads_errors_and_block_status() {
    let dev = Arc::new(MemoryDevice::new(SIZE));
    dev.write_at(&[5; 8192], 65536).unwrap();
    let rt = runtime();
    let served = Served::device(&rt, dev.clone());
    let (mut c, _) = RawClient::go(&served.socket, true).unwrap();

    c.send_request(0, CMD_READ, 11, 65536, 16, &[]).unwrap();
    let chunk = c.chunk().unwrap();
    assert_eq!((chunk.kind, chunk.handle), (REPLY_TYPE_OFFSET_DATA, 11));
    assert_eq!(chunk.flags & REPLY_FLAG_DONE, REPLY_FLAG_DONE);
    assert_eq!(chunk.payload[..8], 65536u64.to_be_bytes());
    assert_eq!(chunk.payload[8..], [5; 16]);

    c.send_request(0, CMD_READ, 12, SIZE, 16, &[]).unwrap();
    let chunk = c.chunk().unwrap();
    assert_eq!(chunk.kind, REPLY_TYPE_ERROR);
    assert_eq!(chunk.payload[..4], EINVAL.to_be_bytes());

    c.send_request(0, CMD_BLOCK_STATUS, 13, 0, 131072, &[]).unwrap();
    let chunk = c.chunk().unwrap();
    assert_eq!(chunk.kind, REPLY_TYPE_BLOCK_STATUS);
    let words: Vec<u32> =
        chunk.payload.chunks(4).map(|w| u32::from_be_bytes(w.try_into().unwrap())).collect();
    let hole = STATE_HOLE | STATE_ZERO;
    assert_eq!(words, [BASE_ALLOCATION_ID, 65536, hole, 8192, 0, 57344, hole]);
    c.disconnect().unwrap();
}

#[test]
fn many_clients_at_once_each_get_their_own_answers() {
    let f = Fixture::new();
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let socket = f.served.socket.clone();
            std::thread::spawn(move || {
                let (mut c, _) = RawClient::go(&socket, false).unwrap();
                let at = i * 65536;
                for round in 0..20u8 {
                    let data = vec![i as u8 ^ round; 4096];
                    assert_eq!(c.write(at, &data).unwrap(), 0);
                    assert_eq!(c.read(at, 4096).unwrap(), data);
                }
                c.disconnect().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let now = f.dev.contents();
    for i in 0..8usize {
        let at = i * 65536;
        assert_eq!(now[at..at + 4096], vec![i as u8 ^ 19; 4096][..]);
        // Outside what each client wrote, nothing changed.
        assert_eq!(now[at + 4096..at + 65536], f.original[at + 4096..at + 65536]);
    }
}

#[test]
fn shutdown_closes_idle_clients_and_returns() {
    let f = Fixture::new();
    let mut c = f.client(false);
    let mut in_handshake = RawClient::start(&f.served.socket).unwrap();
    let Fixture { rt, served, .. } = f;
    served.shutdown(&rt);
    c.expect_closed().unwrap();
    in_handshake.expect_closed().unwrap();
}

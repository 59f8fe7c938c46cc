//! Fuzzes the NBD server's decoders: handshake options and transmission
//! requests, with any session. They must never panic, and what they accept
//! must be safe to execute (in range, within the payload limit).
#![no_main]

use libfuzzer_sys::fuzz_target;
use livemirror_core::nbd::MAX_PAYLOAD;
use livemirror_core::nbd::option;
use livemirror_core::nbd::request::{self, Command, HEADER_LEN, Session, Then};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        // An option: 4 bytes of code, the rest is its data.
        if rest.len() >= 4 {
            let code = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let _ = option::parse(code, &rest[4..]);
        }
        return;
    }
    // A request header, then 8 bytes of export size; the selector's other
    // bits pick the session.
    if rest.len() < HEADER_LEN + 8 {
        return;
    }
    let header: &[u8; HEADER_LEN] = rest[..HEADER_LEN].try_into().unwrap();
    let size = u64::from_be_bytes(rest[HEADER_LEN..HEADER_LEN + 8].try_into().unwrap());
    let session = Session {
        size,
        read_only: selector & 2 != 0,
        structured: selector & 4 != 0,
        block_status: selector & 8 != 0,
    };
    let Some(h) = request::parse_header(header) else {
        return;
    };
    match request::check(&h, &session) {
        Ok(req) => {
            let end = req.offset.checked_add(u64::from(req.length));
            match req.command {
                Command::Disconnect | Command::Flush => {}
                _ => assert!(end.is_some_and(|e| e <= size), "accepted past the end"),
            }
            if matches!(req.command, Command::Read | Command::Write | Command::WriteZeroes { .. }) {
                assert!(req.length <= MAX_PAYLOAD);
            }
            if session.read_only {
                assert!(!matches!(
                    req.command,
                    Command::Write | Command::Trim | Command::WriteZeroes { .. }
                ));
            }
        }
        Err(rej) => {
            assert_eq!(rej.handle, h.handle);
            if let Then::Discard(n) = rej.then {
                assert_eq!(n, h.length);
                assert!(n <= MAX_PAYLOAD);
            }
        }
    }
});

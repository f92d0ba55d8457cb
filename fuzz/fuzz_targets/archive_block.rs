//! The archive block reader: any object read from the bucket is opened or
//! refused; and blocks sealed from arbitrary entries open to the same
//! entries.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use otelraft::archive::block::{open, read_header, seal, RawEntry};

fuzz_target!(|data: &[u8]| {
    let _ = read_header(data);
    let _ = open(data);
    // The input as entries: a length byte, then that many bytes, repeated.
    let mut entries = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize).min(tail.len());
        entries.push(RawEntry {
            index: 100 + entries.len() as u64,
            bytes: Bytes::copy_from_slice(&tail[..len]),
        });
        rest = &tail[len..];
    }
    if let Ok(sealed) = seal(&entries) {
        let opened = open(&sealed.bytes).expect("a sealed block opens");
        assert_eq!(opened.entries.len(), entries.len());
    }
});

//! The log entry codec that AppendEntries and the store share: any bytes
//! decode or are refused, and what decodes encodes back to the same entry.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use otelraft::raft::codec;

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = codec::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let encoded = codec::encode(&entry).expect("a decoded entry encodes");
    let again = codec::decode(Bytes::from(encoded)).expect("an encoded entry decodes");
    assert_eq!(format!("{entry:?}"), format!("{again:?}"));
});

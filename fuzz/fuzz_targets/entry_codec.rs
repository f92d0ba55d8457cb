//! The log entry codec that AppendEntries and the store share: any bytes
//! decode or are refused, and an encoded entry decodes to itself and
//! encodes to the same bytes. Arbitrary bytes need not be canonical (an
//! explicit -0.0 double, a repeated field, an unknown field), so the
//! round trip is checked from the first encoding on.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use otelraft::raft::codec;

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = codec::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let encoded = codec::encode(&entry).expect("a decoded entry encodes");
    let again = codec::decode(Bytes::from(encoded.clone())).expect("an encoded entry decodes");
    let reencoded = codec::encode(&again).expect("a decoded entry encodes");
    assert_eq!(encoded, reencoded);
    let third = codec::decode(Bytes::from(reencoded)).expect("an encoded entry decodes");
    assert_eq!(format!("{again:?}"), format!("{third:?}"));
});

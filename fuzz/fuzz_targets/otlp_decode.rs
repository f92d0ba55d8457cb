//! The OTLP receivers' decode path: the first byte picks the signal, the
//! encoding and the content coding; the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otelraft::pb::log::Signal;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let signal = match choice % 3 {
        0 => Signal::Logs,
        1 => Signal::Metrics,
        _ => Signal::Traces,
    };
    otelraft::ingest::fuzzing::decode(signal, choice & 0x10 != 0, choice & 0x20 != 0, body);
});

//! TEMPORARY stub until the helper branch lands.
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use crate::pb::loki::PushRequest;
pub struct PushBuilder;
impl PushBuilder {
    pub fn new() -> Self { PushBuilder }
    pub fn add_entry(&mut self, _i: u64, _p: u64, _r: &ExportLogsServiceRequest) -> usize { 0 }
    pub fn is_empty(&self) -> bool { true }
    pub fn finish(self) -> PushRequest { PushRequest::default() }
}
pub fn encode_push(_r: &PushRequest) -> Result<Vec<u8>, snap::Error> { Ok(Vec::new()) }

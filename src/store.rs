//! (being written)
/// Placeholder until the storage module lands.
pub struct StateMachineStore;

//! Unit tests of the storage module.

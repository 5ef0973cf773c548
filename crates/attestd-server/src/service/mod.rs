//! The gRPC services. Each handler reads like a sentence: authorize (done by
//! the edge layer), decode, decide (core), commit (store), answer.

pub mod admin;
pub mod audit;
pub mod backup;
pub mod baselines;
pub mod device;
pub mod factory;
pub mod fleet;
pub mod release;

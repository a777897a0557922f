//! The room server: rooms, tokens and roles, and the routing of media between participants.

pub mod forward;
pub mod speaker;
pub mod token;
mod peer;

//! The participant grid: where everyone goes on a screen ([`layout`]). Pure, so every face —
//! Rust, C, browser — lays out the same room the same way.

pub mod layout;

//! The participant grid: where everyone goes on a screen ([`layout`]) and what each
//! subscription then needs ([`plan`]). Pure, so every face —
//! Rust, C, browser — lays out the same room the same way.

#[cfg(feature = "codec")]
pub mod compose;
#[cfg(feature = "codec")]
mod font;
pub mod layout;
pub mod plan;

//! Was OpenH264 built with its assembly kernels?
//!
//! Without nasm at build time openh264-sys2 silently falls back to C and encodes about 2.5×
//! slower. The assembly objects bring their own symbols (for example
//! `WelsGetNoneZeroCount_sse2`); their names in this executable's symbol table tell.

/// `Some(true)` when assembly kernels are linked in, `Some(false)` when they are not, `None`
/// when the executable cannot be read.
pub fn openh264_has_asm() -> Option<bool> {
    let exe = std::fs::read(std::env::current_exe().ok()?).ok()?;
    let needles: [&[u8]; 3] = [
        b"WelsGetNoneZeroCount_sse2",
        b"WelsSampleSad16x16_sse2",
        b"McCopyWidthEq16_sse2",
    ];
    Some(
        needles
            .iter()
            .any(|n| exe.windows(n.len()).any(|w| w == *n)),
    )
}

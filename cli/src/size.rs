//! `WxH` arguments.

/// Parses `640x360` into (640, 360).
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, like 640x360, got {s:?}"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("bad number {v:?} in size {s:?}"))
    };
    let (w, h) = (parse(w)?, parse(h)?);
    madang::media::check_dimensions(w, h).map_err(|e| e.to_string())?;
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("640x360"), Ok((640, 360)));
        assert!(parse_size("640").is_err());
        assert!(parse_size("641x360").is_err());
        assert!(parse_size("ax360").is_err());
    }
}

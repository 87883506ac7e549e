//! Sizes in bytes as people write them: `1048576`, `512m`, `4g`, `64k`,
//! `2GiB` (powers of 1024; a trailing `b`, `ib` or `B` is allowed).

use std::fmt;
use std::str::FromStr;

/// A number of bytes, read from and shown in the short form above.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

/// Why a size could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a size: write a number of bytes, optionally with k, m or g (powers of 1024), as in 512m or 2g")]
pub struct ByteSizeError(String);

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(text: &str) -> Result<ByteSize, ByteSizeError> {
        let bad = || ByteSizeError(text.to_owned());
        let s = text.trim().to_ascii_lowercase();
        let s = s.strip_suffix("ib").or_else(|| s.strip_suffix('b')).unwrap_or(&s);
        let (num, shift) = match s.as_bytes().last().ok_or_else(bad)? {
            b'k' => (&s[..s.len() - 1], 10),
            b'm' => (&s[..s.len() - 1], 20),
            b'g' => (&s[..s.len() - 1], 30),
            b't' => (&s[..s.len() - 1], 40),
            _ => (s, 0),
        };
        let n: u64 = num.trim().parse().map_err(|_| bad())?;
        n.checked_mul(1 << shift).map(ByteSize).ok_or_else(bad)
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that shows the size exactly: `2g`, `1536m`, `100`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, shift) in [("t", 40), ("g", 30), ("m", 20), ("k", 10)] {
            if n != 0 && n % (1 << shift) == 0 {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_and_show() {
        for (text, bytes, shown) in [
            ("0", 0, "0"),
            ("100", 100, "100"),
            ("64k", 64 << 10, "64k"),
            ("512m", 512 << 20, "512m"),
            ("512MB", 512 << 20, "512m"),
            ("2GiB", 2 << 30, "2g"),
            (" 4g ", 4 << 30, "4g"),
            ("1536m", 1536 << 20, "1536m"),
        ] {
            let size: ByteSize = text.parse().unwrap();
            assert_eq!(size, ByteSize(bytes), "{text}");
            assert_eq!(size.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn bad_sizes_say_what_is_accepted() {
        for text in ["", "g", "1.5g", "-1", "12x", "99999999999999999999", "20000000000t"] {
            let err = text.parse::<ByteSize>().unwrap_err();
            assert!(err.to_string().contains(&format!("`{text}` is not a size")), "{err}");
        }
    }
}

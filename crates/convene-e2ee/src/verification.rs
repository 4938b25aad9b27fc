//! The verification code people compare to see that they share one group
//! (docs/e2ee-design.md §7): the first 48 bits of the epoch authenticator
//! (RFC 9420 §8.7), as 8 six-bit indexes into the Matrix SAS emoji list
//! (web/e2ee/sas-emoji.js) and as 15 digits in groups of 5. Computed as
//! web/e2ee/mls.js's verificationCode, so Rust and browser members show the
//! same code.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationCode {
    /// Indexes into the 64 SAS emoji, first shown first.
    pub emoji: [u8; 8],
    /// "ddddd ddddd ddddd".
    pub digits: String,
}

/// The code of an epoch authenticator; `None` if it is shorter than 6 bytes.
pub fn verification_code(authenticator: &[u8]) -> Option<VerificationCode> {
    let bits = authenticator
        .get(..6)?
        .iter()
        .fold(0u64, |n, b| n << 8 | u64::from(*b));
    let emoji = std::array::from_fn(|i| ((bits >> (6 * (7 - i))) & 63) as u8);
    let d = format!("{bits:015}");
    Some(VerificationCode {
        emoji,
        digits: format!("{} {} {}", &d[..5], &d[5..10], &d[10..]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases tests/e2e/e2ee-mls.test.mjs checks mls.js with.
    #[test]
    fn same_code_as_the_browser() {
        let c = verification_code(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 9, 9]).unwrap();
        assert_eq!(c.emoji, [63, 63, 63, 63, 63, 63, 63, 62]);
        assert_eq!(c.digits, "28147 49767 10654"); // 2^48 - 2
        assert_eq!(
            verification_code(&[0; 32]).unwrap().digits,
            "00000 00000 00000"
        );
        assert_eq!(
            verification_code(&[4, 16, 0x41, 0, 0, 0]).unwrap().emoji,
            [1, 1, 1, 1, 0, 0, 0, 0]
        );
        assert_eq!(verification_code(&[1, 2, 3, 4, 5]), None);
    }
}

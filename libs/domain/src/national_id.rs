//! The GB 11643-1999 check character of a PRC resident identity number: one
//! computation for the account service's parser and for every test or simulator that
//! needs a valid id.

/// Weights of the first 17 digits.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// The check character, indexed by the weighted sum mod 11.
const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];
/// Digits before the check character.
pub const BODY_DIGITS: usize = 17;

/// The check character of `body`, the first 17 characters of an id; `None` unless they
/// are exactly 17 ASCII digits.
pub fn check_character(body: &str) -> Option<char> {
    if body.len() != BODY_DIGITS || !body.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = body
        .bytes()
        .zip(WEIGHTS)
        .map(|(digit, weight)| u32::from(digit - b'0') * weight)
        .sum();
    Some(CHECK[(sum % 11) as usize])
}

/// `body` followed by its check character: a valid 18-character id when `body` is 17
/// digits whose positions 7–14 are a real birth date; `None` unless 17 ASCII digits.
pub fn with_check_character(body: &str) -> Option<String> {
    check_character(body).map(|check| format!("{body}{check}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ids_get_their_check_characters() {
        // The standard's worked example, and one whose check character is X.
        assert_eq!(check_character("11010519491231002"), Some('X'));
        assert_eq!(check_character("44052418800101001"), Some('4'));
        assert_eq!(
            with_check_character("11010519491231002").as_deref(),
            Some("11010519491231002X")
        );
    }

    #[test]
    fn anything_but_seventeen_ascii_digits_has_none() {
        for body in [
            "",
            "1101051949123100",
            "110105194912310021",
            "1101051949123100a",
            "11010519491231００",
            "١١٠١٠٥١٩٤٩١٢٣١٠٠٢",
        ] {
            assert_eq!(check_character(body), None, "{body:?}");
        }
    }
}

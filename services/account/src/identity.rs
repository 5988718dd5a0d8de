//! A customer's identity fields, parsed once at the edge (account.proto
//! `CreateCustomerRequest`): a value of these types is valid by construction. Each
//! knows its masked form (`Customer.*_masked`); none implements `Display`, so PII cannot
//! reach a log line by accident — `Debug` prints the masked form.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use microloan_domain::national_id;
use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// Longest legal name, in Unicode scalar values (account.proto).
pub const NAME_CHARS_MAX: usize = 64;
const NATIONAL_ID_CHARS: usize = 18;
const PHONE_COUNTRY_PREFIX: &str = "+86";
const PHONE_NATIONAL_DIGITS: usize = 11;

/// Why a field was refused; `field` is the request field path for the BadRequest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {description}")]
pub struct FieldError {
    pub field: &'static str,
    pub description: String,
}

fn refuse(field: &'static str, description: impl Into<String>) -> FieldError {
    FieldError {
        field,
        description: description.into(),
    }
}

/// A legal name: trimmed, 1-64 letters of any script, combining marks, single internal
/// spaces and `·` `-` `'` `.`.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        const FIELD: &str = "name";
        let trimmed = text.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err(refuse(FIELD, "is required"));
        }
        if chars > NAME_CHARS_MAX {
            return Err(refuse(
                FIELD,
                format!("must be at most {NAME_CHARS_MAX} characters (got {chars})"),
            ));
        }
        let mut previous_was_space = false;
        for (position, character) in trimmed.chars().enumerate() {
            let allowed = match character {
                ' ' => !previous_was_space,
                '\u{00B7}' | '-' | '\'' | '.' => true,
                other => matches!(
                    other.general_category_group(),
                    GeneralCategoryGroup::Letter | GeneralCategoryGroup::Mark
                ),
            };
            if !allowed {
                // The position, never the character: the name is PII.
                return Err(refuse(
                    FIELD,
                    format!(
                        "character {} is not allowed (letters, marks, single spaces and · - ' . only)",
                        position + 1
                    ),
                ));
            }
            previous_was_space = character == ' ';
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first character kept, every other replaced by `*` ("张**").
    pub fn masked(&self) -> String {
        let mut characters = self.0.chars();
        let first = characters.next().map(String::from).unwrap_or_default();
        first + &"*".repeat(characters.count())
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonName({})", self.masked())
    }
}

/// A PRC resident identity number (GB 11643): 17 digits, a check digit or `X`, with a
/// real birth date in positions 7-14.
#[derive(Clone, PartialEq, Eq)]
pub struct NationalId {
    text: String,
    birth_date: NaiveDate,
}

impl NationalId {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        const FIELD: &str = "national_id";
        let normalised = text.trim().to_ascii_uppercase();
        let characters: Vec<char> = normalised.chars().collect();
        if characters.len() != NATIONAL_ID_CHARS {
            return Err(refuse(FIELD, "must be 18 characters"));
        }
        let body: String = characters[..NATIONAL_ID_CHARS - 1].iter().collect();
        let expected = national_id::check_character(&body)
            .ok_or_else(|| refuse(FIELD, "the first 17 characters must be digits"))?;
        let check = characters[NATIONAL_ID_CHARS - 1];
        if !(check.is_ascii_digit() || check == 'X') {
            return Err(refuse(FIELD, "the last character must be a digit or X"));
        }
        if expected != check {
            return Err(refuse(FIELD, "the check digit does not match (GB 11643)"));
        }
        let birth_date = NaiveDate::parse_from_str(&normalised[6..14], "%Y%m%d")
            .map_err(|_| refuse(FIELD, "positions 7-14 are not a real birth date"))?;
        Ok(Self {
            text: normalised,
            birth_date,
        })
    }

    pub fn expose(&self) -> &str {
        &self.text
    }

    pub fn birth_date(&self) -> NaiveDate {
        self.birth_date
    }

    /// Full years of age on `date`; negative when born after it.
    pub fn age_on(&self, date: NaiveDate) -> i32 {
        let mut age = date.year() - self.birth_date.year();
        if (date.month(), date.day()) < (self.birth_date.month(), self.birth_date.day()) {
            age -= 1;
        }
        age
    }

    /// First 3 and last 4 characters kept ("110***********123X").
    pub fn masked(&self) -> String {
        format!("{}{}{}", &self.text[..3], "*".repeat(11), &self.text[14..])
    }
}

impl fmt::Debug for NationalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NationalId({})", self.masked())
    }
}

/// A mainland mobile number in E.164: "+86", then 11 digits starting 1[3-9].
#[derive(Clone, PartialEq, Eq)]
pub struct MobilePhone(String);

impl MobilePhone {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        const FIELD: &str = "phone";
        let national = text
            .trim()
            .strip_prefix(PHONE_COUNTRY_PREFIX)
            .ok_or_else(|| refuse(FIELD, "must start with +86 (E.164)"))?;
        let digits: Vec<u32> = national
            .chars()
            .map(|character| character.to_digit(10))
            .collect::<Option<_>>()
            .ok_or_else(|| refuse(FIELD, "must be +86 and digits only"))?;
        if digits.len() != PHONE_NATIONAL_DIGITS || digits[0] != 1 || !(3..=9).contains(&digits[1])
        {
            return Err(refuse(
                FIELD,
                "must be +86 and an 11-digit mainland mobile number starting 13-19",
            ));
        }
        Ok(Self(format!("{PHONE_COUNTRY_PREFIX}{national}")))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// "+86 138****5678".
    pub fn masked(&self) -> String {
        let national = &self.0[PHONE_COUNTRY_PREFIX.len()..];
        format!(
            "{PHONE_COUNTRY_PREFIX} {}****{}",
            &national[..3],
            &national[PHONE_NATIONAL_DIGITS - 4..]
        )
    }
}

impl fmt::Debug for MobilePhone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MobilePhone({})", self.masked())
    }
}

/// The locale of a customer's notices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Locale {
    #[default]
    ZhCn,
    En,
}

impl Locale {
    /// "zh-CN", "en", or empty for the default "zh-CN".
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        match text {
            "" | "zh-CN" => Ok(Self::ZhCn),
            "en" => Ok(Self::En),
            _ => Err(refuse("locale", "must be \"zh-CN\" or \"en\"")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZhCn => "zh-CN",
            Self::En => "en",
        }
    }
}

/// The eligible age band (DESIGN §4 product rule; default 18-60 inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgeBand {
    pub min_years: i32,
    pub max_years: i32,
}

impl AgeBand {
    pub const DEFAULT: Self = Self {
        min_years: 18,
        max_years: 60,
    };

    pub fn admits(self, national_id: &NationalId, today: NaiveDate) -> bool {
        (self.min_years..=self.max_years).contains(&national_id.age_on(today))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid id for a birth date.
    fn national_id_born(birth: &str) -> String {
        national_id::with_check_character(&format!("110105{birth}123")).expect("17 digits")
    }

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).expect("date")
    }

    #[test]
    fn names_of_any_script_parse_and_mask_by_character() {
        for (input, stored, masked) in [
            ("张三", "张三", "张*"),
            ("  王小明 ", "王小明", "王**"),
            ("Wang Xiaoming", "Wang Xiaoming", "W************"),
            ("买买提·艾力", "买买提·艾力", "买*****"),
            ("O'Neil-Smith Jr.", "O'Neil-Smith Jr.", "O***************"),
            ("José", "José", "J***"),
            ("e\u{301}", "e\u{301}", "e*"),
        ] {
            let name = PersonName::parse(input).unwrap_or_else(|err| panic!("{input}: {err}"));
            assert_eq!(name.expose(), stored);
            assert_eq!(name.masked(), masked, "{input}");
            assert_eq!(format!("{name:?}"), format!("PersonName({masked})"));
        }
        let longest = "名".repeat(NAME_CHARS_MAX);
        assert!(
            PersonName::parse(&longest).is_ok(),
            "64 characters, 192 bytes"
        );
    }

    #[test]
    fn bad_names_are_refused_on_the_name_field() {
        for input in [
            "",
            "   ",
            "张三3",
            "Wang  Xiaoming",
            "Wang\tXiaoming",
            "张三😀",
            "Bob\u{200B}",
            "a$b",
            "a\u{0}b",
            &"名".repeat(NAME_CHARS_MAX + 1),
        ] {
            let err = PersonName::parse(input).expect_err(input);
            assert_eq!(err.field, "name", "{input}");
            assert!(!err.description.contains(input.trim()) || input.trim().is_empty());
        }
    }

    #[test]
    fn national_ids_check_length_digits_checksum_and_birth_date() {
        let valid = national_id_born("19900307");
        let id = NationalId::parse(&valid).expect("valid");
        assert_eq!(id.birth_date(), date(1990, 3, 7));
        assert_eq!(id.masked(), format!("110***********{}", &valid[14..]));
        assert_eq!(id.masked().chars().count(), 18);
        // The published example id with an X check character; lowercase x normalised.
        let with_x = NationalId::parse("11010519491231002x").expect("valid with x");
        assert_eq!(with_x.expose(), "11010519491231002X");

        let mut wrong_check = valid.clone();
        let last = wrong_check.pop().expect("char");
        wrong_check.push(if last == '0' { '1' } else { '0' });
        for bad in [
            String::new(),
            valid[..17].to_owned(),
            format!("{valid}1"),
            wrong_check,
            "1101051990030712AX".to_owned(),
            national_id_born("19900230"),
            national_id_born("19901301"),
            "１１０１０５１９９０".to_owned(),
        ] {
            let err = NationalId::parse(&bad).expect_err(&bad);
            assert_eq!(err.field, "national_id", "{bad}");
        }
    }

    #[test]
    fn age_counts_full_years_and_the_band_is_inclusive() {
        let id = NationalId::parse(&national_id_born("20081128")).expect("valid");
        assert_eq!(id.age_on(date(2026, 11, 27)), 17);
        assert_eq!(id.age_on(date(2026, 11, 28)), 18);
        assert!(!AgeBand::DEFAULT.admits(&id, date(2026, 11, 27)));
        assert!(AgeBand::DEFAULT.admits(&id, date(2026, 11, 28)));
        let sixty = NationalId::parse(&national_id_born("19661128")).expect("valid");
        assert!(AgeBand::DEFAULT.admits(&sixty, date(2027, 11, 27)));
        assert!(!AgeBand::DEFAULT.admits(&sixty, date(2027, 11, 28)));
        let unborn = NationalId::parse(&national_id_born("20300101")).expect("valid");
        assert!(unborn.age_on(date(2026, 11, 28)) < 0);
    }

    #[test]
    fn phones_are_plus_86_mainland_mobiles_and_mask_with_a_space() {
        let phone = MobilePhone::parse("+8613812345678").expect("valid");
        assert_eq!(phone.masked(), "+86 138****5678");
        assert_eq!(format!("{phone:?}"), "MobilePhone(+86 138****5678)");
        for bad in [
            "",
            "13812345678",
            "+86 13812345678",
            "+861381234567",
            "+86138123456789",
            "+8612812345678",
            "+8623812345678",
            "+85213812345678",
            "+86１３812345678",
        ] {
            assert_eq!(MobilePhone::parse(bad).expect_err(bad).field, "phone");
        }
    }

    #[test]
    fn locales_default_to_zh_cn() {
        assert_eq!(Locale::parse(""), Ok(Locale::ZhCn));
        assert_eq!(Locale::parse("en"), Ok(Locale::En));
        assert_eq!(Locale::parse("zh-CN").map(Locale::as_str), Ok("zh-CN"));
        for bad in ["zh", "EN", "fr", "zh_CN"] {
            assert_eq!(Locale::parse(bad).expect_err(bad).field, "locale");
        }
    }
}

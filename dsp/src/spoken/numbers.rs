//! Token classification: which recognised words can carry part of an identifier.
//!
//! The recognizer writes numbers as digits ("4532", "3rd") most of the time, but not always
//! ("oh five", "double nine"), so both forms are recognised. Classification works on a
//! normalised copy of the token held in a fixed stack buffer (no allocation, nothing kept).

/// What a single recognised token is, as far as identifiers are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenClass {
    /// Holds no number, ordinal or month.
    Plain,
    /// Holds at least one ASCII digit ("4532", "3rd", "$100", "555-1234").
    Digits,
    /// A cardinal number word ("five", "sixty", "hundred", "twenty-six") or a repeat word
    /// ("double", "triple").
    NumberWord,
    /// "oh"/"o": a zero when reading digits, an interjection otherwise. Sensitive only next to
    /// other numbers or inside an ask context.
    WeakNumber,
    /// An ordinal word ("third", "twenty-first").
    Ordinal,
    /// "first"/"second": ordinals that are mostly ordinary words ("first of all", "one
    /// second"). Sensitive only next to other numbers or months, or inside an ask context.
    WeakOrdinal,
    /// A month name ("december").
    Month,
    /// "may"/"march": months that are mostly ordinary words. Sensitive only next to numbers.
    WeakMonth,
    /// A single letter ("B", "T,"), as in spelled member IDs. Sensitive next to numbers,
    /// before "as in", or inside an ask context.
    Letter,
}

impl TokenClass {
    /// True for every class that can carry part of an identifier (everything but `Plain`).
    pub fn is_numeric_like(self) -> bool {
        !matches!(self, TokenClass::Plain | TokenClass::Letter)
    }

    /// True for classes that are sensitive on their own, without neighbours or context.
    pub fn is_strong(self) -> bool {
        matches!(
            self,
            TokenClass::Digits | TokenClass::NumberWord | TokenClass::Ordinal | TokenClass::Month
        )
    }
}

const CARDINALS: &[&str] = &[
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "niner",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
    "thirty",
    "forty",
    "fourty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
    "hundred",
    "thousand",
    "million",
    "double",
    "triple",
    "nought",
    "nil",
];

const ORDINALS: &[&str] = &[
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "thirtieth",
];

const MONTHS: &[&str] = &[
    "january",
    "february",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
];

/// Longest token classified; longer ones are compared on their first `MAX_TOKEN` bytes.
const MAX_TOKEN: usize = 40;

/// A lowercased ASCII copy of `token` without surrounding punctuation, on the stack.
pub(crate) struct Norm {
    buf: [u8; MAX_TOKEN],
    len: usize,
}

impl Norm {
    /// Normalise: lowercase, keep letters, digits, inner hyphens and apostrophes.
    pub(crate) fn new(token: &str) -> Norm {
        let mut buf = [0u8; MAX_TOKEN];
        let mut len = 0;
        for b in token.bytes() {
            if len == MAX_TOKEN {
                break;
            }
            let c = b.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == b'-' || c == b'\'' {
                buf[len] = c;
                len += 1;
            }
        }
        // Trim hyphens/apostrophes at either end.
        let mut start = 0;
        while start < len && matches!(buf[start], b'-' | b'\'') {
            start += 1;
        }
        while len > start && matches!(buf[len - 1], b'-' | b'\'') {
            len -= 1;
        }
        if start > 0 {
            buf.copy_within(start..len, 0);
            len -= start;
        }
        Norm { buf, len }
    }

    /// The normalised text (ASCII, so always valid UTF-8).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// A number word for one digit ("zero" … "nine", "oh"); tens and teens stand for two.
pub(crate) fn is_digit_word(w: &str) -> bool {
    w == "oh" || w == "o" || CARDINALS[..10].contains(&w)
}

fn is_cardinal(w: &str) -> bool {
    CARDINALS.contains(&w)
}

fn is_ordinal(w: &str) -> bool {
    if ORDINALS.contains(&w) {
        return true;
    }
    // "twentieth", "thirtieth" listed; compound "twenty-first" handled by the caller.
    false
}

/// Classify one recognised token (as the recognizer wrote it, punctuation and case included).
pub fn classify(token: &str) -> TokenClass {
    if token.bytes().any(|b| b.is_ascii_digit()) {
        return TokenClass::Digits;
    }
    let norm = Norm::new(token);
    let w = norm.as_str();
    if w.is_empty() {
        return TokenClass::Plain;
    }
    if w.contains('-') {
        // "twenty-six", "thirty-first", "twenty-twenty": every part must be a number word.
        let mut ordinal = false;
        let mut all = true;
        for part in w.split('-') {
            if is_cardinal(part) {
                continue;
            }
            if is_ordinal(part) || part == "first" || part == "second" {
                ordinal = true;
                continue;
            }
            all = false;
            break;
        }
        if all {
            return if ordinal {
                TokenClass::Ordinal
            } else {
                TokenClass::NumberWord
            };
        }
        return TokenClass::Plain;
    }
    if is_cardinal(w) {
        return TokenClass::NumberWord;
    }
    if w == "oh" || w == "o" {
        return TokenClass::WeakNumber;
    }
    if is_ordinal(w) {
        return TokenClass::Ordinal;
    }
    if w == "first" || w == "second" {
        return TokenClass::WeakOrdinal;
    }
    if MONTHS.contains(&w) {
        return TokenClass::Month;
    }
    if w == "may" || w == "march" || w == "mar" {
        return TokenClass::WeakMonth;
    }
    if w.len() == 1 && w != "a" && w != "i" {
        return TokenClass::Letter;
    }
    TokenClass::Plain
}

/// A normalised token the recognizer writes for a digit it did not make out.
pub(crate) fn is_homophone(w: &str) -> bool {
    HOMOPHONES.contains(&w)
}

/// A normalised token that is a non-speech rendering ("beep", "ahhh", "aaaaaa").
pub(crate) fn is_non_speech_word(w: &str) -> bool {
    if NON_SPEECH_WORDS.contains(&w) {
        return true;
    }
    // Held vowels and hums: "aaaaaa", "ahhhh", "mmmm" (at most two distinct letters).
    let b = w.as_bytes();
    b.len() >= 3 && {
        let first = b[0];
        let other = b.iter().copied().find(|&c| c != first);
        b.iter()
            .all(|&c| c == first || Some(c) == other && matches!(c, b'h' | b'm'))
    }
}

/// Number of ASCII digits in `token`.
pub(crate) fn digit_count(token: &str) -> usize {
    token.bytes().filter(u8::is_ascii_digit).count()
}

/// Nouns that make a preceding single number harmless ("two times", "twenty minutes").
pub(crate) const UNIT_NOUNS: &[&str] = &[
    "time", "times", "dollar", "dollars", "buck", "bucks", "cent", "cents", "pound", "pounds",
    "euro", "euros", "minute", "minutes", "min", "mins", "hour", "hours", "second", "seconds",
    "sec", "secs", "day", "days", "week", "weeks", "month", "months", "year", "years", "moment",
    "percent", "item", "items", "order", "orders", "call", "calls", "people", "person", "box",
    "boxes", "thing", "things", "kid", "kids", "child", "children", "ticket", "tickets", "visit",
    "visits", "charge", "charges", "payment", "payments", "step", "steps", "way", "ways",
];

/// Words allowed between a single number and its unit noun ("five business days").
pub(crate) const UNIT_MODIFIERS: &[&str] = &[
    "business",
    "more",
    "extra",
    "whole",
    "full",
    "different",
    "separate",
    "other",
    "working",
    "calendar",
    "more",
    "or",
];

/// Pronouns after "of" that make a number a count ("three of them").
pub(crate) const OF_PRONOUNS: &[&str] = &["them", "those", "these", "us", "you", "it", "my", "our"];

/// Determiners that make "one" a pronoun ("this one", "the other one").
pub(crate) const ONE_DETERMINERS: &[&str] = &[
    "this", "that", "the", "which", "no", "each", "every", "any", "another", "other", "some", "a",
    "only", "right", "wrong", "new", "old", "same", "got",
];

/// Words whose presence in an utterance means someone asks for (or announces) an identifier:
/// the names of the identifiers a caller is asked for (card, social security, date of birth,
/// account, member or policy ID, security code, expiry, phone, PIN, ZIP/post code, routing
/// and sort codes, licence and passport numbers) and the date and verification words of an
/// identity check. Matched on single normalised tokens; "number" is judged in context by
/// [`crate::spoken::policy`].
pub(crate) const ASK_KEYWORDS: &[&str] = &[
    "card",
    "social",
    "ssn",
    "birth",
    "birthday",
    "born",
    "dob",
    "account",
    "member",
    "membership",
    "cvv",
    "cvc",
    "security",
    "code",
    "expiry",
    "expiration",
    "expires",
    "expire",
    "phone",
    "mobile",
    "telephone",
    "digits",
    "pin",
    "zip",
    "postcode",
    "postal",
    "routing",
    "sort",
    "policy",
    "license",
    "licence",
    "passport",
    "id",
    "identification",
    "date",
    "reach",
    "verify",
    "verification",
];

/// English words that sound like a digit's name (four: for, fore; two: to, too; one: won;
/// eight: ate; three: free, tree with th-fronting; five and nine: fine; six: sex, sicks;
/// ten: tin; zero: nil). A recognizer that hears a digit poorly writes one of these. Treated
/// like "oh": sensitive next to numbers and inside an ask context only.
pub(crate) const HOMOPHONES: &[&str] = &[
    "free", "tree", "for", "fore", "to", "too", "ate", "won", "fine", "sex", "sicks", "tin", "nil",
];

/// What the recognizer writes for tones, music and noise ("beep beep", "ahhh", "ha ha"):
/// a decode made only of these is not speech.
pub(crate) const NON_SPEECH_WORDS: &[&str] = &[
    "beep", "bleep", "ha", "ah", "ahh", "ahhh", "hmm", "mm", "mmm", "um", "uh", "ooh", "la",
    "music", "bye", "you", "thank",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_punctuation() {
        assert_eq!(Norm::new("Five,").as_str(), "five");
        assert_eq!(Norm::new("\"Twenty-six.\"").as_str(), "twenty-six");
        assert_eq!(Norm::new("-oh-").as_str(), "oh");
    }

    #[test]
    fn classifies() {
        use TokenClass::*;
        for (t, c) in [
            ("4532", Digits),
            ("3rd", Digits),
            ("$100", Digits),
            ("five", NumberWord),
            ("Sixty", NumberWord),
            ("twenty-six", NumberWord),
            ("thirty-first", Ordinal),
            ("fourth", Ordinal),
            ("second", WeakOrdinal),
            ("Oh,", WeakNumber),
            ("double", NumberWord),
            ("December", Month),
            ("May", WeakMonth),
            ("B,", Letter),
            ("a", Plain),
            ("hello", Plain),
            ("well-known", Plain),
        ] {
            assert_eq!(classify(t), c, "{t}");
        }
    }
}

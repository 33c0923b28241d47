//! PTB-style tokenisation as pycocoevalcap does it: Stanford CoreNLP 3.4.1's
//! `PTBTokenizer -lowerCase`, then punctuation tokens dropped.
//!
//! A re-statement of the tokenizer's rules that matter for captions
//! (clitics, abbreviations, numbers, brackets, quotes), checked against the
//! Java tokenizer on a fixture (`tools/fixtures/make_caption_metrics_fixture.py`).
//! Two of pycocoevalcap's quirks are kept on purpose: brackets become
//! `-lrb-`/`-rrb-`/`-lsb-`/… and stay (its punctuation list has them upper
//! case, after lower-casing), and ellipses vanish.

/// Tokens pycocoevalcap removes after tokenising.
const PUNCTUATION: [&str; 17] = [
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

/// Words whose final period belongs to them.
const ABBREVIATIONS: [&str; 16] = [
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "inc", "co", "ltd", "mt", "ave",
    "prof", "no",
];

/// Lower-cased PTB tokens of `caption`, punctuation removed, joined by spaces.
pub fn tokenize(caption: &str) -> String {
    let lower = caption.to_lowercase();
    let mut tokens = Vec::new();
    for chunk in lower.split_whitespace() {
        split_chunk(chunk, &mut tokens);
    }
    tokens
        .into_iter()
        .filter(|t| !PUNCTUATION.contains(&t.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Tokens of one whitespace-free chunk, in order.
fn split_chunk(chunk: &str, out: &mut Vec<String>) {
    let mut rest = chunk;
    // Leading punctuation, peeled off one token at a time.
    loop {
        if let Some(special) = ["'tis", "'twas"].iter().find(|s| rest == **s) {
            out.push("'t".into());
            out.push(special[2..].to_string());
            return;
        }
        let Some(first) = rest.chars().next() else {
            return;
        };
        let token = match first {
            '"' => "``",
            '\'' if rest.starts_with("''") => "''",
            '\'' if rest.starts_with("'n'") => "'n'",
            '\'' => "`",
            '`' => "`",
            '(' => "-lrb-",
            '[' => "-lsb-",
            '{' => "-lcb-",
            '$' | '#' | '*' | '+' | '=' => "",
            _ => break,
        };
        let width = match token {
            "''" | "'n'" => token.len(),
            _ => first.len_utf8(),
        };
        out.push(if token.is_empty() {
            first.to_string()
        } else {
            token.to_string()
        });
        rest = &rest[width..];
    }
    // Trailing punctuation, collected in reverse.
    let mut tail = Vec::new();
    loop {
        if rest.len() > 1 && rest.ends_with("..") {
            let word = rest.trim_end_matches('.');
            tail.push("...".to_string());
            rest = word;
            continue;
        }
        let Some(last) = rest.chars().last() else {
            break;
        };
        let token = match last {
            ',' | ';' | ':' | '!' | '?' | '%' | '*' | '+' | '=' => last.to_string(),
            '"' => "''".into(),
            '\'' => "'".into(),
            ')' => "-rrb-".into(),
            ']' => "-rsb-".into(),
            '}' => "-rcb-".into(),
            '.' if !keeps_period(rest) => ".".into(),
            _ => break,
        };
        tail.push(token);
        rest = &rest[..rest.len() - last.len_utf8()];
    }
    split_word(rest, out);
    out.extend(tail.into_iter().rev());
}

/// Whether a word ending in `.` keeps it: abbreviations (`mr.`, `etc.`),
/// initials (`a.`) and dotted acronyms (`u.s.`, `p.m.`, `e.g.`).
fn keeps_period(word: &str) -> bool {
    let stem = &word[..word.len() - 1];
    if stem.is_empty() {
        return false;
    }
    let single_letter = stem.chars().count() == 1 && stem.chars().all(char::is_alphabetic);
    single_letter
        || stem.contains('.') && stem.split('.').all(|p| p.chars().count() == 1)
        || ABBREVIATIONS.contains(&stem)
}

/// Splits a word without leading/trailing punctuation: clitics, `cannot`,
/// `gonna`, `$5`, `x+y`, `rock'n'roll`.
fn split_word(word: &str, out: &mut Vec<String>) {
    if word.is_empty() {
        return;
    }
    for (whole, first, second) in [
        ("cannot", "can", "not"),
        ("gonna", "gon", "na"),
        ("wanna", "wan", "na"),
        ("gotta", "got", "ta"),
    ] {
        if word == whole {
            out.push(first.into());
            out.push(second.into());
            return;
        }
    }
    // Symbols that always stand alone inside a word.
    if let Some(at) = word.find(['+', '=', '*', '$', '#']) {
        let symbol_len = word[at..].chars().next().map_or(1, char::len_utf8);
        split_word(&word[..at], out);
        out.push(word[at..at + symbol_len].to_string());
        split_word(&word[at + symbol_len..], out);
        return;
    }
    if let Some(at) = word.find("'n'")
        && at > 0
    {
        split_word(&word[..at], out);
        out.push("'n'".into());
        split_word(&word[at + 3..], out);
        return;
    }
    if let Some(stem) = word.strip_suffix("n't")
        && !stem.is_empty()
    {
        out.push(stem.to_string());
        out.push("n't".into());
        return;
    }
    for clitic in ["'s", "'re", "'ve", "'ll", "'d", "'m"] {
        if let Some(stem) = word.strip_suffix(clitic)
            && !stem.is_empty()
        {
            out.push(stem.to_string());
            out.push(clitic.into());
            return;
        }
    }
    // Commas split words except between digits (1,000).
    if let Some(at) = word.char_indices().find_map(|(i, c)| {
        let between_digits = word[..i].ends_with(|p: char| p.is_ascii_digit())
            && word[i + 1..].starts_with(|n: char| n.is_ascii_digit());
        (c == ',' && !between_digits).then_some(i)
    }) {
        split_word(&word[..at], out);
        out.push(",".into());
        split_word(&word[at + 1..], out);
        return;
    }
    out.push(word.to_string());
}

#[cfg(test)]
mod tests {
    use super::tokenize;

    #[test]
    fn clitics_numbers_and_punctuation_as_stanford_does() {
        // Outputs of CoreNLP 3.4.1 through pycocoevalcap (see the fixture script).
        for (caption, expected) in [
            (
                "A man's dog doesn't like the Cat.",
                "a man 's dog does n't like the cat",
            ),
            (
                "Two people (one in red) walk down a black-and-white street; it's \"cool\"!",
                "two people -lrb- one in red -rrb- walk down a black-and-white street it 's cool",
            ),
            (
                "A sign reads 1,000 $5 and 3.5% off... wow -- really?",
                "a sign reads 1,000 $ 5 and 3.5 % off wow really",
            ),
            (
                "The dogs' owners can't, won't, and cannot go. I'm you're we'll they've he'd",
                "the dogs owners ca n't wo n't and can not go i 'm you 're we 'll they 've he 'd",
            ),
            (
                "Mr. Smith and Dr. Jones at St. Mary's. U.S. flag etc.",
                "mr. smith and dr. jones at st. mary 's u.s. flag etc.",
            ),
            (
                "gonna wanna gotta 'tis o'clock rock'n'roll 90's",
                "gon na wan na got ta 't is o'clock rock 'n' roll 90 's",
            ),
            (
                "A plate of food..  Two   spaces.and.dots e.g. i.e. A.",
                "a plate of food two spaces.and.dots e.g. i.e. a.",
            ),
        ] {
            assert_eq!(tokenize(caption), expected, "{caption}");
        }
    }
}

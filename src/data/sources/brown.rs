//! POS-tagged Brown corpus files (`ca01` … `cr09`, "Form C").
//!
//! Each non-blank line is one sentence (a paragraph's first line is indented with a tab) of
//! whitespace-separated `word/tag` tokens, the tag following the last `/`; paragraphs are
//! separated by blank lines. Tokens without a `/` are kept as they are.

/// Strips the tags and lightly undoes the tokenization: no space before `, . ; : ? ! ) ]`,
/// none after `(` `[`; the quotes `` and '' become `"` hugging the quoted words, and a lone
/// `'` hugs the following word when it opens a quote, the preceding one otherwise.
/// One sentence per line, paragraphs separated by one blank line.
pub fn brown_to_text(tagged: &str) -> String {
    let mut paragraphs: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for line in tagged.lines() {
        let sentence = detokenize(line);
        if sentence.is_empty() {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
        } else {
            current.push(sentence);
        }
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    let paragraphs: Vec<String> = paragraphs.iter().map(|p| p.join("\n")).collect();
    paragraphs.join("\n\n")
}

/// One tagged line → one untagged sentence.
fn detokenize(line: &str) -> String {
    let words: Vec<&str> = line
        .split_whitespace()
        .map(|token| match token.rsplit_once('/') {
            Some((word, _tag)) if !word.is_empty() => word,
            _ => token,
        })
        .collect();
    let mut out = String::with_capacity(line.len());
    // No space before the next word (start of line, or after an opening bracket/quote).
    let mut glue_next = true;
    let mut single_open = false;
    for (i, &word) in words.iter().enumerate() {
        let (text, glue_before, glue_after) = match word {
            "``" => ("\"", false, true),
            "''" => ("\"", true, false),
            "(" | "[" => (word, false, true),
            // A lone ' is an opening single quote when no quote is open yet on this line and
            // a word follows; otherwise it closes.
            "'" if !single_open && words.get(i + 1).is_some_and(|w| starts_word(w)) => {
                single_open = true;
                (word, false, true)
            }
            "'" => {
                single_open = false;
                (word, true, false)
            }
            "," | "." | ";" | ":" | "?" | "!" | ")" | "]" => (word, true, false),
            _ => (word, false, false),
        };
        if !glue_next && !glue_before {
            out.push(' ');
        }
        out.push_str(text);
        glue_next = glue_after;
    }
    out
}

fn starts_word(word: &str) -> bool {
    word.chars().next().is_some_and(char::is_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::brown_to_text;

    #[test]
    fn strips_tags_and_detokenizes() {
        let tagged = "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, \
                      Atlanta's/np$ 1/2/cd ./.\nIt/pps asked/vbd (/( why/wrb )/) ?/.\n\n\n\
                      \t``/`` Only/rb a/at handful/nn ''/'' ;/. he/pps said/vbd :/: \
                      '/' no/at '/' !/.\n   \n\tplain tokens --/-- here/rb '/' ''/'' ./.\n";
        let expected = "The jury said \"no evidence\", Atlanta's 1/2.\n\
                        It asked (why)?\n\n\
                        \"Only a handful\"; he said: 'no'!\n\n\
                        plain tokens -- here'\".";
        assert_eq!(brown_to_text(tagged), expected);
    }

    #[test]
    fn empty_input() {
        assert_eq!(brown_to_text(""), "");
        assert_eq!(brown_to_text("\n\n\t\n"), "");
    }
}

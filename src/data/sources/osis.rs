//! OSIS XML fragments (as stored in SWORD modules) → plain prose.
//!
//! `<note>…</note>` is dropped with its content (a self-closing `<note/>` has none); where
//! that (or a `<q>` boundary) would glue two words together a space is put in.
//! Paragraph breaks: `<div>` starts/ends other than `x-milestone` ones (`<div type="x-p" sID=…/>`
//! etc.), `<lb/>`, `<p>`, `</p>`, `<lg>`/`</lg>`, `<chapter/>`, `<list>`, `<table>`.
//! Line breaks: around `<title>…</title>`, at poetry lines `<l/>`, list items, table rows and
//! `<speaker>`; `</cell>` becomes a space. Every other tag is removed, the XML entities
//! (`&amp;` `&lt;` `&gt;` `&quot;` `&apos;` `&#NN;` `&#xHH;`) are decoded, runs of blanks become
//! one space, lines are trimmed, at most one blank line separates paragraphs.

/// What a tag turns into in the plain text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Break {
    None,
    Space,
    Line,
    Para,
}

/// Converts an OSIS XML fragment to plain text (see the module docs for the rules).
pub fn osis_to_text(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    // Set after a dropped note or a quote boundary: "God<note>…</note>created" and
    // "Kingdom.</q><q>That" must not glue the two words.
    let mut gap = false;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            push_text(&mut out, rest, &mut gap);
            break;
        };
        push_text(&mut out, &rest[..lt], &mut gap);
        rest = &rest[lt..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else {
            break; // unterminated tag: drop the remainder
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let self_closing = tag.ends_with('/');
        let name = tag.trim_start_matches('/').split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or("");
        if name == "note" && !closing && !self_closing {
            rest = rest.find("</note>").map_or("", |end| &rest[end + 7..]);
            gap = true;
            continue;
        }
        gap |= name == "q";
        match tag_break(name, tag, closing) {
            Break::Para => out.push_str("\n\n"),
            // Line breaks do not add up to a paragraph break (`</row><row>`, `</l> <l>`).
            Break::Line if !out.trim_end_matches(' ').ends_with('\n') => out.push('\n'),
            Break::Space => out.push(' '),
            Break::Line | Break::None => {}
        }
    }
    normalise(&out)
}

fn tag_break(name: &str, tag: &str, closing: bool) -> Break {
    match name {
        "div" if tag.contains("x-milestone") => Break::None,
        "div" | "p" | "lb" | "lg" | "chapter" | "list" | "table" => Break::Para,
        "title" | "l" | "item" | "row" | "speaker" | "head" => Break::Line,
        "cell" if closing => Break::Space,
        _ => Break::None,
    }
}

/// Appends a text run, turning XML whitespace into spaces and decoding entities.
fn push_text(out: &mut String, text: &str, gap: &mut bool) {
    if text.is_empty() {
        return;
    }
    if *gap {
        let next_is_word = text.chars().next().is_some_and(char::is_alphanumeric);
        let prev_ends_word = out.chars().next_back().is_some_and(|c| c.is_alphanumeric() || ".,;:!?)]\"'’”".contains(c));
        if next_is_word && prev_ends_word {
            out.push(' ');
        }
        *gap = false;
    }
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        push_plain(out, &rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&semi| semi <= 10).and_then(|semi| Some((decode_entity(&rest[1..semi])?, semi)));
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    push_plain(out, rest);
}

fn push_plain(out: &mut String, text: &str) {
    out.extend(text.chars().map(|c| match c {
        '\t' | '\n' | '\r' => ' ',
        c => c,
    }));
}

fn decode_entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

/// Collapses blanks, trims lines, keeps at most one blank line in a row, trims the whole.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_lines = 0usize;
    for line in text.split('\n') {
        let words: Vec<&str> = line.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
        if words.is_empty() {
            blank_lines += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_lines > 0 { "\n\n" } else { "\n" });
        }
        blank_lines = 0;
        out.push_str(&words.join(" "));
    }
    out
}

#[cfg(test)]
mod tests;

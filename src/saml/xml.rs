//! A tiny writer of XML in exclusive-canonical form: the escaping rules of Canonical XML
//! (section 2.3 of the C14N recommendation), elements always with an end tag, nothing between
//! elements. Attribute order and namespace declarations are the caller's job; each element of the
//! assertion writes them in canonical order itself.

/// Text content as canonical XML writes it: `&`, `<`, `>` and carriage return escaped. Characters
/// XML 1.0 cannot carry at all (other control characters) become U+FFFD, so no value can break
/// the document.
pub fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c if allowed(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// An attribute value as canonical XML writes it (always between double quotes): `&`, `<`, `"`,
/// tab, line feed and carriage return escaped; `>` and `'` stay.
pub fn attribute(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c if allowed(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// Characters XML 1.0 allows in a document.
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `<name attrs>children</name>`, where `attrs` are already in canonical order (name, value).
pub fn element(name: &str, attrs: &[(&str, &str)], children: &str) -> String {
    let mut out = String::with_capacity(children.len() + 64);
    out.push('<');
    out.push_str(name);
    for (key, value) in attrs {
        out.push(' ');
        out.push_str(key);
        out.push_str("=\"");
        out.push_str(&attribute(value));
        out.push('"');
    }
    out.push('>');
    out.push_str(children);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
    out
}

/// An element holding only escaped text.
pub fn text_element(name: &str, attrs: &[(&str, &str)], value: &str) -> String {
    element(name, attrs, &text(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_as_canonical_xml_does() {
        assert_eq!(text(r#"a<b>&c"d'e"#), r#"a&lt;b&gt;&amp;c"d'e"#);
        assert_eq!(text("x\r\ny\tz"), "x&#xD;\ny\tz");
        assert_eq!(text("bell\u{7}nul\u{0}"), "bell\u{FFFD}nul\u{FFFD}");
        assert_eq!(text("\u{FFFE}"), "\u{FFFD}");
        assert_eq!(text("ünï 🙂"), "ünï 🙂");
    }

    #[test]
    fn attributes_are_escaped_as_canonical_xml_does() {
        assert_eq!(attribute(r#"a<b>&c"d'e"#), r#"a&lt;b>&amp;c&quot;d'e"#);
        assert_eq!(attribute("x\r\ny\tz"), "x&#xD;&#xA;y&#x9;z");
    }

    #[test]
    fn elements_always_have_end_tags() {
        assert_eq!(
            element("a:B", &[("X", "1\"")], ""),
            r#"<a:B X="1&quot;"></a:B>"#
        );
        assert_eq!(text_element("T", &[], "<&>"), "<T>&lt;&amp;&gt;</T>");
    }
}

//! A small, bounded element tree built from quick-xml events: the decoder's only view of a body.
//!
//! Invariants: depth ≤ `XML_DEPTH_MAX`, element count ≤ `XML_ELEMENT_COUNT_MAX`, attributes per element
//! ≤ `XML_ATTRIBUTE_COUNT_MAX`; DOCTYPE is refused (so no custom entity can exist); text is unescaped
//! only for the predefined entities and character references; all text is valid UTF-8.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::error::DecodeError;
use crate::limits::{XML_ATTRIBUTE_COUNT_MAX, XML_DEPTH_MAX, XML_ELEMENT_COUNT_MAX};

/// One element: name, attributes, child elements and its own concatenated text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    pub text: String,
}

impl Node {
    /// Attribute `name` (exact, as XML attribute names are case-sensitive).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Attribute `name`, or a NotValid error naming the element.
    pub fn req_attr(&self, name: &str) -> Result<&str, DecodeError> {
        self.attr(name)
            .ok_or_else(|| DecodeError::not_valid(format!("{} without {name}", self.name)))
    }

    /// The first child element called `name`.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The only child element, or a NotValid error.
    pub fn only_child(&self) -> Result<&Node, DecodeError> {
        match self.children.as_slice() {
            [c] => Ok(c),
            _ => Err(DecodeError::not_valid(format!(
                "{} must hold exactly one element",
                self.name
            ))),
        }
    }
}

/// Parses `bytes` into its root element.
pub(crate) fn parse(bytes: &[u8]) -> Result<Node, DecodeError> {
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut count = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| DecodeError::not_well_formed(format!("XML: {e}")))?;
        match event {
            Event::Start(e) => {
                let node = open(&e, &mut count, stack.len(), root.is_some())?;
                stack.push(node);
            }
            Event::Empty(e) => {
                let node = open(&e, &mut count, stack.len(), root.is_some())?;
                close(node, &mut stack, &mut root);
            }
            Event::End(_) => {
                let node = stack
                    .pop()
                    .ok_or_else(|| DecodeError::not_well_formed("Unbalanced end tag"))?;
                close(node, &mut stack, &mut root);
            }
            Event::Text(t) => {
                let text = t
                    .unescape()
                    .map_err(|e| DecodeError::not_well_formed(format!("XML text: {e}")))?;
                xml_chars(&text)?;
                push_text(&mut stack, &text)?;
            }
            Event::CData(c) => {
                let text = std::str::from_utf8(&c)
                    .map_err(|_| DecodeError::not_well_formed("CDATA is not UTF-8"))?
                    .to_owned();
                xml_chars(&text)?;
                push_text(&mut stack, &text)?;
            }
            Event::DocType(_) => {
                return Err(DecodeError::not_well_formed("DOCTYPE is not accepted"))
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(DecodeError::not_well_formed(
            "Unclosed element at end of document",
        ));
    }
    root.ok_or_else(|| DecodeError::not_well_formed("No root element"))
}

fn open(
    e: &BytesStart<'_>,
    count: &mut usize,
    depth: usize,
    have_root: bool,
) -> Result<Node, DecodeError> {
    if have_root && depth == 0 {
        return Err(DecodeError::not_well_formed("More than one root element"));
    }
    *count += 1;
    if *count > XML_ELEMENT_COUNT_MAX {
        return Err(DecodeError::not_valid("Too many elements"));
    }
    if depth >= XML_DEPTH_MAX {
        return Err(DecodeError::not_valid("Elements nested too deep"));
    }
    let name = std::str::from_utf8(e.name().as_ref())
        .map_err(|_| DecodeError::not_well_formed("Element name is not UTF-8"))?
        .to_owned();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| DecodeError::not_well_formed(format!("Attribute: {err}")))?;
        if attrs.len() == XML_ATTRIBUTE_COUNT_MAX {
            return Err(DecodeError::not_valid("Too many attributes"));
        }
        let key = std::str::from_utf8(a.key.as_ref())
            .map_err(|_| DecodeError::not_well_formed("Attribute name is not UTF-8"))?
            .to_owned();
        let value = a
            .unescape_value()
            .map_err(|err| DecodeError::not_well_formed(format!("Attribute value: {err}")))?
            .into_owned();
        xml_chars(&value)?;
        attrs.push((key, value));
    }
    Ok(Node {
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Refuses characters XML 1.0 does not allow in a document (its `Char` production: controls other
/// than tab, newline and carriage return, and U+FFFE/U+FFFF), raw or from a character reference, so
/// every decoded string can be written back as well-formed XML.
fn xml_chars(text: &str) -> Result<(), DecodeError> {
    let bad = text.chars().find(|&c| {
        (c < '\u{20}' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{fffe}' | '\u{ffff}')
    });
    match bad {
        Some(c) => Err(DecodeError::not_well_formed(format!(
            "Character U+{:04X} is not allowed in XML",
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

fn close(node: Node, stack: &mut [Node], root: &mut Option<Node>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None => *root = Some(node),
    }
}

fn push_text(stack: &mut [Node], text: &str) -> Result<(), DecodeError> {
    match stack.last_mut() {
        Some(n) => n.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => {
            return Err(DecodeError::not_well_formed(
                "Text outside the root element",
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DecodeErrorKind;

    #[test]
    fn refuses_characters_xml_does_not_allow() {
        for doc in [
            "<A>x\u{0}y</A>",
            "<A>&#1;</A>",
            "<A B=\"\u{1f}\"/>",
            "<A><![CDATA[\u{8}]]></A>",
            "<A>\u{ffff}</A>",
        ] {
            assert!(parse(doc.as_bytes()).is_err(), "{doc:?} accepted");
        }
        assert!(parse("<A B=\"t\tn\">a\r\nb&#9;</A>".as_bytes()).is_ok());
    }

    #[test]
    fn builds_tree_with_unescaped_text_and_attributes() {
        let n =
            parse(b"<?xml version=\"1.0\"?><A x=\"&lt;1&gt;\"><B>a &amp; b &#x263A;</B><C/></A>")
                .expect("parse");
        assert_eq!(n.name, "A");
        assert_eq!(n.attr("x"), Some("<1>"));
        assert_eq!(n.children[0].text, "a & b \u{263A}");
        assert_eq!(n.children[1].name, "C");
    }

    #[test]
    fn refuses_doctype_and_unknown_entities() {
        let laughs = b"<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;\">]><A>&b;</A>";
        assert_eq!(
            parse(laughs).map_err(|e| e.kind),
            Err(DecodeErrorKind::NotWellFormed)
        );
        assert_eq!(
            parse(b"<A>&b;</A>").map_err(|e| e.kind),
            Err(DecodeErrorKind::NotWellFormed)
        );
    }

    #[test]
    fn refuses_malformed_documents() {
        for bad in [
            &b"<A><B></A>"[..],
            b"<A>",
            b"",
            b"text",
            b"<A/><B/>",
            b"<A x='1' x='2'/>",
            b"<A>\xff</A>",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn enforces_depth_and_count_limits() {
        let deep = "<A>".repeat(XML_DEPTH_MAX + 1) + &"</A>".repeat(XML_DEPTH_MAX + 1);
        assert_eq!(
            parse(deep.as_bytes()).map_err(|e| e.kind),
            Err(DecodeErrorKind::NotValid)
        );
        let ok = "<A>".repeat(XML_DEPTH_MAX) + &"</A>".repeat(XML_DEPTH_MAX);
        assert!(parse(ok.as_bytes()).is_ok());
        let many = format!("<A>{}</A>", "<B/>".repeat(XML_ELEMENT_COUNT_MAX));
        assert_eq!(
            parse(many.as_bytes()).map_err(|e| e.kind),
            Err(DecodeErrorKind::NotValid)
        );
    }
}

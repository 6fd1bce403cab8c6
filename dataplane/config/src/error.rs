//! Errors that say where: `sluice.toml:12:11: cluster "api": lb: expected
//! one of round_robin, least_request, maglev, found "rr"`.
//!
//! Every error carries a path into the document (`cluster[0].lb`). TOML
//! errors come with a byte span; the path is recovered from it by walking
//! the spanned parse tree. Validation errors come with a path; the span is
//! found by walking the same tree. So the configuration types stay plain
//! (no `Spanned<T>` in what the dataplane and control process hold), and a
//! `Config` built in code or received as JSON validates the same way, only
//! without line:column.

use std::fmt;
use std::ops::Range;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// A 1-based line and column (in characters) in the configuration text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, counted in characters.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` of `text`.
    pub fn of_offset(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

pub(crate) fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

/// A configuration error: where (file, position, context) and what.
///
/// Displays as `FILE:LINE:COLUMN: CONTEXT: MESSAGE`; parts that are not
/// known are left out (no file for a `Config` that did not come from one,
/// no position for values that are not in the text, such as defaults or
/// `--proxy` additions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name as given to the parser.
    pub file: Option<String>,
    /// Where in the file.
    pub position: Option<Position>,
    /// Which part of the configuration, e.g. `cluster "api": lb`; empty
    /// for the document as a whole.
    pub context: String,
    /// What is wrong and what was expected.
    pub message: String,
    pub(crate) segs: Vec<Seg>,
}

impl ConfigError {
    /// The machine-readable location, e.g. `cluster[0].endpoints[1]`
    /// (indexes from 0); empty for the document as a whole.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for seg in &self.segs {
            match seg {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    pub(crate) fn new(segs: Vec<Seg>, context: String, message: String) -> ConfigError {
        ConfigError {
            file: None,
            position: None,
            context,
            message,
            segs,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
        }
        if let Some(p) = self.position {
            write!(f, "{}:{}:", p.line, p.column)?;
        }
        if self.file.is_some() || self.position.is_some() {
            f.write_str(" ")?;
        }
        if !self.context.is_empty() {
            write!(f, "{}: ", self.context)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Renders a path for people: `cluster "api": pool.max_idle`,
/// `route "example.com/api": retry_on[1]`, `proxy.spiffe_header`.
/// `label(kind, index)` names the element of a top-level array
/// (`"api"` for a cluster) when it can.
pub(crate) fn render_context(
    segs: &[Seg],
    label: impl Fn(&str, usize) -> Option<String>,
) -> String {
    let mut parts = Vec::new();
    let mut rest = segs;
    if let [Seg::Key(kind), Seg::Index(i), tail @ ..] = segs {
        parts.push(match label(kind, *i) {
            Some(l) => format!("{kind} {l}"),
            None => format!("{kind}[{i}]"),
        });
        rest = tail;
    }
    let mut dotted = String::new();
    for seg in rest {
        match seg {
            Seg::Key(k) => {
                if !dotted.is_empty() {
                    dotted.push('.');
                }
                dotted.push_str(k);
            }
            Seg::Index(i) => dotted.push_str(&format!("[{i}]")),
        }
    }
    if !dotted.is_empty() {
        parts.push(dotted);
    }
    parts.join(": ")
}

/// Labels for the three top-level arrays, shared by the document and the
/// `Config` renderings so an error reads the same either way.
pub(crate) fn route_label(method: Option<&str>, host: Option<&str>, prefix: &str) -> String {
    let target = format!("{:?}", format!("{}{prefix}", host.unwrap_or("")));
    match method {
        Some(m) => format!("{m} {target}"),
        None => target,
    }
}

/// The parsed document with spans, for mapping between paths and
/// positions.
pub(crate) struct Doc<'a> {
    pub(crate) text: &'a str,
    pub(crate) root: &'a Spanned<DeTable<'a>>,
}

fn table_get<'t, 'i>(t: &'t DeTable<'i>, k: &str) -> Option<&'t Spanned<DeValue<'i>>> {
    t.iter().find(|(key, _)| key.get_ref() == k).map(|(_, v)| v)
}

impl Doc<'_> {
    /// The position of the value at `segs`, or of its nearest ancestor
    /// that is written in the text (a defaulted key points at its table);
    /// the flag says whether the value itself was found.
    pub(crate) fn position_of(&self, segs: &[Seg]) -> Option<(Position, bool)> {
        let mut depth = 0;
        let mut span: Option<Range<usize>> = None;
        let mut value: Option<&DeValue<'_>> = None;
        let mut table = Some(self.root.get_ref());
        for seg in segs {
            let next = match (seg, table, value) {
                (Seg::Key(k), Some(t), _) => table_get(t, k),
                (Seg::Index(i), _, Some(DeValue::Array(a))) => a.get(*i),
                _ => None,
            };
            let Some(next) = next else { break };
            depth += 1;
            span = Some(next.span());
            value = Some(next.get_ref());
            table = next.get_ref().as_table();
        }
        // Implicit tables (`[[cluster]]` creating `cluster`) have empty
        // spans at offset 0; those locate nothing.
        span.filter(|s| !s.is_empty())
            .map(|s| (Position::of_offset(self.text, s.start), depth == segs.len()))
    }

    /// The path of the deepest value (or key) whose span holds `offset`.
    /// An offset on a key stops at the key's table: the error is about the
    /// key's presence (unknown key), not its value.
    pub(crate) fn path_at(&self, offset: usize) -> Vec<Seg> {
        let mut segs = Vec::new();
        walk_table(self.root.get_ref(), offset, &mut segs);
        segs
    }

    /// `label` for [`render_context`] from the document's own values.
    pub(crate) fn label(&self, kind: &str, index: usize) -> Option<String> {
        let elem = table_get(self.root.get_ref(), kind)?
            .get_ref()
            .as_array()?
            .get(index)?
            .get_ref()
            .as_table()?;
        let s = |k: &str| table_get(elem, k).and_then(|v| v.get_ref().as_str());
        match kind {
            "cluster" => s("name").map(|n| format!("{n:?}")),
            "listener" => s("address").map(|a| format!("{a:?}")),
            "route" => s("prefix").map(|p| route_label(s("method"), s("host"), p)),
            _ => None,
        }
    }
}

/// Pushes the path to `offset` onto `segs` and returns true if `offset`
/// is inside `t` (on a key: the path stops at `t`). Every child is
/// searched, not only those whose parent's span holds the offset: the
/// implicit tables and arrays that `[[cluster]]` headers create have empty
/// spans.
fn walk_table(t: &DeTable<'_>, offset: usize, segs: &mut Vec<Seg>) -> bool {
    for (k, v) in t.iter() {
        if k.span().contains(&offset) {
            return true;
        }
        segs.push(Seg::Key(k.get_ref().to_string()));
        if walk_value(v, offset, segs) {
            return true;
        }
        segs.pop();
    }
    false
}

fn walk_value(v: &Spanned<DeValue<'_>>, offset: usize, segs: &mut Vec<Seg>) -> bool {
    let in_child = match v.get_ref() {
        DeValue::Table(t) => walk_table(t, offset, segs),
        DeValue::Array(a) => a.iter().enumerate().any(|(i, e)| {
            segs.push(Seg::Index(i));
            let found = walk_value(e, offset, segs);
            if !found {
                segs.pop();
            }
            found
        }),
        _ => false,
    };
    in_child || v.span().contains(&offset)
}

/// Rewords serde's messages into the crate's `expected X, found Y` style;
/// messages from the crate's own visitors are already in it.
pub(crate) fn reword(message: &str) -> String {
    let unquote = |s: &str| s.replace('`', "");
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, expected)) = rest.split_once("`, expected ") {
            // serde says "one of `a`, `b`", "`a` or `b`" or "`a`".
            return format!("unknown key {name:?} (expected {})", unquote(expected));
        }
        if let Some(name) = rest.strip_suffix("`, there are no fields") {
            return format!("unknown key {name:?}");
        }
    }
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return format!("missing required key {name:?}");
    }
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some((found, expected)) = message
            .strip_prefix(prefix)
            .and_then(|r| r.split_once(", expected "))
        {
            return format!("expected {}, found {}", unquote(expected), unquote(found));
        }
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_characters_from_one() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(
            Position::of_offset(text, 0),
            Position { line: 1, column: 1 }
        );
        assert_eq!(
            Position::of_offset(text, 6),
            Position { line: 2, column: 1 }
        );
        // 'é' is two bytes but one column.
        let quote = text.find('"').unwrap();
        assert_eq!(
            Position::of_offset(text, quote),
            Position { line: 2, column: 6 }
        );
        assert_eq!(
            Position::of_offset(text, 999),
            Position { line: 3, column: 1 }
        );
    }

    #[test]
    fn display_leaves_out_unknown_parts() {
        let mut e = ConfigError::new(
            vec![key("cluster"), Seg::Index(0), key("lb")],
            "cluster \"api\": lb".into(),
            "bad".into(),
        );
        assert_eq!(e.to_string(), "cluster \"api\": lb: bad");
        assert_eq!(e.path(), "cluster[0].lb");
        e.file = Some("f.toml".into());
        assert_eq!(e.to_string(), "f.toml: cluster \"api\": lb: bad");
        e.position = Some(Position { line: 3, column: 7 });
        assert_eq!(e.to_string(), "f.toml:3:7: cluster \"api\": lb: bad");
        e.context.clear();
        assert_eq!(e.to_string(), "f.toml:3:7: bad");
    }

    #[test]
    fn paths_and_positions_map_both_ways() {
        let text = "[[cluster]]\nname = \"a\"\nendpoints = [\"198.18.1.10:80\"]\n[cluster.pool]\nmax_idle = 1\n";
        let root = DeTable::parse(text).unwrap();
        let doc = Doc { text, root: &root };
        let segs = |p: &[Seg]| p.to_vec();
        let c0 = [key("cluster"), Seg::Index(0)];
        let pos = |line, column| Position { line, column };
        // Written values: exact.
        let idle = [&c0[..], &[key("pool"), key("max_idle")]].concat();
        assert_eq!(doc.position_of(&idle), Some((pos(5, 12), true)));
        let ep = [&c0[..], &[key("endpoints"), Seg::Index(0)]].concat();
        assert_eq!(doc.position_of(&ep), Some((pos(3, 14), true)));
        // A defaulted key: its section, not exact.
        let conns = [&c0[..], &[key("pool"), key("max_connections")]].concat();
        assert_eq!(doc.position_of(&conns), Some((pos(4, 1), false)));
        let weight = [&ep[..], &[key("weight")]].concat();
        assert_eq!(doc.position_of(&weight), Some((pos(3, 14), false)));
        // Nothing of it in the text.
        assert_eq!(doc.position_of(&[key("proxy"), key("request_id")]), None);
        // And back from offsets.
        let at = |needle: &str| doc.path_at(text.find(needle).unwrap());
        assert_eq!(at("1\n"), segs(&idle));
        assert_eq!(at("198"), segs(&ep));
        assert_eq!(
            at("max_idle"),
            [&c0[..], &[key("pool")]].concat(),
            "a key: its table"
        );
        assert_eq!(doc.label("cluster", 0).as_deref(), Some("\"a\""));
        assert_eq!(doc.label("cluster", 1), None);
    }

    #[test]
    fn reword_serde_messages() {
        assert_eq!(
            reword("unknown field `lbb`, expected one of `name`, `lb`"),
            "unknown key \"lbb\" (expected one of name, lb)"
        );
        assert_eq!(
            reword("unknown field `x`, expected `address`"),
            "unknown key \"x\" (expected address)"
        );
        assert_eq!(
            reword("unknown field `x`, expected `address` or `weight`"),
            "unknown key \"x\" (expected address or weight)"
        );
        assert_eq!(
            reword("missing field `cluster`"),
            "missing required key \"cluster\""
        );
        assert_eq!(
            reword("invalid type: string \"2\", expected u32"),
            "expected u32, found string \"2\""
        );
        assert_eq!(
            reword("invalid value: integer `-1`, expected u32"),
            "expected u32, found integer -1"
        );
        assert_eq!(reword("something else"), "something else");
    }
}

//! The value grammar of GRIP headers, as Pushpin reads them.
//!
//! Multi-valued headers (`Grip-Channel`, `Grip-Link`, `Grip-Set-Meta`,
//! `Grip-Expose-Headers`) are read across every occurrence, each split on
//! commas outside double quotes. An element is `first ; p1=v1 ; p2="v 2" ;
//! flag`: tokens are trimmed, values may be quoted (inside quotes `\x` is
//! `x`), parameter names compare case-insensitively.

/// Why an element could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unterminated quote in {0:?}")]
pub struct UnterminatedQuote(pub String);

/// Splits `text` on `sep` where it is not inside double quotes.
fn split_outside_quotes(text: &str, sep: char) -> Result<Vec<String>, UnterminatedQuote> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            '\\' if quoted => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            c if c == sep && !quoted => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    if quoted {
        return Err(UnterminatedQuote(text.to_owned()));
    }
    parts.push(current);
    Ok(parts)
}

/// Removes surrounding quotes and resolves `\x` escapes inside them.
fn unquote(token: &str) -> String {
    let token = token.trim();
    let Some(inner) = token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return token.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every element of a multi-valued header: all occurrences, comma-split.
/// Elements with an unterminated quote are skipped (Pushpin is lax here).
pub fn elements<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values
        .filter_map(|v| split_outside_quotes(v, ',').ok())
        .flatten()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect()
}

/// One element: its first token and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The first token, raw (trimmed).
    pub first: String,
    /// `name` (as written) and value (unquoted; `None` for a bare flag).
    pub params: Vec<(String, Option<String>)>,
}

impl Element {
    /// Parses `first ; k=v ; flag`.
    pub fn parse(text: &str) -> Result<Element, UnterminatedQuote> {
        let mut tokens = split_outside_quotes(text, ';')?.into_iter();
        let first = tokens.next().unwrap_or_default().trim().to_owned();
        let params = tokens
            .map(|t| match t.split_once('=') {
                Some((k, v)) => (k.trim().to_owned(), Some(unquote(v))),
                None => (t.trim().to_owned(), None),
            })
            .filter(|(k, _)| !k.is_empty())
            .collect();
        Ok(Element { first, params })
    }

    /// The first value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }

    /// Every value of parameter `name` (compared exactly, as Pushpin does for `filter`).
    pub fn params_exact<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |(k, _)| k == name)
            .filter_map(|(_, v)| v.as_deref())
    }
}

/// `key=value` pairs of one `Grip-Set-Meta` element (every token is a pair).
pub fn meta_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let tokens = split_outside_quotes(text, ';').map_err(|e| e.to_string())?;
    tokens
        .iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), unquote(v))),
            _ => Err(format!("expected key=value, found {:?}", t.trim())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_occurrences_and_commas_outside_quotes() {
        let values = ["a; prev-id=1, b", "c; filter=\"x,y\""];
        assert_eq!(
            elements(values.into_iter()),
            vec!["a; prev-id=1", "b", "c; filter=\"x,y\""]
        );
        assert_eq!(elements(["ok, \"open"].into_iter()), Vec::<String>::new());
    }

    #[test]
    fn element_params() {
        let e = Element::parse(" news ; Prev-Id=\"a\\\"b\" ; filter=f1; filter=f2 ; flag").unwrap();
        assert_eq!(e.first, "news");
        assert_eq!(e.param("prev-id"), Some("a\"b"));
        assert_eq!(
            e.params_exact("filter").collect::<Vec<_>>(),
            vec!["f1", "f2"]
        );
        assert_eq!(e.param("flag"), None);
        assert!(Element::parse("x; y=\"open").is_err());
    }

    #[test]
    fn meta() {
        assert_eq!(
            meta_pairs("user=alice; id_format=\"%(x)s\"").unwrap(),
            vec![
                ("user".into(), "alice".into()),
                ("id_format".into(), "%(x)s".into())
            ]
        );
        assert!(meta_pairs("novalue").is_err());
        assert!(meta_pairs("=v").is_err());
    }
}
